namespace EifFormat;

/// <summary>What is wrong with an EIF or with the inputs given to build one. Stable: tools may branch on it.</summary>
public enum EifFormatError
{
    /// <summary>The file or a structure in it ends before its declared length.</summary>
    Truncated = 1,

    /// <summary>The first four bytes are not ".eif".</summary>
    BadMagic,

    /// <summary>The header version is outside 2..4.</summary>
    UnsupportedVersion,

    /// <summary>The header flags have a reserved bit set.</summary>
    UnknownFlags,

    /// <summary><c>num_sections</c> is above 32.</summary>
    TooManySections,

    /// <summary>A section's offset or size reaches past the end of the file.</summary>
    SectionOutOfBounds,

    /// <summary>An entry of the offset or size table beyond <c>num_sections</c> is not zero.</summary>
    UnusedTableEntry,

    /// <summary>The header table's size disagrees with the section header's <c>section_size</c>.</summary>
    SectionSizeMismatch,

    /// <summary>Section type 0, which is never valid.</summary>
    InvalidSectionType,

    /// <summary>Section type 6 or above.</summary>
    UnknownSectionType,

    /// <summary>A section header's reserved flags are not zero.</summary>
    InvalidSectionFlags,

    /// <summary>No kernel, no cmdline, no ramdisk, or (version 4) no metadata section.</summary>
    MissingSection,

    /// <summary>A second kernel, cmdline, metadata or signature section.</summary>
    DuplicateSection,

    /// <summary>A ramdisk before the kernel.</summary>
    SectionOrder,

    /// <summary>A section type the header's version does not have (signature before V3, metadata before V4).</summary>
    SectionNotInVersion,

    /// <summary>A section overlaps the header or the previous section.</summary>
    SectionOverlap,

    /// <summary>Bytes between two sections, or between the header and the first section.</summary>
    SectionGap,

    /// <summary>Bytes after the last section.</summary>
    TrailingBytes,

    /// <summary>The metadata section is not JSON of the reference's schema.</summary>
    InvalidMetadata,

    /// <summary>The metadata section lacks one of the ten keys the reference requires.</summary>
    MissingMetadataKey,

    /// <summary>The metadata section is larger than this library reads.</summary>
    MetadataTooLarge,

    /// <summary>The stored CRC-32 differs from the one computed over the file.</summary>
    ChecksumMismatch,

    /// <summary>The signature section is not the reference's CBOR layout, or its certificate does not parse.</summary>
    InvalidSignature,

    /// <summary>The signature section is larger than 32768 bytes.</summary>
    SignatureTooLarge,

    /// <summary>The command line holds a NUL byte.</summary>
    InvalidCmdline,

    /// <summary>An input of the writer did not give the number of bytes planned (it changed while being read).</summary>
    InputChanged,

    /// <summary>A custom metadata file is not a regular file of at most 4096 bytes holding one JSON value.</summary>
    InvalidCustomMetadata,

    /// <summary>A kernel <c>.config</c> lacks its third line.</summary>
    InvalidKernelConfig,

    /// <summary>A build time that is not an RFC 3339 date-time.</summary>
    InvalidBuildTime,

    /// <summary>A PEM file holds no X.509 certificate that parses.</summary>
    InvalidCertificate,

    /// <summary>The COSE_Sign1 in the signature section is malformed: wrong tag, not an array of four, no algorithm.</summary>
    InvalidCose,

    /// <summary>The signed payload is not the CBOR of <c>PcrInfo{0, PCR0}</c> (another index, another length, not CBOR).</summary>
    InvalidPcrInfo,

    /// <summary>A key or certificate that is not EC on P-256, P-384 or P-521, the curves COSE ES256/ES384/ES512 name.</summary>
    UnsupportedKey,

    /// <summary>A private key that cannot be read: not PEM, an unknown block, a wrong or missing passphrase.</summary>
    InvalidPrivateKey,

    /// <summary>The private key does not belong to the certificate.</summary>
    KeyMismatch,

    /// <summary>The certificate is not valid now (expired or not yet valid).</summary>
    CertificateNotValid,

    /// <summary>A signature does not verify, or signs another PCR0 than the file's.</summary>
    SignatureMismatch,

    /// <summary>The signer is neither the trusted certificate nor issued by it.</summary>
    UntrustedCertificate,
}

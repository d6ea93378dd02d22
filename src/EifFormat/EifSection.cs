namespace EifFormat;

/// <summary>A section as located by the reader: where its 12-byte header is and how much data follows.</summary>
/// <param name="Index">Position in the header table (and, for valid files, in the file).</param>
/// <param name="Type">The section type (1..5 once the reader has validated it).</param>
/// <param name="Flags">The section header's reserved flags (0 in valid files).</param>
/// <param name="Offset">File offset of the section header, as in <c>section_offsets</c>.</param>
/// <param name="Size">Data length, as in <c>section_sizes</c> and the header's <c>section_size</c>.</param>
public readonly record struct EifSection(int Index, EifSectionType Type, ushort Flags, long Offset, long Size)
{
    /// <summary>File offset of the first data byte.</summary>
    public long DataOffset => Offset + EifSectionHeader.EncodedSize;

    /// <summary>File offset just past the data.</summary>
    public long End => DataOffset + Size;
}

/// <summary>How strictly <see cref="EifReader"/> treats the file's layout.</summary>
public sealed class EifReaderOptions
{
    /// <summary>The default: every check of spec §10.2, contiguous sections, no trailing bytes.</summary>
    public static EifReaderOptions Strict { get; } = new();

    /// <summary>
    /// Accept gaps between sections and bytes after the last one, walking the header table as QEMU and the
    /// hypervisor do (for files made by other tools). Gap bytes are then outside the CRC, as in QEMU. Overlaps
    /// remain errors.
    /// </summary>
    public bool AllowNonContiguous { get; init; }
}

/// <summary>The result of one streaming pass over an EIF: its CRC and its measurements.</summary>
public sealed class EifDigests
{
    internal EifDigests(uint storedCrc, uint computedCrc, EifMeasurements measurements, IReadOnlyList<byte[]>? sectionSha256 = null)
    {
        StoredCrc = storedCrc;
        ComputedCrc = computedCrc;
        Measurements = measurements;
        SectionSha256 = sectionSha256;
    }

    /// <summary>The SHA-256 of each section's data, by section index, when it was asked for (<see cref="EifReader.ComputeDigests(bool, CancellationToken)"/>); else null.</summary>
    public IReadOnlyList<byte[]>? SectionSha256 { get; }

    /// <summary>The header's <c>eif_crc32</c>.</summary>
    public uint StoredCrc { get; }

    /// <summary>The CRC-32 computed over the file (everything but the four CRC bytes).</summary>
    public uint ComputedCrc { get; }

    /// <summary>True when the two agree (describe-eif's <c>CheckCRC</c>).</summary>
    public bool CrcMatches => StoredCrc == ComputedCrc;

    /// <summary>PCR0, PCR1, PCR2 and, when signed, PCR8.</summary>
    public EifMeasurements Measurements { get; }

    /// <summary>The <see cref="EifFormatError.ChecksumMismatch"/> error naming both values, or null when the CRC matches.</summary>
    public EifFormatException? ChecksumError => CrcMatches ? null : Throw.ChecksumMismatch(StoredCrc, ComputedCrc);

    /// <summary>Throws when the CRC does not match.</summary>
    /// <exception cref="EifFormatException"><see cref="EifFormatError.ChecksumMismatch"/>, naming both values.</exception>
    public void EnsureChecksum()
    {
        if (ChecksumError is { } error)
            throw error;
    }
}

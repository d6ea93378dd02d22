using System.Diagnostics.CodeAnalysis;

namespace EifFormat;

/// <summary>
/// Every format error of the library, one method each, so call sites read <c>if (…) Throw.X(…);</c>
/// (System.Reflection.Metadata's Throw class is the model). Messages are one sentence naming the field in quotes
/// and giving the numbers.
/// </summary>
internal static class Throw
{
    [DoesNotReturn]
    internal static void Truncated(string what, long expected, long actual) =>
        throw new EifFormatException(EifFormatError.Truncated, $"the file ends inside {what}: {expected} bytes expected, {actual} present");

    [DoesNotReturn]
    internal static void BadMagic(uint magic) =>
        throw new EifFormatException(EifFormatError.BadMagic, $"header 'magic' is 0x{magic:X8}, not 0x2E656966 (\".eif\"): not an EIF file");

    [DoesNotReturn]
    internal static void UnsupportedVersion(ushort version) =>
        throw new EifFormatException(EifFormatError.UnsupportedVersion, $"header 'version' is {version}; versions {EifConstants.MinSupportedVersion} to {EifConstants.CurrentVersion} are supported");

    [DoesNotReturn]
    internal static void UnknownFlags(ushort flags) =>
        throw new EifFormatException(EifFormatError.UnknownFlags, $"header 'flags' is 0x{flags:X4}; only bit 0 (aarch64) is defined, reserved bits 0x{flags & ~EifConstants.KnownHeaderFlags:X4} are set");

    [DoesNotReturn]
    internal static void TooManySections(int count) =>
        throw new EifFormatException(EifFormatError.TooManySections, $"header 'num_sections' is {count}; at most {EifConstants.MaxSections} are allowed");

    [DoesNotReturn]
    internal static void SectionOutOfBounds(int index, ulong offset, ulong size, long fileLength) =>
        throw new EifFormatException(EifFormatError.SectionOutOfBounds, $"section {index} extends past the end of the file ('section_offsets' 0x{offset:X}, 'section_sizes' {size}, header 12, file length {fileLength})");

    [DoesNotReturn]
    internal static void UnusedTableEntry(int index, ulong offset, ulong size) =>
        throw new EifFormatException(EifFormatError.UnusedTableEntry, $"table entry {index} is beyond 'num_sections' but not zero ('section_offsets' 0x{offset:X}, 'section_sizes' {size})");

    [DoesNotReturn]
    internal static void SectionSizeMismatch(int index, ulong tableSize, ulong headerSize) =>
        throw new EifFormatException(EifFormatError.SectionSizeMismatch, $"section {index}: header table 'section_sizes' is {tableSize} but the section header's 'section_size' is {headerSize}");

    [DoesNotReturn]
    internal static void InvalidSectionType(int index, long offset) =>
        throw new EifFormatException(EifFormatError.InvalidSectionType, $"section {index} at offset 0x{offset:X} has 'section_type' 0 (invalid)");

    [DoesNotReturn]
    internal static void UnknownSectionType(int index, long offset, ushort type) =>
        throw new EifFormatException(EifFormatError.UnknownSectionType, $"section {index} at offset 0x{offset:X} has unknown 'section_type' {type}; types 1 to 5 are defined");

    [DoesNotReturn]
    internal static void InvalidSectionFlags(int index, ushort flags) =>
        throw new EifFormatException(EifFormatError.InvalidSectionFlags, $"section {index} has section header 'flags' 0x{flags:X4}; they are reserved and must be 0");

    [DoesNotReturn]
    internal static void MissingSection(string what) =>
        throw new EifFormatException(EifFormatError.MissingSection, $"the image has no {what} section");

    [DoesNotReturn]
    internal static void DuplicateSection(EifSectionType type, int first, int second) =>
        throw new EifFormatException(EifFormatError.DuplicateSection, $"sections {first} and {second} are both of type {EifSectionTypes.Name(type)}; one is allowed");

    [DoesNotReturn]
    internal static void SectionOrder(int ramdisk, int kernel) =>
        throw new EifFormatException(EifFormatError.SectionOrder, $"ramdisk section {ramdisk} comes before the kernel (section {kernel}); ramdisks must follow the kernel");

    [DoesNotReturn]
    internal static void SectionNotInVersion(int index, EifSectionType type, ushort version, ushort since) =>
        throw new EifFormatException(EifFormatError.SectionNotInVersion, $"section {index} is of type {EifSectionTypes.Name(type)}, which version {version} does not have (it came with version {since})");

    [DoesNotReturn]
    internal static void SectionOverlap(int index, ulong offset, long previousEnd) =>
        throw new EifFormatException(EifFormatError.SectionOverlap, $"section {index} at offset 0x{offset:X} overlaps what precedes it, which ends at 0x{previousEnd:X}");

    [DoesNotReturn]
    internal static void SectionGap(int index, ulong offset, long previousEnd) =>
        throw new EifFormatException(EifFormatError.SectionGap, $"section {index} starts at 0x{offset:X}, leaving {(long)offset - previousEnd} unaccounted bytes after 0x{previousEnd:X}");

    [DoesNotReturn]
    internal static void TrailingBytes(long end, long fileLength) =>
        throw new EifFormatException(EifFormatError.TrailingBytes, $"{fileLength - end} bytes follow the last section (it ends at 0x{end:X}, file length {fileLength})");

    internal static EifFormatException InvalidMetadata(string detail, Exception? inner = null) =>
        new(EifFormatError.InvalidMetadata, detail, inner);

    internal static EifFormatException MissingMetadataKey(string key) =>
        new(EifFormatError.MissingMetadataKey, $"the metadata section lacks the required key '{key}'");

    [DoesNotReturn]
    internal static void MetadataTooLarge(int index, ulong size) =>
        throw new EifFormatException(EifFormatError.MetadataTooLarge, $"metadata section {index} is {size} bytes; at most {EifConstants.MaxMetadataSize} are read");

    [DoesNotReturn]
    internal static void SignatureTooLarge(long size) =>
        throw new EifFormatException(EifFormatError.SignatureTooLarge, $"the signature section is {size} bytes; at most {EifConstants.MaxSignatureSize} are allowed");

    internal static EifFormatException InvalidSignature(string detail, Exception? inner = null) =>
        new(EifFormatError.InvalidSignature, $"signature section: {detail}", inner);

    internal static EifFormatException ChecksumMismatch(uint stored, uint computed) =>
        new(EifFormatError.ChecksumMismatch, $"header 'eif_crc32' is 0x{stored:X8} but the file's CRC-32 is 0x{computed:X8}");

    [DoesNotReturn]
    internal static void InvalidCmdline(int position) =>
        throw new EifFormatException(EifFormatError.InvalidCmdline, $"the kernel command line holds a NUL byte at position {position}");

    [DoesNotReturn]
    internal static void InputChanged(string what, long planned, long actual) =>
        throw new EifFormatException(EifFormatError.InputChanged, $"{what} changed while it was read: {planned} bytes were planned, {(actual > planned ? "more than " + planned : actual.ToString(System.Globalization.CultureInfo.InvariantCulture))} were read");

    internal static EifFormatException InvalidCustomMetadata(string path, string detail, Exception? inner = null) =>
        new(EifFormatError.InvalidCustomMetadata, $"{path}: custom metadata file {detail}", inner);

    internal static EifFormatException InvalidCertificate(string what, string detail, Exception? inner = null) =>
        new(EifFormatError.InvalidCertificate, $"{what}: {detail}", inner);
}

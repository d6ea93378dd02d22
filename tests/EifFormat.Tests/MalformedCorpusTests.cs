using System.Text;
using static EifFormat.Tests.RawEif;

namespace EifFormat.Tests;

/// <summary>
/// The malformed-input corpus: one line and one reason per file, each built from a golden file by breaking one rule,
/// each asserting the reader's error code (STYLE.md rule 13c). Mutations keep the CRC right unless the CRC is the
/// point, so that each file fails for its stated reason only.
/// </summary>
public class MalformedCorpusTests
{
    private static readonly byte[] Named = Golden.Bytes("synth_sha384_named.eif");   // kernel, cmdline, metadata, ramdisk, ramdisk
    private static readonly byte[] Signed = Golden.Bytes("synth_signed.eif");        // … and signature (section 5)

    private static readonly (string Name, Func<byte[]> Make, EifFormatError Error, string Reason)[] Corpus =
    [
        ("empty", () => [], EifFormatError.Truncated, "0 bytes: no header at all"),
        ("truncated-header", () => Named[..100], EifFormatError.Truncated, "100 bytes of a 548-byte header"),
        ("truncated-header-547", () => Named[..547], EifFormatError.Truncated, "one byte short of a header"),
        ("header-only", () => Named[..548], EifFormatError.SectionOutOfBounds, "a header whose sections are all missing"),
        ("truncated-last-section", () => Named[..^10], EifFormatError.SectionOutOfBounds, "the last ramdisk lost its last 10 bytes"),
        ("bad-magic", () => SetU16(Named, 0, 0x5845), EifFormatError.BadMagic, "'XEif' instead of '.eif'"),
        ("zero-magic", () => SetU64(Named, 0, 0x0000_0000_0004_0000), EifFormatError.BadMagic, "magic zeroed"),
        ("version-0", () => SetU16(Named, EifHeader.Offsets.Version, 0), EifFormatError.UnsupportedVersion, "internal-only version 0"),
        ("version-1", () => SetU16(Named, EifHeader.Offsets.Version, 1), EifFormatError.UnsupportedVersion, "internal-only version 1"),
        ("version-5", () => SetU16(Named, EifHeader.Offsets.Version, 5), EifFormatError.UnsupportedVersion, "a version from the future"),
        ("version-ffff", () => SetU16(Named, EifHeader.Offsets.Version, 0xFFFF), EifFormatError.UnsupportedVersion, "version all ones"),
        ("flags-bit1", () => SetU16(Named, EifHeader.Offsets.Flags, 2), EifFormatError.UnknownFlags, "reserved header flag bit 1"),
        ("flags-all", () => SetU16(Named, EifHeader.Offsets.Flags, 0xFFFF), EifFormatError.UnknownFlags, "every header flag set"),
        ("num-sections-33", () => SetU16(Named, EifHeader.Offsets.NumSections, 33), EifFormatError.TooManySections, "one more than the 32-entry table"),
        ("num-sections-ffff", () => SetU16(Named, EifHeader.Offsets.NumSections, 0xFFFF), EifFormatError.TooManySections, "a huge count"),
        ("num-sections-short", () => SetU16(Named, EifHeader.Offsets.NumSections, 4), EifFormatError.UnusedTableEntry, "count says 4, the table holds 5"),
        ("zero-sections", () => FixCrc(SetU16(ClearTable(Named[..548]), EifHeader.Offsets.NumSections, 0)), EifFormatError.MissingSection, "a header alone, no sections"),
        ("offset-at-eof", () => SetU64(Named, TableOffset(4), (ulong)Named.Length), EifFormatError.SectionOutOfBounds, "ramdisk offset = file length"),
        ("offset-u64-max", () => SetU64(Named, TableOffset(1), ulong.MaxValue), EifFormatError.SectionOutOfBounds, "offset 2^64-1 (overflows offset+12)"),
        ("size-u64-max", () => SetU64(Named, TableSize(3), ulong.MaxValue), EifFormatError.SectionOutOfBounds, "size 2^64-1 (overflows offset+12+size)"),
        ("size-wraps", () => SetU64(Named, TableSize(0), ulong.MaxValue - 547), EifFormatError.SectionOutOfBounds, "offset+12+size wraps to a small number"),
        ("size-past-eof-by-one", () => SetU64(Named, TableSize(4), 2501), EifFormatError.SectionOutOfBounds, "last ramdisk one byte longer than the file"),
        ("table-size-disagrees", () => SetU64(Named, TableSize(1), 48), EifFormatError.SectionSizeMismatch, "table says 48, the cmdline header says 49"),
        ("header-size-disagrees", () => FixCrc(SetU64(Named, SectionAt(Named, 1) + 4, 48)), EifFormatError.SectionSizeMismatch, "the cmdline header says 48, the table 49"),
        ("section-type-0", () => FixCrc(SetU16(Named, SectionAt(Named, 1), 0)), EifFormatError.InvalidSectionType, "cmdline retyped as 0 (invalid)"),
        ("section-type-6", () => FixCrc(SetU16(Named, SectionAt(Named, 1), 6)), EifFormatError.UnknownSectionType, "first undefined type"),
        ("section-type-ffff", () => FixCrc(SetU16(Named, SectionAt(Named, 3), 0xFFFF)), EifFormatError.UnknownSectionType, "type all ones"),
        ("section-flags", () => FixCrc(SetU16(Named, SectionAt(Named, 2) + 2, 1)), EifFormatError.InvalidSectionFlags, "reserved section flag set on the metadata"),
        ("duplicate-kernel", () => Retype(Named, 1, EifSectionType.Kernel), EifFormatError.DuplicateSection, "cmdline retyped as a second kernel"),
        ("duplicate-cmdline", () => Retype(Named, 3, EifSectionType.Cmdline), EifFormatError.DuplicateSection, "a ramdisk retyped as a second cmdline"),
        ("duplicate-metadata", () => Retype(Named, 4, EifSectionType.Metadata), EifFormatError.DuplicateSection, "a ramdisk retyped as a second metadata"),
        ("duplicate-signature", () => Retype(Signed, 4, EifSectionType.Signature), EifFormatError.DuplicateSection, "a ramdisk retyped as a second signature"),
        ("no-kernel", () => Retype(Named, 0, EifSectionType.Cmdline), EifFormatError.DuplicateSection, "kernel retyped as cmdline: two cmdlines"),
        ("no-cmdline", () => Retype(Named, 1, EifSectionType.Ramdisk), EifFormatError.MissingSection, "cmdline retyped as a ramdisk"),
        ("no-ramdisk", () => Assemble(Named, Split(Named)[..3]), EifFormatError.MissingSection, "kernel, cmdline and metadata only"),
        ("no-metadata-v4", () => Retype(Named, 2, EifSectionType.Ramdisk), EifFormatError.MissingSection, "version 4 without its mandatory metadata"),
        ("ramdisk-before-kernel", () => Retype(Retype(Named, 0, EifSectionType.Ramdisk), 3, EifSectionType.Kernel), EifFormatError.SectionOrder, "ramdisk and kernel swapped"),
        ("metadata-in-v3", () => SetU16(Named, EifHeader.Offsets.Version, 3), EifFormatError.SectionNotInVersion, "a metadata section in a version 3 file"),
        ("signature-in-v2", () => Assemble(SetU16(Signed, EifHeader.Offsets.Version, 2), Split(Signed).Where(s => s.Type != 5).ToList()), EifFormatError.SectionNotInVersion, "a signature section in a version 2 file"),
        ("overlap", () => FixCrc(SetU64(SetU64(Named, TableOffset(4), (ulong)SectionAt(Named, 3)), TableSize(4), 1024)), EifFormatError.SectionOverlap, "the last table entry points back at the previous ramdisk"),
        ("gap-before-first", () => InsertBytes(Named, 548, 4), EifFormatError.SectionGap, "4 bytes between the header and the kernel"),
        ("gap-between", () => InsertBytes(Named, SectionAt(Named, 2), 8), EifFormatError.SectionGap, "8 bytes between cmdline and metadata"),
        ("gap-of-a-section-header", () => InsertBytes(Named, SectionAt(Named, 4), 12), EifFormatError.SectionGap, "12 bytes that a sequential reader would take for a section header (image-format#25)"),
        ("trailing-5", () => FixCrc([.. Named, 1, 2, 3, 4, 5]), EifFormatError.TrailingBytes, "5 bytes after the last section (nitro-cli skips < 12 silently)"),
        ("trailing-12", () => FixCrc([.. Named, .. new byte[12]]), EifFormatError.TrailingBytes, "a zero section header after the last section"),
        ("metadata-not-json", () => ReplaceData(Named, 2, "{\"ImageName\":"u8.ToArray()), EifFormatError.InvalidMetadata, "metadata cut mid-object"),
        ("metadata-bom", () => ReplaceData(Named, 2, [0xEF, 0xBB, 0xBF, .. Split(Named)[2].Data]), EifFormatError.InvalidMetadata, "a UTF-8 byte order mark before the JSON"),
        ("metadata-array", () => ReplaceData(Named, 2, "[1,2]"u8.ToArray()), EifFormatError.InvalidMetadata, "metadata is an array"),
        ("metadata-trailing", () => ReplaceData(Named, 2, [.. Split(Named)[2].Data, (byte)'x']), EifFormatError.InvalidMetadata, "a character after the JSON object"),
        ("metadata-missing-key", () => EditMetadata(Named, "\"ImageName\"", "\"ImageNamX\""), EifFormatError.MissingMetadataKey, "no ImageName"),
        ("metadata-missing-build-key", () => EditMetadata(Named, "\"KernelVersion\"", "\"KernelVersioX\""), EifFormatError.MissingMetadataKey, "no BuildMetadata.KernelVersion"),
        ("metadata-missing-custom", () => EditMetadata(Named, ",\"CustomMetadata\":null", string.Empty), EifFormatError.MissingMetadataKey, "no CustomMetadata (the Rust reader requires it)"),
        ("metadata-wrong-type", () => EditMetadata(Named, "\"ImageVersion\":\"synthetic\"", "\"ImageVersion\":12345"), EifFormatError.InvalidMetadata, "ImageVersion is a number"),
        ("metadata-build-not-object", () => EditMetadata(Named, "\"BuildMetadata\":{", "\"BuildMetadata\":1,\"X\":{"), EifFormatError.InvalidMetadata, "BuildMetadata is a number"),
        ("metadata-invalid-utf8", () => EditMetadataBytes(Named, "synthetic"u8.ToArray(), [0xC3, 0x28, .. "nthetic"u8.ToArray()]), EifFormatError.InvalidMetadata, "invalid UTF-8 in a string"),
        ("metadata-lone-surrogate", () => EditMetadata(Named, "\"synthetic\"", "\"\\ud800\""), EifFormatError.InvalidMetadata, "an unpaired surrogate escape"),
        ("metadata-deep", () => EditMetadata(Named, "\"DockerInfo\":null", "\"DockerInfo\":" + new string('[', 200) + new string(']', 200)), EifFormatError.InvalidMetadata, "nesting deeper than serde_json's 128"),
        ("metadata-too-large", () => EditMetadata(Named, "\"DockerInfo\":null", "\"DockerInfo\":null" + new string(' ', 1 << 20)), EifFormatError.MetadataTooLarge, "1 MiB of whitespace in the metadata"),
        ("crc-field", () => SetU16(Named, EifHeader.Offsets.Crc32, 0x1234), EifFormatError.ChecksumMismatch, "stored CRC changed"),
        ("crc-ramdisk-byte", () => FlipByte(Named, SectionAt(Named, 4) + 100), EifFormatError.ChecksumMismatch, "one ramdisk byte flipped, CRC left as it was"),
        ("crc-reserved-field", () => SetU16(Named, EifHeader.Offsets.Reserved, 1), EifFormatError.ChecksumMismatch, "'reserved' changed: covered by the CRC"),
        ("signature-not-cbor", () => ReplaceData(Signed, 5, [0xFF, 0x00]), EifFormatError.InvalidSignature, "a CBOR break byte where the array should start"),
        ("signature-empty-array", () => ReplaceData(Signed, 5, [0x80]), EifFormatError.InvalidSignature, "no signature entries"),
        ("signature-trailing-byte", () => ReplaceData(Signed, 5, [.. Split(Signed)[5].Data, 0x00]), EifFormatError.InvalidSignature, "a byte after the CBOR array"),
        ("signature-key-order", () => ReplaceData(Signed, 5, SwappedKeys()), EifFormatError.InvalidSignature, "'signature' before 'signing_certificate' (QEMU checks the first key)"),
        ("signature-byte-string", () => ReplaceData(Signed, 5, CertificateAsByteString()), EifFormatError.InvalidSignature, "certificate as a CBOR byte string, not serde's array of integers"),
        ("signature-non-minimal-int", () => ReplaceData(Signed, 5, NonMinimalInteger()), EifFormatError.InvalidSignature, "a PEM byte 0x2D written as 19 00 2D instead of 18 2D"),
        ("signature-bad-certificate", () => ReplaceData(Signed, 5, EifSignatureSection.Encode([new EifPcrSignature("not a certificate"u8.ToArray(), [0x84])])), EifFormatError.InvalidSignature, "no PEM certificate in the entry"),
        ("signature-too-large", () => ReplaceData(Signed, 5, new byte[EifConstants.MaxSignatureSize + 1]), EifFormatError.SignatureTooLarge, "32769 bytes"),
    ];

    public static TheoryData<string> Names() => new(Corpus.Select(c => c.Name));

    [Theory]
    [MemberData(nameof(Names))]
    public void Read_MalformedFile_FailsWithItsErrorCode(string name)
    {
        var entry = Corpus.Single(c => c.Name == name);
        byte[] bytes = entry.Make();

        var ex = Assert.Throws<EifFormatException>(() =>
        {
            using var reader = new EifReader(new MemoryStream(bytes, writable: false));
            reader.ComputeDigests().EnsureChecksum();
        });

        Assert.True(entry.Error == ex.Error, $"{name} ({entry.Reason}): expected {entry.Error}, got {ex.Error}: {ex.Message}");
        Assert.DoesNotContain('\n', ex.Message);
    }

    [Fact]
    public void Corpus_NamesAreUnique_AndBaseFilesAreValid()
    {
        Assert.Equal(Corpus.Length, Corpus.Select(c => c.Name).Distinct().Count());
        foreach (byte[] valid in new[] { Named, Signed, Assemble(Named, Split(Named)) })
        {
            using var reader = new EifReader(new MemoryStream(valid));
            reader.ComputeDigests().EnsureChecksum();
        }
    }

    [Fact]
    public void Read_GapsWithLenientLayout_AreAcceptedAndCrcWalksTheTable()
    {
        // QEMU and the hypervisor follow the header table and do not CRC gap bytes; so does the lenient mode.
        byte[] withGap = InsertBytes(Named, SectionAt(Named, 2), 8);
        byte[] gapWithQemuCrc = CrcWithoutRange(withGap, SectionAt(Named, 2), 8);
        var lenient = new EifReaderOptions { AllowNonContiguous = true };

        using var reader = new EifReader(new MemoryStream(gapWithQemuCrc), options: lenient);
        var digests = reader.ComputeDigests();

        Assert.True(digests.CrcMatches);
        Assert.Equal(Golden.Pcrs("synth_sha384_named")["PCR0"], Pcr.ToHex(digests.Measurements.Pcr0));
    }

    [Fact]
    public void Read_OverlapWithLenientLayout_IsStillAnError()
    {
        byte[] overlap = FixCrc(SetU64(SetU64(Named, TableOffset(4), (ulong)SectionAt(Named, 3)), TableSize(4), 1024));
        var ex = Assert.Throws<EifFormatException>(() => new EifReader(new MemoryStream(overlap), options: new EifReaderOptions { AllowNonContiguous = true }));
        Assert.Equal(EifFormatError.SectionOverlap, ex.Error);
    }

    [Fact]
    public void Open_MalformedFile_MessageNamesTheFile()
    {
        string path = Path.Combine(Path.GetTempPath(), $"eif-malformed-{Guid.NewGuid():N}.eif");
        File.WriteAllBytes(path, SetU16(Named, EifHeader.Offsets.Version, 9));
        try
        {
            var ex = Assert.Throws<EifFormatException>(() => EifReader.Open(path));
            Assert.Equal(EifFormatError.UnsupportedVersion, ex.Error);
            Assert.Equal(path, ex.Path);
            Assert.StartsWith(path + ": header 'version' is 9", ex.Message);
        }
        finally
        {
            File.Delete(path);
        }
    }

    private static byte[] ClearTable(byte[] file)
    {
        byte[] copy = Copy(file);
        copy.AsSpan(EifHeader.Offsets.SectionOffsets, 2 * 8 * EifConstants.MaxSections).Clear();
        return copy;
    }

    private static byte[] Retype(byte[] file, int index, EifSectionType type) =>
        FixCrc(SetU16(file, SectionAt(file, index), (ushort)type));

    private static byte[] FlipByte(byte[] file, int offset)
    {
        byte[] copy = Copy(file);
        copy[offset] ^= 0xFF;
        return copy;
    }

    private static byte[] EditMetadata(byte[] file, string find, string replace) =>
        EditMetadataBytes(file, Encoding.UTF8.GetBytes(find), Encoding.UTF8.GetBytes(replace));

    private static byte[] EditMetadataBytes(byte[] file, byte[] find, byte[] replace)
    {
        byte[] data = Split(file)[2].Data;
        int at = data.AsSpan().IndexOf(find);
        Assert.True(at >= 0, "the metadata to edit was not found");
        return ReplaceData(file, 2, [.. data.AsSpan(0, at), .. replace, .. data.AsSpan(at + find.Length)]);
    }

    private static byte[] CrcWithoutRange(byte[] file, int start, int length)
    {
        var crc = new System.IO.Hashing.Crc32();
        crc.Append(file.AsSpan(0, EifHeader.CrcCoveredSize));
        crc.Append(file.AsSpan(EifHeader.EncodedSize, start - EifHeader.EncodedSize));
        crc.Append(file.AsSpan(start + length));
        byte[] copy = Copy(file);
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32BigEndian(copy.AsSpan(EifHeader.Offsets.Crc32), crc.GetCurrentHashAsUInt32());
        return copy;
    }

    private static EifPcrSignature GoldenSignature()
    {
        using var reader = new EifReader(new MemoryStream(Signed));
        return reader.Signatures![0];
    }

    private static byte[] SwappedKeys()
    {
        var entry = GoldenSignature();
        var writer = new System.Formats.Cbor.CborWriter(System.Formats.Cbor.CborConformanceMode.Lax);
        writer.WriteStartArray(1);
        writer.WriteStartMap(2);
        writer.WriteTextString("signature");
        WriteVector(writer, entry.Signature);
        writer.WriteTextString("signing_certificate");
        WriteVector(writer, entry.SigningCertificate);
        writer.WriteEndMap();
        writer.WriteEndArray();
        return writer.Encode();
    }

    private static byte[] CertificateAsByteString()
    {
        var entry = GoldenSignature();
        var writer = new System.Formats.Cbor.CborWriter(System.Formats.Cbor.CborConformanceMode.Lax);
        writer.WriteStartArray(1);
        writer.WriteStartMap(2);
        writer.WriteTextString("signing_certificate");
        writer.WriteByteString(entry.SigningCertificate);
        writer.WriteTextString("signature");
        WriteVector(writer, entry.Signature);
        writer.WriteEndMap();
        writer.WriteEndArray();
        return writer.Encode();
    }

    private static byte[] NonMinimalInteger()
    {
        // The PEM starts with '-' (0x2D), encoded 18 2D; rewrite the first one as the 3-byte form 19 00 2D.
        byte[] data = Split(Signed)[5].Data;
        int at = data.AsSpan().IndexOf([(byte)0x18, (byte)0x2D]);
        return [.. data.AsSpan(0, at), 0x19, 0x00, 0x2D, .. data.AsSpan(at + 2)];
    }

    private static void WriteVector(System.Formats.Cbor.CborWriter writer, byte[] bytes)
    {
        writer.WriteStartArray(bytes.Length);
        foreach (byte b in bytes)
            writer.WriteUInt32(b);
        writer.WriteEndArray();
    }
}

using System.Security.Cryptography;
using System.Text;
using EifFormat.Json;
using IoCrc32 = System.IO.Hashing.Crc32;

namespace EifFormat.Tests;

public class SizeAndVectorTests
{
    [Fact]
    public void EncodedSizes_MatchTheReference()
    {
        // src/defs/mod.rs unit tests pin the header at 548 bytes and the section header at 12.
        Assert.Equal(548, EifHeader.EncodedSize);
        Assert.Equal(12, EifSectionHeader.EncodedSize);
        Assert.Equal(544, EifHeader.CrcCoveredSize);
    }

    [Fact]
    public void HeaderOffsets_MatchTheSpecTable()
    {
        // spec §2: field offsets of EifHeader.
        Assert.Equal(0x000, EifHeader.Offsets.Magic);
        Assert.Equal(0x004, EifHeader.Offsets.Version);
        Assert.Equal(0x006, EifHeader.Offsets.Flags);
        Assert.Equal(0x008, EifHeader.Offsets.DefaultMemory);
        Assert.Equal(0x010, EifHeader.Offsets.DefaultCpus);
        Assert.Equal(0x018, EifHeader.Offsets.Reserved);
        Assert.Equal(0x01A, EifHeader.Offsets.NumSections);
        Assert.Equal(0x01C, EifHeader.Offsets.SectionOffsets);
        Assert.Equal(0x11C, EifHeader.Offsets.SectionSizes);
        Assert.Equal(0x21C, EifHeader.Offsets.Unused);
        Assert.Equal(0x220, EifHeader.Offsets.Crc32);
    }

    [Fact]
    public void SectionType_FirstUnknownIsSix()
    {
        // Types 1..5 are defined by V4; the Rust reference rejects 6 and above ("Invalid section type").
        Assert.False(EifSectionTypes.IsDefined(0));
        for (ushort t = 1; t <= 5; t++)
            Assert.True(EifSectionTypes.IsDefined(t));
        Assert.False(EifSectionTypes.IsDefined(6));
        Assert.False(EifSectionTypes.IsDefined(ushort.MaxValue));
    }

    [Fact]
    public void SectionHeader_RoundTripsThroughSpan()
    {
        var header = new EifSectionHeader(EifSectionType.Ramdisk, 0x0102030405060708);
        byte[] bytes = new byte[12];
        header.Write(bytes);
        Assert.Equal("000300000102030405060708", Convert.ToHexStringLower(bytes));
        Assert.Equal(header, EifSectionHeader.Read(bytes));
    }

    // source: spec §14.3 (computed constants).
    [Fact]
    public void Crc32_CheckValue() =>
        Assert.Equal(0xCBF43926u, IoCrc32.HashToUInt32("123456789"u8));

    [Fact]
    public void Sha384_OfEmpty() =>
        Assert.Equal(
            "38b060a751ac96384cd9327eb1b1e36a21fdb71114be07434c0cc7bf63f6e1da274edebfe76f65fbd51ad2f14898b95b",
            Convert.ToHexStringLower(SHA384.HashData([])));

    [Fact]
    public void ContentPcr_OfEmptyStream() =>
        Assert.Equal(
            "21b9efbc184807662e966d34f390821309eeac6802309798826296bf3e8bec7c10edb30948c90ba67310f7b964fc500a",
            Pcr.ToHex(Pcr.Compute(ReadOnlySpan<byte>.Empty)));

    [Fact]
    public void ContentPcr_OfHelloNewline() =>
        Assert.Equal(
            "2b434cf47a302490f93e9aff3086318358d1e95d545b28241d3dceb121e452066f1d1f108022fd30f1fbddd0cda47dc9",
            Pcr.ToHex(Pcr.Compute(new MemoryStream("hello\n"u8.ToArray()))));

    [Theory]
    [InlineData(0, 0)]
    [InlineData(1, 0)]
    [InlineData(0, 1)]
    [InlineData(7, 13)]
    [InlineData(544, 4)]
    [InlineData(100_000, 3)]
    [InlineData(3, 100_000)]
    public void Crc32Combine_EqualsCrcOfConcatenation(int lengthA, int lengthB)
    {
        var random = new Random(lengthA * 31 + lengthB);
        byte[] a = new byte[lengthA];
        byte[] b = new byte[lengthB];
        random.NextBytes(a);
        random.NextBytes(b);

        uint combined = Crc32Combine.Combine(IoCrc32.HashToUInt32(a), IoCrc32.HashToUInt32(b), b.Length);

        Assert.Equal(IoCrc32.HashToUInt32([.. a, .. b]), combined);
    }

    [Fact]
    public void Crc32Combine_LengthBeyondFourGiB_MatchesStepwiseShifts()
    {
        // Shifting by n bytes is linear: Combine(c, 0, a + b) = Combine(Combine(c, 0, a), 0, b). Steps of 256 MiB
        // stay inside the 32-entry power table; 5 GiB in one go wraps around it (x^(2^32) = x for this polynomial).
        const uint crcA = 0x12345678, crcB = 0xCAFEBABE;
        const long step = 256L << 20;
        uint stepwise = crcA;
        for (int i = 0; i < 20; i++)
            stepwise = Crc32Combine.Combine(stepwise, 0, step);

        Assert.Equal(stepwise ^ crcB, Crc32Combine.Combine(crcA, crcB, 20 * step));
    }

    /// <summary>The synthetic mini-EIF of spec §14.4 (computed from the spec, not by eif_build).</summary>
    [Fact]
    public void Write_SpecMiniEif_GivesTheSpecBytesCrcAndPcrs()
    {
        string metadata = """{"ImageName":"test","ImageVersion":"1.0","BuildMetadata":{"BuildTime":"1970-01-01T00:00:00+00:00","BuildTool":"eif_build","BuildToolVersion":"0.3.1","OperatingSystem":"OS","KernelVersion":"kernel"},"DockerInfo":null,"CustomMetadata":null}""";
        var spec = new EifImageSpec
        {
            Kernel = EifSectionSource.FromBytes("kernel-bytes"u8.ToArray(), "kernel"),
            Cmdline = "console=ttyS0",
            Ramdisks = [EifSectionSource.FromBytes("ramdisk-0"u8.ToArray(), "r0"), EifSectionSource.FromBytes("ramdisk-1"u8.ToArray(), "r1")],
            Metadata = EifMetadata.Parse(Encoding.UTF8.GetBytes(metadata))!,
        };
        var output = new MemoryStream();

        var result = EifWriter.Write(output, spec.ToHeaderFields(), spec.ToSections());
        byte[] file = output.ToArray();

        Assert.Equal(metadata, Encoding.UTF8.GetString(spec.Metadata.ToJsonBytes()));
        Assert.Equal(889, file.Length);
        Assert.Equal(0x711396AFu, result.Crc32);
        Assert.Equal("2e65696600040000000000004000000000000000000000020000000500000000", Convert.ToHexStringLower(file.AsSpan(0, 0x20)));
        Assert.Equal(new long[] { 548, 572, 597, 847, 868 }, result.Sections.Select(s => s.Offset));
        Assert.Equal(new long[] { 12, 13, 238, 9, 9 }, result.Sections.Select(s => s.Size));
        Assert.Equal("74dbaaadb0e9d9a24ae2c01f76553836a31ba81af83562845b32f3e577c6d331b1e2de12a1f2e5a0b3d85b67b72309f9", Pcr.ToHex(result.Measurements.Pcr0));
        Assert.Equal("ab365cb0ffeafc15357c78aa4f59053534e516da67055cb56386bd7a63ebe909164d02de37fe5ad9acf2ca7077beed96", Pcr.ToHex(result.Measurements.Pcr1));
        Assert.Equal("477d0d0cb358b7247e9ae8612e986ef62afa94db440b44ed44b2ebe70b79d993e6da6df0e36a999f172cdd3fa1ad1c93", Pcr.ToHex(result.Measurements.Pcr2));
        Assert.Equal("2e5561b2b33a62de7cad754de2e2eb1455141cf1369396de31ddd1416ffa904d", Convert.ToHexStringLower(SHA256.HashData(file)));
        Assert.StartsWith("711396af00010000000000000000000c6b65726e656c2d6279746573", Convert.ToHexStringLower(file.AsSpan(0x220)));
        Assert.Null(result.Measurements.Pcr8);
    }
}

using System.Security.Cryptography;
using EifFormat.Json;

namespace EifFormat.Tests;

public class WriterTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("eif-writer").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static EifMetadata Metadata => new(
        "test", "1.0", new EifBuildInfo("2024-01-01T00:00:00+00:00", "eif", "0.1.0", "OS", "kernel"), JNull.Instance, JNull.Instance);

    private static EifImageSpec Spec(params EifSectionSource[] ramdisks) => new()
    {
        Kernel = EifSectionSource.FromBytes("kernel"u8.ToArray(), "kernel"),
        Cmdline = "console=ttyS0",
        Ramdisks = ramdisks,
        Metadata = Metadata,
    };

    [Fact]
    public void WriteFile_ReproducesGoldenFile_ByteForByte()
    {
        // synth_sha384_named.cmd, with the reference's quirk (--name also sets ImageVersion) spelled out.
        var spec = new EifImageSpec
        {
            Kernel = EifSectionSource.FromFile(Golden.Input("kernel.bin")),
            Cmdline = "console=ttyS0 reboot=k panic=30 pci=off nomodules",
            Ramdisks = [EifSectionSource.FromFile(Golden.Input("ramdisk1.bin")), EifSectionSource.FromFile(Golden.Input("ramdisk2.bin"))],
            Metadata = new EifMetadata("synthetic", "synthetic", new EifBuildInfo("2024-01-01T00:00:00+00:00", "eif_build", "0.3.1", "OS", "kernel"), JNull.Instance, JNull.Instance),
        };
        string output = Path.Combine(_dir, "out.eif");

        var result = spec.WriteFile(output);

        Assert.Equal(Golden.Bytes("synth_sha384_named.eif"), File.ReadAllBytes(output));
        Assert.Equal(Golden.Pcrs("synth_sha384_named")["PCR0"], Pcr.ToHex(result.Measurements.Pcr0));
        Assert.Empty(Directory.GetFiles(_dir, "*.tmp"));
    }

    [Fact]
    public void WriteFile_SourceFailsMidway_LeavesNoFileAndKeepsTheOldOne()
    {
        string output = Path.Combine(_dir, "keep.eif");
        File.WriteAllText(output, "previous content");
        var failing = EifSectionSource.FromStream(new FailingStream(after: 3 << 20), "failing ramdisk", 8 << 20);

        Assert.Throws<IOException>(() => Spec(failing).WriteFile(output));

        Assert.Equal("previous content", File.ReadAllText(output));
        Assert.Equal([output], Directory.GetFiles(_dir));
    }

    [Fact]
    public void WriteFile_InvalidPlan_ThrowsBeforeCreatingAnything()
    {
        string output = Path.Combine(_dir, "none.eif");

        var ex = Assert.Throws<EifFormatException>(() => Spec().WriteFile(output));

        Assert.Equal(EifFormatError.MissingSection, ex.Error);
        Assert.Empty(Directory.GetFiles(_dir));
    }

    [Fact]
    public void WriteFile_MissingInput_FailsBeforeCreatingAnything()
    {
        Assert.Throws<FileNotFoundException>(() => Spec(EifSectionSource.FromFile(Path.Combine(_dir, "nope.cpio"))).WriteFile(Path.Combine(_dir, "x.eif")));
        Assert.Empty(Directory.GetFiles(_dir));
    }

    [Theory]
    [InlineData(100, 99)]
    [InlineData(100, 101)]
    public void Write_InputShorterOrLongerThanPlanned_IsInputChanged(int planned, int actual)
    {
        string ramdisk = Path.Combine(_dir, "r.cpio");
        File.WriteAllBytes(ramdisk, new byte[planned]);
        var source = EifSectionSource.FromFile(ramdisk);
        var spec = Spec(source);
        var sections = spec.ToSections();
        _ = EifWriter.Write(new MemoryStream(), spec.ToHeaderFields(), sections); // plans the length (100)
        File.WriteAllBytes(ramdisk, new byte[actual]);

        // FileSource plans its length once; a file that changes afterwards is caught while copying.
        var ex = Assert.Throws<EifFormatException>(() => EifWriter.Write(new MemoryStream(), spec.ToHeaderFields(), sections));
        Assert.Equal(EifFormatError.InputChanged, ex.Error);
        Assert.Contains(ramdisk, ex.Message);
    }

    [Fact]
    public void Write_UnknownLengthStream_GivesTheSameBytesAsKnownLength()
    {
        byte[] data = RandomBytes(300_000, seed: 1);
        var known = new MemoryStream();
        var unknown = new MemoryStream();

        var a = EifWriter.Write(known, Spec().ToHeaderFields(), Spec(EifSectionSource.FromBytes(data, "r")).ToSections());
        var b = EifWriter.Write(unknown, Spec().ToHeaderFields(), Spec(EifSectionSource.FromStream(new MemoryStream(data), "r")).ToSections());

        Assert.Equal(known.ToArray(), unknown.ToArray());
        Assert.Equal(a.Crc32, b.Crc32);
        using var reader = new EifReader(new MemoryStream(unknown.ToArray()));
        Assert.True(reader.ComputeDigests().CrcMatches);
    }

    [Fact]
    public void WriteAndRead_LargeImage_ParallelHashingMatchesDirectComputation()
    {
        // Above SectionDigester.ParallelThreshold PCR0 is hashed on a worker thread; the values must not change.
        byte[] bootstrap = RandomBytes(3 << 20, seed: 2);
        byte[] app1 = RandomBytes((5 << 20) + 12345, seed: 3);
        byte[] app2 = RandomBytes(2 << 20, seed: 4);
        var spec = Spec(EifSectionSource.FromBytes(bootstrap, "b"), EifSectionSource.FromBytes(app1, "a1"), EifSectionSource.FromBytes(app2, "a2"));
        var output = new MemoryStream();

        var written = EifWriter.Write(output, spec.ToHeaderFields(), spec.ToSections());
        using var reader = new EifReader(new MemoryStream(output.ToArray()));
        var read = reader.ComputeDigests();

        byte[] kernelAndCmdline = [.. "kernel"u8, .. "console=ttyS0"u8];
        Assert.True(written.Length >= SectionDigester.ParallelThreshold);
        Assert.Equal(Pcr.Compute([.. kernelAndCmdline, .. bootstrap, .. app1, .. app2]), written.Measurements.Pcr0);
        Assert.Equal(Pcr.Compute([.. kernelAndCmdline, .. bootstrap]), written.Measurements.Pcr1);
        Assert.Equal(Pcr.Compute([.. app1, .. app2]), written.Measurements.Pcr2);
        Assert.Equal(written.Measurements.Pcr0, read.Measurements.Pcr0);
        Assert.Equal(written.Measurements.Pcr1, read.Measurements.Pcr1);
        Assert.Equal(written.Measurements.Pcr2, read.Measurements.Pcr2);
        Assert.True(read.CrcMatches);
        Assert.Equal(System.IO.Hashing.Crc32.HashToUInt32([.. output.ToArray().AsSpan(0, 544), .. output.ToArray().AsSpan(548)]), written.Crc32);
    }

    [Fact]
    public void WriteFile_LargerThanTheWriteBehindInterval_ReadsBackIntact()
    {
        // 40 MiB: the worker thread writes the output and WriteBehindStream starts write-out every 32 MiB.
        byte[] ramdisk = RandomBytes(40 << 20, seed: 5);
        string output = Path.Combine(_dir, "big.eif");

        var written = Spec(EifSectionSource.FromBytes(ramdisk, "r")).WriteFile(output);
        using var reader = EifReader.Open(output);
        var read = reader.ComputeDigests();

        Assert.True(written.Length > WriteBehindStream.Interval);
        Assert.True(read.CrcMatches);
        Assert.Equal(written.Crc32, read.StoredCrc);
        Assert.Equal(Pcr.Compute([.. "kernel"u8, .. "console=ttyS0"u8, .. ramdisk]), read.Measurements.Pcr0);
        using var section = reader.OpenSection(3);
        Assert.Equal(SHA256.HashData(ramdisk), SHA256.HashData(section));
    }

    [Fact]
    public void Write_OutputFailsOnTheWorkerThread_SurfacesTheOriginalError()
    {
        var spec = Spec(EifSectionSource.FromBytes(RandomBytes(20 << 20, seed: 6), "r"));
        var full = new FullDiskStream(capacity: 12 << 20);

        var ex = Assert.Throws<IOException>(() => EifWriter.Write(full, spec.ToHeaderFields(), spec.ToSections()));

        Assert.Equal("No space left on device", ex.Message);
    }

    [Theory]
    [InlineData(1000)]
    [InlineData(6 << 20)] // above the parallel threshold in total
    public void WriteAndRead_CmdlineAfterTheRamdisks_MeasuresPcr1WithoutThePrefixShortcut(int size)
    {
        // PCR1 is normally taken from PCR0's state where the application ramdisks begin; here a bootstrap section
        // (the cmdline) follows them, so PCR1 must be hashed on its own.
        byte[] kernel = RandomBytes(size, seed: 7), a = RandomBytes(size, seed: 8), b = RandomBytes(size, seed: 9);
        byte[] cmdline = "console=ttyS0"u8.ToArray();
        var sections = new List<EifSectionInput>
        {
            new(EifSectionType.Kernel, EifSectionSource.FromBytes(kernel, "k")),
            new(EifSectionType.Metadata, EifSectionSource.FromBytes(Metadata.ToJsonBytes(), "m")),
            new(EifSectionType.Ramdisk, EifSectionSource.FromBytes(a, "a")),
            new(EifSectionType.Ramdisk, EifSectionSource.FromBytes(b, "b")),
            new(EifSectionType.Cmdline, EifSectionSource.FromBytes(cmdline, "c")),
        };
        var output = new MemoryStream();

        var written = EifWriter.Write(output, new EifHeaderFields(), sections);
        using var reader = new EifReader(new MemoryStream(output.ToArray()));
        var read = reader.ComputeDigests().Measurements;

        foreach (var m in new[] { written.Measurements, read })
        {
            Assert.Equal(Pcr.Compute([.. kernel, .. a, .. b, .. cmdline]), m.Pcr0);
            Assert.Equal(Pcr.Compute([.. kernel, .. a, .. cmdline]), m.Pcr1);
            Assert.Equal(Pcr.Compute(b), m.Pcr2);
        }
    }

    [Fact]
    public void Write_LargeSingleRamdisk_Pcr1EqualsPcr0AndPcr2IsEmpty()
    {
        var spec = Spec(EifSectionSource.FromBytes(RandomBytes(9 << 20, seed: 10), "r"));
        var result = EifWriter.Write(new MemoryStream(), spec.ToHeaderFields(), spec.ToSections());
        Assert.Equal(result.Measurements.Pcr0, result.Measurements.Pcr1);
        Assert.Equal(Pcr.Compute(ReadOnlySpan<byte>.Empty), result.Measurements.Pcr2);
    }

    [Fact]
    public void Write_CmdlineWithNul_IsRejected()
    {
        var spec = new EifImageSpec { Kernel = Spec().Kernel, Cmdline = "a\0b", Ramdisks = [EifSectionSource.FromBytes(new byte[4], "r")], Metadata = Metadata };
        var ex = Assert.Throws<EifFormatException>(() => spec.ToSections());
        Assert.Equal(EifFormatError.InvalidCmdline, ex.Error);
    }

    [Fact]
    public void Write_Arm64_SetsFlagBit0()
    {
        var spec = new EifImageSpec { Kernel = Spec().Kernel, Cmdline = "x", Ramdisks = [EifSectionSource.FromBytes(new byte[4], "r")], Metadata = Metadata, Arm64 = true };
        var output = new MemoryStream();
        EifWriter.Write(output, spec.ToHeaderFields(), spec.ToSections());
        using var reader = new EifReader(new MemoryStream(output.ToArray()));
        Assert.Equal(1, reader.Header.Flags);
        Assert.Equal("aarch64", reader.Header.Architecture);
    }

    [Theory]
    [InlineData(EifSectionType.Kernel, EifFormatError.DuplicateSection)]
    [InlineData(EifSectionType.Invalid, EifFormatError.InvalidSectionType)]
    [InlineData((EifSectionType)6, EifFormatError.UnknownSectionType)]
    public void Write_ExtraSection_IsCheckedLikeTheReader(EifSectionType extra, EifFormatError error)
    {
        var sections = Spec(EifSectionSource.FromBytes(new byte[4], "r")).ToSections().Append(new EifSectionInput(extra, EifSectionSource.FromBytes(new byte[4], "x"))).ToList();
        Assert.Equal(error, Assert.Throws<EifFormatException>(() => EifWriter.Write(new MemoryStream(), new EifHeaderFields(), sections)).Error);
    }

    [Fact]
    public void Write_ThirtyThreeSections_IsTooMany()
    {
        var ramdisks = Enumerable.Range(0, 30).Select(i => EifSectionSource.FromBytes(new byte[4], $"r{i}")).ToArray();
        Assert.Equal(EifFormatError.TooManySections, Assert.Throws<EifFormatException>(() => EifWriter.Write(new MemoryStream(), new EifHeaderFields(), Spec(ramdisks).ToSections())).Error);
    }

    private static byte[] RandomBytes(int length, int seed)
    {
        byte[] bytes = new byte[length];
        new Random(seed).NextBytes(bytes);
        return bytes;
    }

    private sealed class FailingStream(long after) : Stream
    {
        private long _position;

        public override bool CanRead => true;

        public override bool CanSeek => false;

        public override bool CanWrite => false;

        public override long Length => throw new NotSupportedException();

        public override long Position { get => _position; set => throw new NotSupportedException(); }

        public override int Read(byte[] buffer, int offset, int count)
        {
            if (_position >= after)
                throw new IOException("simulated read failure");
            int n = (int)Math.Min(count, after - _position);
            RandomNumberGenerator.Fill(buffer.AsSpan(offset, n));
            _position += n;
            return n;
        }

        public override void Flush()
        {
        }

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();

        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    }

    private sealed class FullDiskStream(long capacity) : MemoryStream
    {
        // MemoryStream's span overload calls back into this one for derived types, so only this one is overridden.
        public override void Write(byte[] buffer, int offset, int count)
        {
            if (Position + count > capacity)
                throw new IOException("No space left on device");
            base.Write(buffer, offset, count);
        }
    }
}

using System.Text;
using System.Text.Json;
using EifBuilder.Cpio;
using EifBuilder.Inspect;
using EifFormat;

namespace EifBuilder.Tests;

/// <summary>The comparison behind <c>eif diff</c>, on listings and JSON documents made in the test (the CLI tests build real images).</summary>
public sealed class EifDiffTests
{
    private const long MTime = 1_700_000_000;

    [Fact]
    public void CompareJson_NestedChanges_ArePathsInDocumentOrder()
    {
        var changes = EifDiff.CompareJson(
            """{"ImageVersion":"1","BuildMetadata":{"BuildTime":"a"},"DockerInfo":{"Config":{"Env":["A=1","B=2","C=3"]}},"Gone":true}"""u8,
            """{"ImageVersion":"2","BuildMetadata":{"BuildTime":"b"},"DockerInfo":{"Config":{"Env":["A=1","B=2","C=4","D=5"]}},"New":[1]}"""u8);

        Assert.Equal(
        [
            new JsonChange("ImageVersion", JsonChangeKind.Changed, "\"1\"", "\"2\""),
            new JsonChange("BuildMetadata.BuildTime", JsonChangeKind.Changed, "\"a\"", "\"b\""),
            new JsonChange("DockerInfo.Config.Env[2]", JsonChangeKind.Changed, "\"C=3\"", "\"C=4\""),
            new JsonChange("DockerInfo.Config.Env[3]", JsonChangeKind.Added, null, "\"D=5\""),
            new JsonChange("Gone", JsonChangeKind.Removed, "true", null),
            new JsonChange("New", JsonChangeKind.Added, null, "[1]"),
        ], changes);
    }

    [Fact]
    public void CompareJson_EqualValuesInOtherLayout_HasNoChange()
    {
        Assert.Empty(EifDiff.CompareJson("""{"a":[1,2],"b":{"c":null}}"""u8, """{ "b" : { "c" : null }, "a" : [ 1, 2 ] }"""u8));
    }

    [Fact]
    public void CompareJson_TypeChange_IsOneChangeAtThatPath()
    {
        var change = Assert.Single(EifDiff.CompareJson("""{"CustomMetadata":null}"""u8, """{"CustomMetadata":{"k":"é"}}"""u8));
        Assert.Equal(new JsonChange("CustomMetadata", JsonChangeKind.Changed, "null", """{"k":"é"}"""), change);
        Assert.Equal("", Assert.Single(EifDiff.CompareJson("null"u8, "{}"u8)).Path);
    }

    [Fact]
    public void CompareJson_RepeatedKey_IsAJsonException()
    {
        Assert.ThrowsAny<JsonException>(() => EifDiff.CompareJson("""{"a":{"b":1,"b":2}}"""u8, "{}"u8));
    }

    [Theory]
    [InlineData("", "ImageName", "ImageName")]
    [InlineData("DockerInfo.Config", "Labels", "DockerInfo.Config.Labels")]
    [InlineData("Labels", "org.opencontainers.image.version", "Labels[\"org.opencontainers.image.version\"]")]
    [InlineData("", "with space", "[\"with space\"]")]
    [InlineData("x", "1st", "x[\"1st\"]")]
    [InlineData("x", "", "x[\"\"]")]
    [InlineData("x", "quote\"d", "x[\"quote\\\"d\"]")]
    public void JsonPath_KeysThatAreNotIdentifiers_AreBracketed(string parent, string key, string expected)
    {
        Assert.Equal(expected, EifDiff.JsonPath(parent, key));
    }

    [Fact]
    public void CompareFiles_EachKindOfChange_SortedByPath()
    {
        RamdiskFile[] old =
        [
            File("b", "same"),
            File("c", "old"),
            File("d", "x", mode: 0x1A4),
            File("e", "gone"),
            Link("l", "one"),
        ];
        RamdiskFile[] @new =
        [
            Link("l", "two"),
            File("d", "x", mode: 0x1ED),
            File("c", "new!"),
            File("b", "same"),
            File("a", "added"),
        ];

        var changes = EifDiff.CompareFiles(old, @new);

        Assert.Equal(["a", "c", "d", "e", "l"], changes.Select(c => c.Path));
        Assert.Equal(
            [FileChangeKind.Added, FileChangeKind.Content, FileChangeKind.Metadata, FileChangeKind.Removed, FileChangeKind.Content],
            changes.Select(c => c.Kind));
        Assert.Equal(["content", "size"], changes[1].Fields.Select(f => f.Field));
        Assert.Equal(new FieldChange("size", "3", "4"), changes[1].Fields[1]);
        Assert.Equal(new FieldChange("mode", "-rw-r--r--", "-rwxr-xr-x"), Assert.Single(changes[2].Fields));
        Assert.Equal(new FieldChange("target", "one", "two"), Assert.Single(changes[4].Fields));
    }

    [Fact]
    public void CompareFiles_InodeNumbersOnly_AreNotADifference()
    {
        // Writers number inodes in archive order: one added file renumbers every later one.
        var a = File("f", "data") with { Inode = 721 };
        var b = File("f", "data") with { Inode = 900 };
        Assert.Empty(EifDiff.CompareFiles([a], [b]));
    }

    [Fact]
    public void CompareFiles_NamesAreResolvedAsTheKernelDoes()
    {
        // "./etc/x", "/etc/x" and "etc/x" are one file; "etc/" and "etc" one directory; a repeated name: the last wins.
        RamdiskFile[] old = [File("./etc/x", "1"), Dir("etc/"), File("/run", "first"), File("run", "last")];
        RamdiskFile[] @new = [File("etc/x", "1"), Dir("etc"), File("run", "last")];
        Assert.Empty(EifDiff.CompareFiles(old, @new));
    }

    [Fact]
    public void CompareFiles_AllMetadataFields_AreListed()
    {
        var a = new RamdiskFile("dev/tty", CpioKind.CharDevice, 0x21B6, 0, 0, 0, MTime, null, null, 1, 1, 5, 0);
        var b = new RamdiskFile("dev/tty", CpioKind.CharDevice, 0x2180, 1, 2, 0, MTime + 1, null, null, 1, 1, 5, 1);

        var change = Assert.Single(EifDiff.CompareFiles([a], [b]));

        Assert.Equal(FileChangeKind.Content, change.Kind); // a device's numbers are what it is
        Assert.Equal(
        [
            new FieldChange("device", "5:0", "5:1"),
            new FieldChange("mode", "crw-rw-rw-", "crw-------"),
            new FieldChange("uid", "0", "1"),
            new FieldChange("gid", "0", "2"),
            new FieldChange("mtime", "2023-11-14T22:13:20Z", "2023-11-14T22:13:21Z"),
        ], change.Fields);
    }

    [Theory]
    [InlineData(EifSectionType.Kernel, 0, "PCR0,PCR1")]
    [InlineData(EifSectionType.Cmdline, 0, "PCR0,PCR1")]
    [InlineData(EifSectionType.Ramdisk, 0, "PCR0,PCR1")]
    [InlineData(EifSectionType.Ramdisk, 1, "PCR0,PCR2")]
    [InlineData(EifSectionType.Ramdisk, 5, "PCR0,PCR2")]
    [InlineData(EifSectionType.Signature, 0, "PCR8")]
    [InlineData(EifSectionType.Metadata, 0, "")]
    public void RegistersOf_FollowsTheSpecsRouting(EifSectionType type, int number, string expected)
    {
        // spec eif-format.md §6.1: kernel, cmdline and the first ramdisk feed PCR1, later ramdisks PCR2, all PCR0.
        Assert.Equal(expected, string.Join(',', EifDiff.RegistersOf(type, number)));
    }

    [Fact]
    public void Compare_GoldenCopies_AreTheSame()
    {
        string golden = Path.Combine(AppContext.BaseDirectory, "golden", "synth_signed.eif");
        using var a = EifReader.Open(golden);
        using var b = EifReader.Open(golden);

        EifDiffResult diff = EifDiff.Compare(a, b);

        Assert.True(diff.MeasurementsEqual);
        Assert.Equal(["PCR0", "PCR1", "PCR2", "PCR8"], diff.Measurements.Select(p => p.Register));
        Assert.All(diff.Measurements, p => Assert.Equal(DiffStatus.Same, p.Status));
        Assert.Equal(["kernel", "cmdline", "ramdisk 0", "ramdisk 1", "metadata", "signature"], diff.Sections.Select(s => s.Name));
        Assert.All(diff.Sections, s => Assert.Equal(DiffStatus.Same, s.Status));
        Assert.Equal([2, 5], diff.Sections.Where(s => s.Type is EifSectionType.Metadata or EifSectionType.Signature).Select(s => s.Old!.Index));
        Assert.Null(diff.Order);
        Assert.Null(diff.Kernel);
        Assert.Null(diff.Cmdline);
        Assert.Empty(diff.Ramdisks);
        Assert.Null(diff.Metadata);
        Assert.Empty(diff.Warnings);
    }

    [Fact]
    public void Compare_SameSectionsInAnotherOrder_NamesTheOrderAsTheCause()
    {
        // PCR0 and PCR1 hash the measured sections in file order with no framing (spec §6.1): every pair is the same,
        // and still the registers differ.
        using var a = Eif(EifSectionType.Kernel, EifSectionType.Cmdline, EifSectionType.Metadata, EifSectionType.Ramdisk);
        using var b = Eif(EifSectionType.Cmdline, EifSectionType.Kernel, EifSectionType.Metadata, EifSectionType.Ramdisk);

        EifDiffResult diff = EifDiff.Compare(a, b);

        Assert.Equal(["PCR0", "PCR1"], diff.DifferingRegisters);
        Assert.All(diff.Sections, s => Assert.Equal(DiffStatus.Same, s.Status));
        Assert.Equal(new[] { "kernel", "cmdline", "ramdisk 0" }, diff.Order!.Old);
        Assert.Equal(new[] { "cmdline", "kernel", "ramdisk 0" }, diff.Order.New);
    }

    // An EIF in memory whose sections come in the given order (kernel, cmdline, ramdisk and metadata contents fixed).
    private static EifReader Eif(params EifSectionType[] order)
    {
        byte[] metadata = new EifMetadata("app", "1", new EifBuildInfo("2025-01-01T00:00:00Z", "test", "1", "Linux", "6.12"), EifFormat.Json.JNull.Instance, EifFormat.Json.JNull.Instance).ToJsonBytes();
        byte[] Data(EifSectionType type) => type switch
        {
            EifSectionType.Kernel => new byte[4096],
            EifSectionType.Cmdline => "console=ttyS0"u8.ToArray(),
            EifSectionType.Metadata => metadata,
            _ => "not a cpio archive"u8.ToArray(),
        };
        var stream = new MemoryStream();
        EifWriter.Write(stream, new EifHeaderFields(), order.Select(t => new EifSectionInput(t, EifSectionSource.FromBytes(Data(t), t.ToString()))).ToList());
        return new EifReader(stream);
    }

    private static RamdiskFile File(string name, string content, int mode = 0x1A4)
    {
        byte[] data = Encoding.UTF8.GetBytes(content);
        return new RamdiskFile(name, CpioKind.File, 0x8000 | (uint)mode, 0, 0, data.Length, MTime, null,
            System.Security.Cryptography.SHA256.HashData(data), 0, 1, 0, 0);
    }

    private static RamdiskFile Dir(string name) => new(name, CpioKind.Directory, 0x41ED, 0, 0, 0, MTime, null, null, 0, 2, 0, 0);

    private static RamdiskFile Link(string name, string target) =>
        new(name, CpioKind.Symlink, 0xA1FF, 0, 0, target.Length, MTime, target, null, 0, 1, 0, 0);
}

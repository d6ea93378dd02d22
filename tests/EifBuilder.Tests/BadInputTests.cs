using EifTests.Shared;
using System.Formats.Tar;
using EifBuilder.Images;
using EifBuilder.RootFs;
using static EifTests.Shared.CraftedImage;

namespace EifBuilder.Tests;

/// <summary>Every bad input of issue 4 gets its error code, one line, and leaves no output file behind.</summary>
public class BadInputTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("eif-bad").FullName;

    public BadInputTests()
    {
        Directory.CreateDirectory(Path.Combine(_dir, "blobs"));
        System.IO.File.WriteAllBytes(Path.Combine(_dir, "blobs", "bzImage"), new byte[1000]);
        System.IO.File.WriteAllText(Path.Combine(_dir, "blobs", "cmdline"), "console=ttyS0");
        System.IO.File.WriteAllBytes(Path.Combine(_dir, "blobs", "init"), new byte[100]);
        Directory.CreateDirectory(Path.Combine(_dir, "tmp"));
    }

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private EnclaveBuildException Fails(IImageSource source, string architecture = "x86_64")
    {
        string output = Path.Combine(_dir, "out.eif");
        var ex = Assert.Throws<EnclaveBuildException>(() => EnclaveBuilder.Build(new EnclaveBuildRequest
        {
            Source = source,
            Architecture = architecture,
            Blobs = EnclaveBlobs.Locate(architecture, Path.Combine(_dir, "blobs"), architecture == "aarch64" ? Path.Combine(_dir, "blobs", "bzImage") : null, null, null, null),
            OutputPath = output,
            BuildTime = "2024-01-01T00:00:00Z",
            TemporaryDirectory = Path.Combine(_dir, "tmp"),
        }));
        Assert.False(System.IO.File.Exists(output));
        Assert.Empty(Directory.GetFileSystemEntries(Path.Combine(_dir, "tmp")));
        Assert.Empty(Directory.GetFiles(_dir, "*.tmp"));
        Assert.DoesNotContain('\n', ex.Message);
        return ex;
    }

    private IImageSource Oci(CraftedImage image, Compression compression = Compression.Gzip, Action<int, byte[]>? corrupt = null, string? mediaType = null)
    {
        string layout = Path.Combine(_dir, "oci-" + Guid.NewGuid().ToString("N"));
        image.WriteOciLayout(layout, "v1", compression, corrupt, mediaType);
        return OciLayoutSource.FromDirectory(layout, "v1");
    }

    private IImageSource Archive(CraftedImage image)
    {
        string path = Path.Combine(_dir, Guid.NewGuid().ToString("N") + ".tar");
        image.WriteDockerArchive(path, "t:1");
        return new DockerArchiveSource(path, null);
    }

    private static CraftedImage Simple(params TarEntry[] entries) => new CraftedImage().Layer(entries.Length > 0 ? entries : [File("bin/app", "x")]);

    [Fact]
    public void Layer_WhoseBytesDoNotMatchItsDigest_IsDigestMismatch()
    {
        var ex = Fails(Oci(Simple(), Compression.None, corrupt: (_, blob) => blob[600] ^= 1));
        Assert.Equal(BuildError.DigestMismatch, ex.Error);
        Assert.Contains("layer 0", ex.Message);
    }

    [Fact]
    public void Layer_NotMatchingItsDiffId_IsDigestMismatch()
    {
        var image = new CraftedImage { DiffIdOverride = (_, _) => "sha256:" + new string('0', 64) }.Layer(File("a", "b"));
        var ex = Fails(Oci(image));
        Assert.Equal(BuildError.DigestMismatch, ex.Error);
        Assert.Contains("diff_id", ex.Message);
    }

    [Fact]
    public void Layer_ClaimingGzipButPlainTar_IsInvalidLayer() =>
        Assert.Equal(BuildError.InvalidLayer, Fails(Oci(Simple(), Compression.None, mediaType: "application/vnd.oci.image.layer.v1.tar+gzip")).Error);

    [Fact]
    public void Layer_OfUnknownMediaType_IsUnsupported() =>
        Assert.Equal(BuildError.UnsupportedMediaType, Fails(Oci(Simple(), Compression.None, mediaType: "application/vnd.example.layer.v1.squashfs")).Error);

    [Fact]
    public void Image_ForAnotherArchitecture_IsUnsupportedPlatform()
    {
        var ex = Fails(Archive(new CraftedImage { Architecture = "arm64" }.Layer(File("a", "b"))));
        Assert.Equal(BuildError.UnsupportedPlatform, ex.Error);
        Assert.Contains("linux/arm64", ex.Message);
    }

    [Fact]
    public void Image_WithoutCommand_IsInvalidCommand() =>
        Assert.Equal(BuildError.InvalidCommand, Fails(Archive(new CraftedImage { Cmd = null, Entrypoint = null }.Layer(File("a", "b")))).Error);

    [Fact]
    public void Image_WithNewlineInEnv_IsInvalidCommand()
    {
        var ex = Fails(Archive(new CraftedImage { Env = ["A=one\ntwo"] }.Layer(File("a", "b"))));
        Assert.Equal(BuildError.InvalidCommand, ex.Error);
        Assert.Contains("newline", ex.Message);
    }

    [Theory]
    [InlineData("../escape")]
    [InlineData("a/../../escape")]
    public void Entry_ClimbingOutOfTheRoot_IsUnsafePath(string name) =>
        Assert.Equal(BuildError.UnsafePath, Fails(Archive(Simple(File(name, "x")))).Error);

    [Fact]
    public void Entry_UnderARegularFile_IsInvalidLayer() =>
        Assert.Equal(BuildError.InvalidLayer, Fails(Archive(Simple(File("f", "x"), File("f/child", "y")))).Error);

    [Fact]
    public void HardLink_ToAMissingFile_IsInvalidLayer() =>
        Assert.Equal(BuildError.InvalidLayer, Fails(Archive(Simple(HardLink("link", "nowhere")))).Error);

    [Fact]
    public void SymlinkLoop_IsUnsafePath() =>
        Assert.Equal(BuildError.UnsafePath, Fails(Archive(Simple(Symlink("a", "b"), Symlink("b", "a"), File("a/x", "y")))).Error);

    [Fact]
    public void TruncatedLayer_IsInvalidLayer()
    {
        var ex = Fails(Oci(Simple(File("big", new string('x', 5000))), Compression.None, corrupt: null, mediaType: null) is var s ? Truncate(s) : s);
        Assert.True(ex.Error is BuildError.InvalidLayer or BuildError.DigestMismatch, ex.Message);
    }

    [Fact]
    public void Archive_ThatIsNotATar_IsInvalidImage()
    {
        string path = Path.Combine(_dir, "junk.tar");
        System.IO.File.WriteAllBytes(path, new byte[4096].Select((_, i) => (byte)(i % 7 + 1)).ToArray());
        Assert.Equal(BuildError.InvalidImage, Fails(new DockerArchiveSource(path, null)).Error);
    }

    [Fact]
    public void Archive_WithoutTheNamedImage_IsImageNotFound()
    {
        string path = Path.Combine(_dir, "one.tar");
        Simple().WriteDockerArchive(path, "present:1");
        var ex = Fails(new DockerArchiveSource(path, "absent:2"));
        Assert.Equal(BuildError.ImageNotFound, ex.Error);
        Assert.Contains("present:1", ex.Message);
    }

    [Fact]
    public void MissingFiles_AreImageNotFound()
    {
        Assert.Equal(BuildError.ImageNotFound, Assert.Throws<EnclaveBuildException>(() => new DockerArchiveSource(Path.Combine(_dir, "no.tar"), null)).Error);
        Assert.Equal(BuildError.ImageNotFound, Assert.Throws<EnclaveBuildException>(() => OciLayoutSource.FromDirectory(Path.Combine(_dir, "no"), null)).Error);
        Assert.Equal(BuildError.InvalidReference, Assert.Throws<EnclaveBuildException>(() => ImageSources.Open("ftp:thing", new ImageSources.Options())).Error);
    }

    [Fact]
    public void MissingBlobs_SayWhereTheBuilderLooked()
    {
        var ex = Assert.Throws<EnclaveBuildException>(() => EnclaveBlobs.Locate("x86_64", Path.Combine(_dir, "nothing-here"), null, null, null, null, environmentBlobs: null));
        Assert.Equal(BuildError.MissingBlob, ex.Error);
        Assert.Contains("nothing-here (--blobs)", ex.Message);
        var inFolder = Assert.Throws<EnclaveBuildException>(() => EnclaveBlobs.Locate("aarch64", Path.Combine(_dir, "blobs"), null, null, null, null));
        Assert.Contains("no Image for aarch64 in", inFolder.Message);
    }

    [Fact]
    public void RootFs_WriteThroughASymlinkedParent_StaysInsideTheRoot()
    {
        // "evil -> /etc" then "evil/passwd", and "up -> ../../../.." then "up/x": followed inside the root only.
        var warnings = new List<string>();
        var tree = new RootFsTree(warnings.Add);
        var entries = new[]
        {
            TarEntryOf("etc", EifBuilder.Tar.TarEntryKind.Directory),
            TarEntryOf("evil", EifBuilder.Tar.TarEntryKind.Symlink, "/etc"),
            TarEntryOf("evil/passwd", EifBuilder.Tar.TarEntryKind.File),
            TarEntryOf("up", EifBuilder.Tar.TarEntryKind.Symlink, "../../../.."),
            TarEntryOf("up/x", EifBuilder.Tar.TarEntryKind.File),
            TarEntryOf("/abs", EifBuilder.Tar.TarEntryKind.File),
        };

        tree.ApplyLayer(0, entries, "layer");

        var paths = tree.Walk().Select(p => p.Path).ToList();
        Assert.Equal(["abs", "etc", "etc/passwd", "evil", "up", "x"], paths);
        Assert.Single(warnings, w => w.Contains("absolute", StringComparison.Ordinal));
    }

    [Fact]
    public void Tar_WithABadChecksum_IsInvalidLayer()
    {
        byte[] tar = Simple(File("a", "b")).LayerTar(0);
        int header = 0;
        while (tar[header + 156] != (byte)'0')
            header += 512; // skip the PAX header block(s) to the file's header
        tar[header + 1] ^= 0x20;
        var reader = new EifBuilder.Tar.TarStreamReader(new MemoryStream(tar), "layer");
        var ex = Assert.Throws<EnclaveBuildException>(() => { while (reader.Next() is not null) { } });
        Assert.Equal(BuildError.InvalidLayer, ex.Error);
        Assert.Contains("checksum", ex.Message);
    }

    [Fact]
    public void Tar_LongNamesAndBase256_AreRead()
    {
        var stream = new MemoryStream();
        string longName = string.Join('/', Enumerable.Repeat("directory-with-a-long-name", 12)) + "/file";
        using (var writer = new TarWriter(stream, TarEntryFormat.Gnu, leaveOpen: true))
        {
            writer.WriteEntry(new GnuTarEntry(TarEntryType.RegularFile, longName) { DataStream = new MemoryStream("data"u8.ToArray()), Uid = 3_000_000 });
            writer.WriteEntry(new GnuTarEntry(TarEntryType.SymbolicLink, "l") { LinkName = longName });
        }

        stream.Position = 0;
        var reader = new EifBuilder.Tar.TarStreamReader(stream, "gnu");
        var file = reader.Next()!;
        var link = reader.Next()!;

        Assert.Equal(longName, file.Name);
        Assert.Equal(3_000_000, file.Uid);
        Assert.Equal(4, file.Size);
        Assert.Equal(longName, link.LinkName);
        Assert.Null(reader.Next());
    }

    private static EifBuilder.Tar.TarEntry TarEntryOf(string name, EifBuilder.Tar.TarEntryKind kind, string link = "") =>
        new(name, kind, 0x1ED, 0, 0, 0, 0, 0, link, 0, 0);

    private IImageSource Truncate(IImageSource source)
    {
        // Cut the single layer blob of the newest layout in half, after its digest was recorded.
        string layout = Directory.GetDirectories(_dir, "oci-*").OrderBy(Directory.GetCreationTimeUtc).Last();
        string blob = Directory.GetFiles(Path.Combine(layout, "blobs", "sha256")).OrderByDescending(f => new FileInfo(f).Length).First();
        byte[] bytes = System.IO.File.ReadAllBytes(blob);
        System.IO.File.WriteAllBytes(blob, bytes[..(bytes.Length / 2)]);
        return source;
    }
}

using EifTests.Shared;
using EifBuilder.Images;
using EifFormat;
using static EifTests.Shared.CraftedImage;

namespace EifBuilder.Tests;

public class BuilderTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("eif-builder").FullName;

    public BuilderTests()
    {
        Directory.CreateDirectory(Path.Combine(_dir, "blobs"));
        System.IO.File.WriteAllBytes(Path.Combine(_dir, "blobs", "bzImage"), Enumerable.Range(0, 5000).Select(i => unchecked((byte)i)).ToArray());
        System.IO.File.WriteAllText(Path.Combine(_dir, "blobs", "bzImage.config"), "#\n# Automatically generated file; DO NOT EDIT.\n# Linux/x86 6.12.48 Kernel Configuration\n");
        System.IO.File.WriteAllText(Path.Combine(_dir, "blobs", "cmdline"), "console=ttyS0 reboot=k\n");
        System.IO.File.WriteAllBytes(Path.Combine(_dir, "blobs", "init"), Enumerable.Range(0, 3001).Select(i => unchecked((byte)(i * 7))).ToArray());
        System.IO.File.WriteAllBytes(Path.Combine(_dir, "blobs", "nsm.ko"), Enumerable.Range(0, 777).Select(i => unchecked((byte)(i * 3))).ToArray());
        Directory.CreateDirectory(Path.Combine(_dir, "tmp"));
    }

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// <summary>An image exercising every flattening rule across three layers.</summary>
    internal static CraftedImage LayeredImage(CraftedImage? template = null)
    {
        var image = template ?? new CraftedImage { Entrypoint = ["/bin/app", "--serve"], Cmd = ["--port", "8080"], Env = ["PATH=/bin", "GREETING=hello world", "EQ=a=b"], WorkingDir = "/srv", User = "1000:1000" };
        image.Layer(
            Dir("bin/"), File("bin/app", "#!/bin/sh\necho app\n", mode: 0x1ED), File("bin/setuid", "s", mode: 0x9ED),
            Dir("etc/"), File("etc/passwd", "root:x:0:0::/root:/bin/sh\n"), File("etc/old", "to be deleted"),
            Dir("data/"), File("data/one", "1"), File("data/two", "2"), Dir("data/sub/"), File("data/sub/three", "3"),
            Dir("opaque/"), File("opaque/lower", "hidden by an opaque marker"),
            Dir("srv/"), File("srv/owned", "by 1000", uid: 1000, gid: 1000), Symlink("srv/link", "../bin/app"));
        image.Layer(
            Whiteout("etc/old"), File("etc/passwd", "root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/srv:/bin/sh\n"),
            Opaque("opaque/"), File("opaque/upper", "kept"),
            HardLink("data/one-again", "data/one"), Fifo("run-me"), CharDevice("null", 1, 3),
            File("data-b", "sorts after data/ by byte value? no: '-' 0x2D < '/' 0x2F"));
        image.Layer(
            Whiteout("data/sub"), File("data/two", "2 replaced"), Dir("deep/a/b/c/"), File("deep/a/b/c/leaf", "leaf"),
            File("名前", "non-ASCII name"));
        return image;
    }

    private EnclaveBuildRequest Request(IImageSource source, string output, long? epoch = 1_700_000_000) => new()
    {
        Source = source,
        Architecture = "x86_64",
        Blobs = EnclaveBlobs.Locate("x86_64", Path.Combine(_dir, "blobs"), null, null, null, null),
        OutputPath = Path.Combine(_dir, output),
        BuildTime = "2024-01-01T00:00:00+00:00",
        BuildTool = ("eif", "test"),
        SourceDateEpoch = epoch,
        TemporaryDirectory = Path.Combine(_dir, "tmp"),
    };

    private (EnclaveBuildResult Result, List<NewcArchive.Entry> Customer, List<NewcArchive.Entry> Bootstrap) Build(IImageSource source, string output, long? epoch = 1_700_000_000)
    {
        var result = EnclaveBuilder.Build(Request(source, output, epoch));
        using var reader = EifReader.Open(Path.Combine(_dir, output));
        Assert.True(reader.ComputeDigests().CrcMatches);
        var ramdisks = reader.Sections.Where(s => s.Type == EifSectionType.Ramdisk).ToList();
        Assert.Equal(2, ramdisks.Count);
        byte[] Read(EifSection s)
        {
            using var stream = reader.OpenSection(s.Index);
            var ms = new MemoryStream();
            stream.CopyTo(ms);
            return ms.ToArray();
        }

        return (result, NewcArchive.Read(Read(ramdisks[1])), NewcArchive.Read(Read(ramdisks[0])));
    }

    [Fact]
    public void Build_LayeredImage_CustomerRamdiskIsTheMergedTreeInCanonicalOrder()
    {
        string archive = Path.Combine(_dir, "image.tar");
        LayeredImage().WriteDockerArchive(archive, "test/layered:1");

        var (_, customer, _) = Build(new DockerArchiveSource(archive, null), "out.eif");
        var names = customer.Select(e => e.Name).ToList();

        Assert.Equal(
        [
            "rootfs", "rootfs/bin", "rootfs/bin/app", "rootfs/bin/setuid",
            "rootfs/data", "rootfs/data/one", "rootfs/data/one-again", "rootfs/data/two", "rootfs/data-b",
            "rootfs/deep", "rootfs/deep/a", "rootfs/deep/a/b", "rootfs/deep/a/b/c", "rootfs/deep/a/b/c/leaf",
            "rootfs/dev", "rootfs/etc", "rootfs/etc/hosts", "rootfs/etc/passwd",
            "rootfs/null", "rootfs/opaque", "rootfs/opaque/upper", "rootfs/proc", "rootfs/run", "rootfs/run-me",
            "rootfs/srv", "rootfs/srv/link", "rootfs/srv/owned", "rootfs/sys", "rootfs/tmp",
            "rootfs/" + System.Text.Encoding.Latin1.GetString(System.Text.Encoding.UTF8.GetBytes("名前")),
            "cmd", "env", "workdir", "user",
        ], names);
        var byName = customer.ToDictionary(e => e.Name);
        Assert.Equal("2 replaced", byName["rootfs/data/two"].Text);                        // later layer wins
        Assert.DoesNotContain("rootfs/etc/old", names);                                    // whiteout
        Assert.DoesNotContain("rootfs/data/sub", names);                                   // whiteout of a directory
        Assert.DoesNotContain("rootfs/opaque/lower", names);                               // opaque directory
        Assert.Equal(0x8000u | 0x9ED, byName["rootfs/bin/setuid"].Mode);                   // setuid kept
        Assert.Equal((1000u, 1000u), (byName["rootfs/srv/owned"].Uid, byName["rootfs/srv/owned"].Gid));
        Assert.Equal("../bin/app", byName["rootfs/srv/link"].Text);
        Assert.Equal(0xA000u, byName["rootfs/srv/link"].Type);
        Assert.Equal(0x1000u, byName["rootfs/run-me"].Type);
        Assert.Equal((0x2000u, 1u, 3u), (byName["rootfs/null"].Type, byName["rootfs/null"].RdevMajor, byName["rootfs/null"].RdevMinor));

        // A real hard link: one inode, link count 2, the data on the last name (GNU cpio's convention).
        var one = byName["rootfs/data/one"];
        var again = byName["rootfs/data/one-again"];
        Assert.Equal(one.Ino, again.Ino);
        Assert.Equal((2u, 2u), (one.NLink, again.NLink));
        Assert.Equal((string.Empty, "1"), (one.Text, again.Text));

        Assert.Equal("/bin/app\n--serve\n--port\n8080\n", byName["cmd"].Text);           // ENTRYPOINT then CMD, as docker run
        Assert.Equal("PATH=/bin\nGREETING=hello world\nEQ=a=b\n", byName["env"].Text);
        Assert.Equal("/srv\n", byName["workdir"].Text);
        Assert.Equal("1000:1000\n", byName["user"].Text);
        Assert.StartsWith("127.0.0.1       localhost\n", byName["rootfs/etc/hosts"].Text);
        Assert.All(customer, e => Assert.True(e.MTime <= 1_700_000_000));                  // SOURCE_DATE_EPOCH clamp
        Assert.Equal(1_600_000_000u, byName["rootfs/bin/app"].MTime);                      // earlier times kept
        Assert.Equal(customer.Select(e => e.Ino).Distinct().Count(), customer.Count - 1);  // one shared inode
    }

    [Fact]
    public void Build_DockerSaveWithALinkedDuplicateLayer_ReadsTheLinkedLayer()
    {
        // docker save (20.10) stores a layer equal to an earlier one once: "ID2/layer.tar -> ../ID1/layer.tar".
        CraftedImage Image() => new CraftedImage()
            .Layer(CraftedImage.Dir("app"), CraftedImage.File("app/a", "same"))
            .Layer(CraftedImage.File("app/b", "between"))
            .Layer(CraftedImage.Dir("app"), CraftedImage.File("app/a", "same"));
        string linked = Path.Combine(_dir, "linked.tar");
        string plain = Path.Combine(_dir, "plain.tar");
        Image().WriteDockerArchive(linked, "test/dup:1", linkDuplicates: true);
        Image().WriteDockerArchive(plain, "test/dup:1");
        using (var archive = System.IO.File.OpenRead(linked))
        using (var reader = new System.Formats.Tar.TarReader(archive))
        {
            var entries = new List<System.Formats.Tar.TarEntry>();
            while (reader.GetNextEntry() is { } entry)
                entries.Add(entry);
            Assert.Single(entries, e => e.EntryType == System.Formats.Tar.TarEntryType.SymbolicLink);
        }

        var (fromLinked, customer, _) = Build(new DockerArchiveSource(linked, null), "linked.eif");
        var (fromPlain, _, _) = Build(new DockerArchiveSource(plain, null), "plain.eif");

        Assert.Equal("same", customer.Single(e => e.Name == "rootfs/app/a").Text);
        Assert.Equal(fromPlain.Written.Measurements.Pcr2, fromLinked.Written.Measurements.Pcr2);
    }

    [Fact]
    public void Build_BootstrapRamdisk_IsLinuxkitsLayout()
    {
        string archive = Path.Combine(_dir, "image.tar");
        LayeredImage().WriteDockerArchive(archive, "test/layered:1");

        var (_, _, bootstrap) = Build(new DockerArchiveSource(archive, null), "out.eif");

        Assert.Equal(["dev", "init", "nsm.ko"], bootstrap.Select(e => e.Name));
        Assert.Equal([721u, 722u, 723u], bootstrap.Select(e => e.Ino));
        Assert.All(bootstrap, e => Assert.Equal((1492533000u, 0u, 0u, 3u, 1u), (e.MTime, e.Uid, e.Gid, e.DevMajor, e.DevMinor)));
        Assert.Equal([0x41EDu, 0x81EDu, 0x81EDu], bootstrap.Select(e => e.Mode));
        Assert.Equal(System.IO.File.ReadAllBytes(Path.Combine(_dir, "blobs", "init")), bootstrap[1].Data);
    }

    [Fact]
    public void Build_SameImageFromEverySourceAndCompression_GivesTheSamePcrs()
    {
        var image = LayeredImage();
        string archive = Path.Combine(_dir, "image.tar");
        image.WriteDockerArchive(archive, "test/layered:1");
        image.WriteOciLayout(Path.Combine(_dir, "oci-plain"), "v1", Compression.None);
        image.WriteOciLayout(Path.Combine(_dir, "oci-gzip"), "v1", Compression.Gzip);
        image.WriteOciLayout(Path.Combine(_dir, "oci-zstd"), "v1", Compression.Zstd);
        image.WriteOciArchive(Path.Combine(_dir, "oci.tar"), "v1", Compression.Gzip);

        var results = new[]
        {
            Build(new DockerArchiveSource(archive, "test/layered:1"), "a.eif").Result,
            Build(OciLayoutSource.FromDirectory(Path.Combine(_dir, "oci-plain"), "v1"), "b.eif").Result,
            Build(OciLayoutSource.FromDirectory(Path.Combine(_dir, "oci-gzip"), "v1"), "c.eif").Result,
            Build(OciLayoutSource.FromDirectory(Path.Combine(_dir, "oci-zstd"), null), "d.eif").Result,
            Build(OciLayoutSource.FromArchive(Path.Combine(_dir, "oci.tar"), "v1"), "e.eif").Result,
        };

        foreach (var r in results)
        {
            Assert.Equal(results[0].Written.Measurements.Pcr0, r.Written.Measurements.Pcr0);
            Assert.Equal(results[0].Written.Measurements.Pcr2, r.Written.Measurements.Pcr2);
            Assert.Equal(results[0].ImageId, r.ImageId);
        }

        Assert.Empty(Directory.GetFileSystemEntries(Path.Combine(_dir, "tmp"))); // decompressed layers cleaned up
    }

    [Fact]
    public void Build_TwiceWithSourceDateEpoch_IsByteIdentical()
    {
        string layout = Path.Combine(_dir, "oci");
        LayeredImage().WriteOciLayout(layout, "v1", Compression.Gzip);

        Build(OciLayoutSource.FromDirectory(layout, "v1"), "one.eif");
        Build(OciLayoutSource.FromDirectory(layout, "v1"), "two.eif");

        Assert.Equal(System.IO.File.ReadAllBytes(Path.Combine(_dir, "one.eif")), System.IO.File.ReadAllBytes(Path.Combine(_dir, "two.eif")));
    }

    [Fact]
    public void Build_Metadata_FollowsNitroCli()
    {
        string archive = Path.Combine(_dir, "image.tar");
        LayeredImage().WriteDockerArchive(archive, "registry.local:5000/team/app:1.2");

        var (result, _, _) = Build(new DockerArchiveSource(archive, null), "out.eif");
        using var reader = EifReader.Open(Path.Combine(_dir, "out.eif"));
        var metadata = reader.Metadata!;

        Assert.Equal("registry.local", metadata.ImageName); // nitro-cli: the reference before its first ':'
        Assert.Equal(result.ImageId["sha256:".Length..], metadata.ImageVersion);
        Assert.Equal(("Linux", "6.12.48"), (metadata.BuildMetadata.OperatingSystem, metadata.BuildMetadata.KernelVersion));
        Assert.Equal("console=ttyS0 reboot=k", ReadCmdline(reader));
        var docker = Assert.IsType<EifFormat.Json.JObject>(metadata.DockerInfo);
        Assert.Equal(result.ImageId, ((EifFormat.Json.JString)docker["Id"]!).Value);
        Assert.Equal("amd64", ((EifFormat.Json.JString)docker["Architecture"]!).Value);
    }

    [Fact]
    public void Build_NitroCliCommandRule_RunsCmdAlone()
    {
        string archive = Path.Combine(_dir, "image.tar");
        LayeredImage().WriteDockerArchive(archive, "t:1");

        EnclaveBuilder.Build(Request(new DockerArchiveSource(archive, null), "n.eif") with { NitroCliCommand = true });
        using var reader = EifReader.Open(Path.Combine(_dir, "n.eif"));
        using var stream = reader.OpenSection(reader.Sections.Last(s => s.Type == EifSectionType.Ramdisk).Index);
        var ms = new MemoryStream();
        stream.CopyTo(ms);

        Assert.Equal("--port\n8080\n", NewcArchive.Read(ms.ToArray()).Single(e => e.Name == "cmd").Text);
    }

    private static string ReadCmdline(EifReader reader)
    {
        using var s = reader.OpenSection(reader.FindSection(EifSectionType.Cmdline)!.Value.Index);
        return new StreamReader(s).ReadToEnd();
    }
}

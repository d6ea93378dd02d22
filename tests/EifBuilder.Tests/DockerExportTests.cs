using EifBuilder.Images;
using EifFormat;
using EifTests.Shared;

namespace EifBuilder.Tests;

/// <summary>
/// Issue 4's acceptance test: for each test image built by the real Docker daemon (tools/test-images), the customer
/// ramdisk unpacked with GNU <c>cpio -i</c> equals <c>docker export</c> of a container of that image, unpacked with
/// GNU tar: the same paths, types, modes, owners, link targets, device numbers, hard-link groups and file contents
/// under <c>rootfs/</c> — minus what Docker's container init layer adds and the builder does not (spec builder.md
/// §3), and minus the mount points and /etc/hosts the builder adds when the image lacks them.
/// </summary>
public class DockerExportTests : IDisposable
{
    // Docker's container init layer (moby daemon/initlayer, container setup): in every export, in no image.
    private static readonly HashSet<string> DockerInitEntries =
        [".dockerenv", "dev/console", "dev/pts", "dev/shm", "etc/hostname", "etc/hosts", "etc/resolv.conf", "etc/mtab"];

    private readonly string _dir = Directory.CreateTempSubdirectory("eif-export").FullName;

    public void Dispose() => TestImages.Run("rm", "-rf", _dir); // device nodes and read-only modes: rm copes

    public static TheoryData<string> Images() => new("hello", "layers", "entrypoint", "entrypoint-only", "user-name");

    [Theory]
    [MemberData(nameof(Images))]
    public void CustomerRamdisk_UnpackedWithCpio_EqualsDockerExport(string image)
    {
        string forms = TestImages.Require(image);
        string cpio = TestImages.Which("cpio") ?? throw SkipNeeds("cpio");
        string tar = TestImages.Which("tar") ?? throw SkipNeeds("tar");
        byte[] ramdisk = CustomerRamdisk(new DockerArchiveSource(Path.Combine(forms, "docker-archive.tar"), null));
        string ramdiskFile = Path.Combine(_dir, "customer.cpio");
        File.WriteAllBytes(ramdiskFile, ramdisk);
        string fromCpio = Directory.CreateDirectory(Path.Combine(_dir, "cpio")).FullName;
        string fromExport = Directory.CreateDirectory(Path.Combine(_dir, "export")).FullName;

        TestImages.Run("sh", "-c", $"cd '{fromCpio}' && '{cpio}' -idm --quiet < '{ramdiskFile}'");
        TestImages.Run(tar, "-xpf", Path.Combine(forms, "export.tar"), "-C", fromExport, "--numeric-owner");

        var ours = List(Path.Combine(fromCpio, "rootfs"));
        var docker = List(fromExport);
        foreach (string path in DockerInitEntries)
        {
            docker.Remove(path);
            ours.Remove(path);
        }

        foreach (string mountPoint in new[] { "run", "tmp" })
        {
            if (!docker.ContainsKey(mountPoint))
                Assert.True(ours.Remove(mountPoint), $"the builder should add /{mountPoint}");
        }

        Assert.True(docker.Count > 5, $"{image}: the export lists only {docker.Count} entries");
        Assert.Equal(docker.Keys.Order(StringComparer.Ordinal), ours.Keys.Order(StringComparer.Ordinal));
        var dockerHashes = Hashes(fromExport);
        var ourHashes = Hashes(Path.Combine(fromCpio, "rootfs"));
        foreach (var (path, expected) in docker)
        {
            var actual = ours[path];
            Assert.True(expected.Describe == actual.Describe, $"{image}: /{Show(path)}: docker export has {expected.Describe}, the ramdisk {actual.Describe}");
            if (expected.Type == 'f')
                Assert.True(dockerHashes[path] == ourHashes[path], $"{image}: /{Show(path)}: contents differ");
        }

        Assert.Equal(LinkGroups(docker), LinkGroups(ours));
    }

    [Fact]
    public void Layers_SpecialCasesSurviveTheRoundTrip()
    {
        // Spot checks on the 'layers' image, so a regression names its cause (the comparison above covers all).
        string forms = TestImages.Require("layers");
        var entries = NewcArchive.Read(CustomerRamdisk(new DockerArchiveSource(Path.Combine(forms, "docker-archive.tar"), null))).ToDictionary(e => e.Name);

        Assert.False(entries.ContainsKey("rootfs/data/delete-me") && entries["rootfs/data/delete-me"].Data.Length != 5); // re-added after its whiteout
        Assert.DoesNotContain("rootfs/gone-dir", entries.Keys);
        Assert.DoesNotContain("rootfs/d/g", entries.Keys);          // opaque directory
        Assert.Contains("rootfs/d/f", entries.Keys);
        Assert.Equal(0x1000u, entries["rootfs/special/fifo"].Type);
        Assert.Equal((3_000_000u, 3_000_001u), (entries["rootfs/special/big-ids"].Uid, entries["rootfs/special/big-ids"].Gid));
        Assert.Equal(entries["rootfs/links/a"].Ino, entries["rootfs/links/b"].Ino);
        Assert.Equal(entries["rootfs/links/lower"].Ino, entries["rootfs/links/lower-hard"].Ino);
        Assert.DoesNotContain(entries.Keys, k => k.Contains(".wh.", StringComparison.Ordinal));
    }

    private byte[] CustomerRamdisk(IImageSource source)
    {
        string blobs = Directory.CreateDirectory(Path.Combine(_dir, "blobs")).FullName;
        File.WriteAllBytes(Path.Combine(blobs, "bzImage"), new byte[512]);
        File.WriteAllText(Path.Combine(blobs, "cmdline"), "console=ttyS0");
        File.WriteAllBytes(Path.Combine(blobs, "init"), new byte[512]);
        string output = Path.Combine(_dir, "image.eif");
        EnclaveBuilder.Build(new EnclaveBuildRequest
        {
            Source = source,
            Architecture = "x86_64",
            Blobs = EnclaveBlobs.Locate("x86_64", blobs, null, null, null, null),
            OutputPath = output,
            BuildTime = "2024-01-01T00:00:00Z",
        });
        using var reader = EifReader.Open(output);
        using var stream = reader.OpenSection(reader.Sections.Last(s => s.Type == EifSectionType.Ramdisk).Index);
        var bytes = new MemoryStream();
        stream.CopyTo(bytes);
        return bytes.ToArray();
    }

    private sealed record Node(char Type, string Mode, string Uid, string Gid, string Size, string Link, string Device, string Inode, int Links)
    {
        internal string Describe => $"{Type} mode {Mode} owner {Uid}:{Gid}{(Type == 'f' ? " size " + Size : string.Empty)}{(Type == 'l' ? " -> " + Link : string.Empty)}{(Device.Length > 0 ? " device " + Device : string.Empty)}";
    }

    // GNU find over a tree: type, permissions (with setuid/setgid/sticky), owner, size, link target, inode, link
    // count; device numbers from stat. Names are raw bytes (decoded as Latin-1), as the ramdisk holds them.
    private static Dictionary<string, Node> List(string root)
    {
        string listing = TestImages.Run(System.Text.Encoding.Latin1, "find", root, "-mindepth", "1", "-printf", "%P\\0%y\\0%m\\0%U\\0%G\\0%s\\0%l\\0%i\\0%n\\0");
        string devices = TestImages.Run(System.Text.Encoding.Latin1, "sh", "-c", $"cd '{root}' && find . \\( -type b -o -type c \\) -exec stat --printf '%n\\0%t:%T\\0' {{}} +");
        string[] d = devices.Split('\0');
        var rdev = new Dictionary<string, string>(StringComparer.Ordinal);
        for (int i = 0; i + 1 < d.Length; i += 2)
            rdev[d[i][2..]] = d[i + 1];
        string[] fields = listing.Split('\0');
        var nodes = new Dictionary<string, Node>(StringComparer.Ordinal);
        for (int i = 0; i + 9 <= fields.Length - 1; i += 9)
        {
            char type = fields[i + 1][0];
            nodes[fields[i]] = new Node(type, fields[i + 2], fields[i + 3], fields[i + 4], fields[i + 5], fields[i + 6], rdev.GetValueOrDefault(fields[i], string.Empty), fields[i + 7], int.Parse(fields[i + 8], System.Globalization.CultureInfo.InvariantCulture));
        }

        return nodes;
    }

    // sha256sum of every regular file, by raw-byte name.
    private static Dictionary<string, string> Hashes(string root)
    {
        string output = TestImages.Run(System.Text.Encoding.Latin1, "sh", "-c", $"cd '{root}' && find . -type f -print0 | xargs -0 -r sha256sum -z");
        return output.Split('\0', StringSplitOptions.RemoveEmptyEntries)
            .ToDictionary(line => line[(line.IndexOf("  ", StringComparison.Ordinal) + 4)..], line => line[..64], StringComparer.Ordinal);
    }

    private static string Show(string path) => EifFormat.PrintableText.Of(path, 200);

    // The sets of names sharing an inode, as sorted strings (comparable across the two trees).
    private static List<string> LinkGroups(Dictionary<string, Node> nodes) =>
        nodes.Where(n => n.Value.Type == 'f' && n.Value.Links > 1)
            .GroupBy(n => n.Value.Inode)
            .Select(g => string.Join(" = ", g.Select(n => n.Key).Order(StringComparer.Ordinal)))
            .Order(StringComparer.Ordinal)
            .ToList();

    private static Exception SkipNeeds(string program)
    {
        Assert.Skip($"'{program}' is not installed (tools/provision installs it)");
        return new InvalidOperationException();
    }
}

using System.IO.Compression;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using EifBuilder.Cpio;
using EifBuilder.Inspect;
using EifFormat;
using EifTests.Shared;
using static EifCli.Tests.CliHarness;

namespace EifCli.Tests;

/// <summary>
/// <c>eif extract</c>: section files byte for byte against the golden EIFs, --section selection and its usage
/// errors, --unpack of images built by build-enclave compared with the ramdisk listing, nothing replaced, nothing
/// left after a failure, and the --json shape. The unpacker's hostile corpus is in EifBuilder.Tests.
/// </summary>
public sealed class ExtractTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("eif-extract").FullName;

    public void Dispose() => TestImages.Run("rm", "-rf", "--one-file-system", _dir); // names that are not UTF-8 defeat Directory.Delete

    public static TheoryData<string> GoldenEifs => new(Directory.EnumerateFiles(GoldenDirectory, "*.eif").Select(p => Path.GetFileNameWithoutExtension(p)).Order(StringComparer.Ordinal));

    [Theory]
    [MemberData(nameof(GoldenEifs))]
    public void Extract_GoldenEif_EverySectionIsWrittenByteForByte(string name)
    {
        string eif = Golden(name + ".eif");
        string output = Path.Combine(_dir, "out");

        var (code, stdout, stderr) = Run("extract", "--eif-path", eif, "--output-dir", output);

        Assert.True(code == 0, stderr);
        byte[] bytes = File.ReadAllBytes(eif);
        using var reader = EifReader.Open(eif);
        var expected = new List<string>();
        foreach (EifSection section in reader.Sections)
        {
            string file = section.Type switch
            {
                EifSectionType.Kernel => "kernel",
                EifSectionType.Cmdline => "cmdline",
                EifSectionType.Metadata => "metadata.json",
                EifSectionType.Signature => "signature.cbor",
                _ => $"ramdisk-{expected.Count(e => e.StartsWith("ramdisk-", StringComparison.Ordinal))}.cpio", // the golden ramdisks are plain bytes
            };
            expected.Add(file);
            Assert.Equal(bytes[(int)section.DataOffset..(int)section.End], File.ReadAllBytes(Path.Combine(output, file)));
        }

        Assert.Equal(expected.Order(StringComparer.Ordinal), Directory.EnumerateFileSystemEntries(output).Select(Path.GetFileName).Order(StringComparer.Ordinal));
        Assert.Equal(reader.Sections.Count, stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries).Length);
        Assert.Contains($"{Path.Combine(output, "kernel")}: section 0 (kernel), 4096 bytes\n", stdout);
    }

    [Fact]
    public void Extract_Sections_SelectsByWordRamdiskNumberAndIndex()
    {
        string output = Path.Combine(_dir, "out");

        var (code, _, stderr) = Run("extract", "--eif-path", Golden("synth_sha384_named.eif"), "--output-dir", output,
            "--section", "cmdline", "--section", "ramdisk:1", "--section", "0", "--section", "kernel");

        Assert.True(code == 0, stderr);
        Assert.Equal(["cmdline", "kernel", "ramdisk-1.cpio"], Directory.EnumerateFileSystemEntries(output).Select(Path.GetFileName).Order(StringComparer.Ordinal));
        Assert.Equal(File.ReadAllBytes(Golden("inputs/ramdisk2.bin")), File.ReadAllBytes(Path.Combine(output, "ramdisk-1.cpio")));
    }

    [Theory]
    [InlineData("signature")]
    [InlineData("ramdisk:2")]
    [InlineData("5")]
    public void Extract_SectionTheEifLacks_IsAUsageErrorNamingWhatItHas(string spec)
    {
        string output = Path.Combine(_dir, "out");
        string eif = Golden("synth_sha384_named.eif");

        var (code, stdout, stderr) = Run("extract", "--eif-path", eif, "--output-dir", output, "--section", spec);

        Assert.Equal(2, code);
        Assert.Empty(stdout);
        Assert.Equal($"eif: {eif} has no section '{spec}'; it has 0 (kernel), 1 (cmdline), 2 (metadata), 3 (ramdisk:0), 4 (ramdisk:1)\n", stderr);
        Assert.False(Directory.Exists(output));
    }

    [Theory]
    [InlineData("--section", "initrd")]
    [InlineData("--section", "ramdisk:")]
    [InlineData("--section", "-1")]
    [InlineData("--no-devices", null)]
    public void Extract_BadCommandLine_IsAUsageError(string option, string? value)
    {
        string[] args = ["extract", "--eif-path", Golden("synth_sha384_named.eif"), "--output-dir", Path.Combine(_dir, "out"), option, .. value is null ? Array.Empty<string>() : [value]];

        var (code, _, stderr) = Run(args);

        Assert.Equal(2, code);
        Assert.StartsWith("eif: ", stderr);
    }

    [Fact]
    public void Extract_UnpackWithoutARamdisk_IsAUsageError()
    {
        var (code, _, stderr) = Run("extract", "--eif-path", Golden("synth_sha384_named.eif"), "--output-dir", Path.Combine(_dir, "out"), "--section", "kernel", "--unpack");

        Assert.Equal(2, code);
        Assert.Equal("eif: --unpack: none of the selected sections is a ramdisk\n", stderr);
    }

    [Theory]
    [InlineData("file")]
    [InlineData("dangling-symlink")]
    [InlineData("folder")]
    public void Extract_ExistingTarget_FailsNamingItAndWritesNothing(string kind)
    {
        string output = Path.Combine(_dir, "out");
        Directory.CreateDirectory(output);
        string cmdline = Path.Combine(output, "cmdline");
        switch (kind)
        {
            case "file":
                File.WriteAllText(cmdline, "mine");
                break;
            case "dangling-symlink":
                File.CreateSymbolicLink(cmdline, "/nonexistent");
                break;
            default:
                Directory.CreateDirectory(cmdline);
                break;
        }

        var (code, stdout, stderr) = Run("extract", "--eif-path", Golden("synth_sha384_named.eif"), "--output-dir", output);

        Assert.Equal(5, code);
        Assert.Empty(stdout);
        Assert.Equal($"eif: {cmdline} already exists: extract never replaces anything (nothing was written)\n", stderr);
        Assert.Equal(["cmdline"], Directory.EnumerateFileSystemEntries(output).Select(Path.GetFileName));
        if (kind == "file")
            Assert.Equal("mine", File.ReadAllText(cmdline));
    }

    [Fact]
    public void Extract_ExistingTreeName_FailsBeforeWritingTheFiles()
    {
        string output = Path.Combine(_dir, "out");
        string eif = BuildEif(NewcArchive.Write(Entry("init", "#!")));
        Directory.CreateDirectory(Path.Combine(output, "ramdisk-0"));

        var (code, _, stderr) = Run("extract", "--eif-path", eif, "--output-dir", output, "--unpack");

        Assert.Equal(5, code);
        Assert.Contains("ramdisk-0 already exists", stderr);
        Assert.Equal(["ramdisk-0"], Directory.EnumerateFileSystemEntries(output).Select(Path.GetFileName));
        Assert.Empty(Directory.EnumerateFileSystemEntries(Path.Combine(output, "ramdisk-0")));
    }

    [Fact]
    public void Extract_TruncatedEif_FailsWithoutCreatingTheFolder()
    {
        string eif = Path.Combine(_dir, "truncated.eif");
        byte[] bytes = File.ReadAllBytes(Golden("synth_sha384_named.eif"));
        File.WriteAllBytes(eif, bytes[..(bytes.Length - 100)]);
        string output = Path.Combine(_dir, "out");

        var (code, stdout, stderr) = Run("extract", "--eif-path", eif, "--output-dir", output);

        Assert.Equal(3, code);
        Assert.Empty(stdout);
        Assert.StartsWith($"eif: {eif}", stderr);
        Assert.False(Directory.Exists(output));
    }

    [Theory]
    [InlineData("not an archive", "not a newc cpio archive")]
    [InlineData("truncated", "the archive ends inside the data of 'big'")]
    [InlineData("escaping name", "has a '..' component")]
    [InlineData("file through a symlink", "its parent 't' is a symlink (to '/tmp', entry 0)")]
    public void Extract_UnpackOfABadRamdisk_FailsAndLeavesNothing(string what, string mention)
    {
        byte[] ramdisk = what switch
        {
            "not an archive" => File.ReadAllBytes(Golden("inputs/ramdisk1.bin")),
            "truncated" => NewcArchive.Write(Entry("init", "#!"), Entry("big", new string('b', 100_000)))[..5000],
            "escaping name" => NewcArchive.Write(Entry("init", "#!"), Entry("../escape", "x")),
            _ => NewcArchive.Write(new CpioEntry("t", CpioKind.Symlink, 0x1FF, 0, 0, 0, 4, Data: "/tmp"u8.ToArray()), Entry("t/eif-extract-escape", "x")),
        };
        string eif = BuildEif(ramdisk);
        string output = Path.Combine(_dir, "out");
        Directory.CreateDirectory(output);
        File.WriteAllText(Path.Combine(output, "unrelated"), "kept");

        var (code, stdout, stderr) = Run("extract", "--eif-path", eif, "--output-dir", output, "--unpack");

        Assert.Equal(3, code);
        Assert.Empty(stdout);
        Assert.Contains(mention, stderr);
        Assert.Contains("ramdisk 0 (section 3) of " + eif, stderr);
        Assert.Equal(1, stderr.Count(c => c == '\n'));
        Assert.Equal(["unrelated"], Directory.EnumerateFileSystemEntries(output).Select(Path.GetFileName)); // no kernel, no temporary folder
        Assert.False(Path.Exists("/tmp/eif-extract-escape"));
    }

    [Fact]
    public void Extract_UnpackOfABadRamdisk_RemovesTheFolderItCreated()
    {
        string eif = BuildEif(NewcArchive.Write(Entry("../escape", "x")));
        string output = Path.Combine(_dir, "new", "out");
        Directory.CreateDirectory(Path.Combine(_dir, "new"));

        var (code, _, _) = Run("extract", "--eif-path", eif, "--output-dir", output, "--unpack");

        Assert.Equal(3, code);
        Assert.False(Directory.Exists(output));
    }

    [Fact]
    public void Extract_GzipAndZstdRamdisks_AreNamedByTheirCompressionAndUnpack()
    {
        byte[] plain = NewcArchive.Write(Entry("init", "#!/bin/sh\n"));
        string eif = BuildEif(NewcArchive.Gzip(plain), NewcArchive.Zstd(plain));
        string output = Path.Combine(_dir, "out");

        var (code, stdout, stderr) = Run("extract", "--eif-path", eif, "--output-dir", output, "--unpack", "--section", "ramdisk:0", "--section", "ramdisk:1");

        Assert.True(code == 0, stderr);
        Assert.Equal(["ramdisk-0", "ramdisk-0.cpio.gz", "ramdisk-0.manifest.json", "ramdisk-1", "ramdisk-1.cpio.zst", "ramdisk-1.manifest.json"],
            Directory.EnumerateFileSystemEntries(output).Select(Path.GetFileName).Order(StringComparer.Ordinal));
        Assert.Equal("#!/bin/sh\n", File.ReadAllText(Path.Combine(output, "ramdisk-0", "init")));
        Assert.Equal("#!/bin/sh\n", File.ReadAllText(Path.Combine(output, "ramdisk-1", "init")));
        Assert.Contains($"{Path.Combine(output, "ramdisk-0.cpio.gz")}: section 3 (ramdisk 0, gzip), ", stdout);
        Assert.Contains($"{Path.Combine(output, "ramdisk-1")}/: ramdisk 1 unpacked, 1 entry: 1 created\n", stdout);
        Assert.Equal("zstd", Json(File.ReadAllText(Path.Combine(output, "ramdisk-1.manifest.json"))).GetProperty("Compression").GetString());
    }

    [Fact]
    public void Extract_Json_DescribesEveryFileWithItsHash()
    {
        string eif = BuildEif(NewcArchive.Write(Entry("init", "#!")));
        string output = Path.Combine(_dir, "out");

        var (code, stdout, stderr) = Run("extract", "--eif-path", eif, "--output-dir", output, "--unpack", "--json");

        Assert.True(code == 0, stderr);
        var json = Json(stdout);
        Assert.Equal(["EifPath", "OutputDir", "Files", "Unpacked"], json.EnumerateObject().Select(p => p.Name));
        Assert.Equal(output, json.GetProperty("OutputDir").GetString());
        var files = json.GetProperty("Files").EnumerateArray().ToList();
        Assert.Equal(["Kernel", "Cmdline", "Metadata", "Ramdisk"], files.Select(f => f.GetProperty("Type").GetString()));
        Assert.Equal(["Path", "Section", "Type", "Size", "Sha256"], files[0].EnumerateObject().Select(p => p.Name));
        Assert.Equal(["Path", "Section", "Type", "Ramdisk", "Compression", "Size", "Sha256"], files[3].EnumerateObject().Select(p => p.Name));
        foreach (var file in files)
        {
            byte[] written = File.ReadAllBytes(file.GetProperty("Path").GetString()!);
            Assert.Equal(written.Length, file.GetProperty("Size").GetInt64());
            Assert.Equal(Convert.ToHexString(SHA256.HashData(written)).ToLowerInvariant(), file.GetProperty("Sha256").GetString());
        }

        var unpacked = json.GetProperty("Unpacked")[0];
        Assert.Equal(["Ramdisk", "Section", "Path", "Manifest", "Entries", "Counts", "CreatedDevices", "PreservedOwnership"], unpacked.EnumerateObject().Select(p => p.Name));
        Assert.Equal(Path.Combine(output, "ramdisk-0"), unpacked.GetProperty("Path").GetString());
        Assert.Equal(1, unpacked.GetProperty("Counts").GetProperty("Created").GetInt32());
    }

    [Fact]
    public void Extract_UnpackCraftedImage_TreeMatchesTheListing()
    {
        string archive = Path.Combine(_dir, "image.tar");
        new CraftedImage()
            .Layer(
                CraftedImage.Dir("bin/"), CraftedImage.File("bin/app", "#!/bin/sh\necho hi\n", mode: 0x9ED), CraftedImage.Symlink("bin/sh", "app"),
                CraftedImage.HardLink("bin/app-too", "bin/app"), CraftedImage.Dir("srv/", mode: 0x16D),
                CraftedImage.File("srv/data", "data", uid: 1000, gid: 1000, mtime: 1_234_567_890), CraftedImage.Fifo("srv/fifo"),
                CraftedImage.CharDevice("srv/null", 1, 3), CraftedImage.Symlink("srv/outside", "/etc/passwd"), CraftedImage.Symlink("srv/up", "../.."))
            .WriteDockerArchive(archive, "example/crafted:1");
        string eif = BuildEnclave(archive);

        CompareUnpackedWithListing(eif, ramdisk: 1);
    }

    [Fact]
    public void Extract_UnpackTestImageLayers_TreeMatchesTheListing()
    {
        // The 'layers' test image: hard links, devices, a FIFO, set-uid-free special files, UTF-8 and Latin-1 names,
        // a deep path, a long symlink target (tests/images/layers/Dockerfile).
        string dir = Path.Combine(TestImages.RepositoryRoot, ".build", "test-images", "layers");
        if (!File.Exists(Path.Combine(dir, "docker-archive.tar")))
            RequireOrFail("test image 'layers' is not built: run tools/test-images (tools/test does)");
        string eif = BuildEnclave(Path.Combine(dir, "docker-archive.tar"));

        CompareUnpackedWithListing(eif, ramdisk: 1);
    }

    // Unpacks ramdisk N with the CLI, then checks the tree, read back by find(1) and sha256sum(1), against the
    // ramdisk's listing (EifRamdisks.Files): the same names, types, modes, owners, link targets and contents, hard
    // links sharing an inode, and the manifest saying every entry was created.
    private void CompareUnpackedWithListing(string eif, int ramdisk)
    {
        string output = Path.Combine(_dir, "out");
        var (code, stdout, stderr) = Run("extract", "--eif-path", eif, "--output-dir", output, "--section", $"ramdisk:{ramdisk}", "--unpack");
        Assert.True(code == 0, stderr);
        Assert.Equal(3, stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries).Length);
        string root = Path.Combine(output, $"ramdisk-{ramdisk}");

        List<RamdiskFile> listing;
        using (var reader = EifReader.Open(eif))
            listing = EifRamdisks.Files(reader, EifRamdisks.List(reader)[ramdisk], hash: true).ToList();

        // The tree, as find sees it (names as raw bytes, held as Latin-1 like the listing's).
        string found = TestImages.Run(Encoding.Latin1, "find", root, "-mindepth", "1", "-printf", "%P\\0%y\\0%m\\0%U\\0%G\\0%i\\0%l\\0");
        string[] fields = found.Split('\0');
        var tree = new Dictionary<string, (string Type, string Mode, string Uid, string Gid, string Inode, string Target)>(StringComparer.Ordinal);
        for (int i = 0; i + 7 <= fields.Length; i += 7)
            tree[fields[i]] = (fields[i + 1], fields[i + 2], fields[i + 3], fields[i + 4], fields[i + 5], fields[i + 6]);
        string sums = TestImages.Run(Encoding.Latin1, "find", root, "-type", "f", "-exec", "sha256sum", "-z", "{}", "+");
        var contents = sums.Split('\0', StringSplitOptions.RemoveEmptyEntries).ToDictionary(l => l[(66 + root.Length + 1)..], l => l[..64], StringComparer.Ordinal);

        Assert.Equal(listing.Select(f => f.Name.TrimStart('/')).Order(StringComparer.Ordinal), tree.Keys.Order(StringComparer.Ordinal));
        bool root_ = RamdiskUnpackOptions.IsRoot;
        // newc puts a hard-linked file's data on its last name: every name holds that data.
        var data = listing.Where(f => f.Kind == CpioKind.File && f.LinkCount > 1).GroupBy(f => f.Inode).ToDictionary(g => g.Key, g => g.Last().Sha256!);
        foreach (RamdiskFile file in listing)
        {
            var node = tree[file.Name];
            string type = file.Kind switch
            {
                CpioKind.Directory => "d",
                CpioKind.File => "f",
                CpioKind.Symlink => "l",
                CpioKind.CharDevice => "c",
                CpioKind.BlockDevice => "b",
                _ => "p",
            };
            Assert.True(type == node.Type, $"{file.DisplayName}: type {node.Type}, expected {type}");
            if (file.Kind != CpioKind.Symlink)
                Assert.True(Convert.ToString(file.Permissions, 8) == node.Mode, $"{file.DisplayName}: mode {node.Mode}, expected {Convert.ToString(file.Permissions, 8)}");
            if (root_)
                Assert.True($"{file.Uid}:{file.Gid}" == $"{node.Uid}:{node.Gid}", $"{file.DisplayName}: owner {node.Uid}:{node.Gid}, expected {file.Uid}:{file.Gid}");
            if (file.LinkTarget is { } target)
                Assert.Equal(target, node.Target);
            if (file.Kind == CpioKind.File)
            {
                byte[] expected = file.LinkCount > 1 ? data[file.Inode] : file.Sha256!;
                Assert.True(Convert.ToHexString(expected).ToLowerInvariant() == contents[file.Name], $"{file.DisplayName}: content differs");
            }
        }

        foreach (var group in listing.Where(f => f.Kind == CpioKind.File && f.LinkCount > 1).GroupBy(f => f.Inode))
            Assert.Single(group.Select(f => tree[f.Name].Inode).Distinct());

        var manifest = Json(File.ReadAllText(Path.Combine(output, $"ramdisk-{ramdisk}.manifest.json")));
        var entries = manifest.GetProperty("Entries").EnumerateArray().ToList();
        Assert.Equal(listing.Count, entries.Count);
        Assert.All(entries, e => Assert.Equal("created", e.GetProperty("Action").GetString()));
        Assert.Equal(listing.Select(f => RamdiskFile.Utf8(f.Name) ?? f.DisplayName), entries.Select(e => e.GetProperty("Name").GetString()));
        Assert.Equal(listing.Select(f => Convert.ToString(f.Permissions, 8).PadLeft(4, '0')), entries.Select(e => e.GetProperty("Mode").GetString()));
    }

    private string BuildEnclave(string dockerArchive)
    {
        string blobs = Path.Combine(_dir, "blobs");
        Directory.CreateDirectory(blobs);
        File.WriteAllBytes(Path.Combine(blobs, "bzImage"), new byte[4096]);
        File.WriteAllText(Path.Combine(blobs, "cmdline"), "console=ttyS0\n");
        File.WriteAllBytes(Path.Combine(blobs, "init"), new byte[2048]);
        string eif = Path.Combine(_dir, "built.eif");
        var (code, _, stderr) = Run("build-enclave", "--image", $"docker-archive:{dockerArchive}", "--blobs", blobs, "--output-file", eif, "--quiet");
        Assert.True(code == 0, stderr);
        return eif;
    }

    private string BuildEif(params byte[][] ramdisks)
    {
        var args = new List<string> { "build-eif", "--kernel", Golden("inputs/kernel.bin"), "--cmdline", "console=ttyS0", "--output", Path.Combine(_dir, "test.eif") };
        for (int i = 0; i < ramdisks.Length; i++)
        {
            string path = Path.Combine(_dir, $"ramdisk{i}.bin");
            File.WriteAllBytes(path, ramdisks[i]);
            args.AddRange(["--ramdisk", path]);
        }

        var (code, _, stderr) = Run([.. args]);
        Assert.True(code == 0, stderr);
        return Path.Combine(_dir, "test.eif");
    }

    private static CpioEntry Entry(string name, string text) =>
        new(name, CpioKind.File, 0x1ED, 0, 0, 1_700_000_000, Encoding.UTF8.GetByteCount(text), Data: Encoding.UTF8.GetBytes(text));




    private static void RequireOrFail(string reason)
    {
        if (Environment.GetEnvironmentVariable("CI") == "true")
            Assert.Fail($"CI must provide this: {reason}");
        Assert.Skip(reason);
    }
}

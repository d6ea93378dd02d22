using System.Formats.Tar;
using System.IO.Compression;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using EifBuilder.Cpio;
using EifTests.Shared;

namespace EifCli.Tests;

/// <summary>
/// <c>eif ls</c>: issue 9's criterion (an EIF built from a test image lists exactly the files <c>docker export</c> gives,
/// under <c>rootfs/</c>), compressed ramdisks, names that could fool a terminal, and bad input.
/// </summary>
public sealed class LsTests : IDisposable
{
    // What Docker's container init layer adds to every export and no image has (as DockerExportTests).
    private static readonly HashSet<string> DockerInitEntries =
        [".dockerenv", "dev", "dev/console", "dev/pts", "dev/shm", "etc/hostname", "etc/hosts", "etc/resolv.conf", "etc/mtab", "proc", "sys"];

    private readonly string _dir = Directory.CreateTempSubdirectory("eif-ls").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Theory]
    [InlineData("hello")]
    [InlineData("entrypoint")]
    [InlineData("user-name")]
    [InlineData("layers")]
    public void Ls_EifFromTestImage_ListsExactlyWhatDockerExportGives(string image)
    {
        string forms = TestImages.Require(image);
        string eif = BuildFromImage(Path.Combine(forms, "docker-archive.tar"));

        var (code, stdout, stderr) = CliHarness.Run("ls", "--eif-path", eif, "--ramdisk", "1", "--long", "--json");

        Assert.True(code == 0, stderr);
        JsonElement ramdisk = Assert.Single(CliHarness.Json(stdout).EnumerateArray().ToArray());
        var ours = new Dictionary<string, JsonElement>(StringComparer.Ordinal);
        foreach (JsonElement file in ramdisk.GetProperty("Files").EnumerateArray())
        {
            string name = file.GetProperty("Name").GetString()!;
            if (name.StartsWith("rootfs/", StringComparison.Ordinal))
                ours[file.TryGetProperty("NameHex", out _) ? "\uFFFD" + file.GetProperty("NameHex").GetString() : name["rootfs/".Length..]] = file;
        }

        var export = ReadExport(Path.Combine(forms, "export.tar"));
        foreach (string entry in DockerInitEntries)
        {
            export.Remove(entry);
            ours.Remove(entry);
        }

        foreach (string mountPoint in new[] { "run", "tmp" })
        {
            if (!export.ContainsKey(mountPoint))
                Assert.True(ours.Remove(mountPoint), $"the builder adds /{mountPoint}");
        }

        // Names that are not UTF-8: System.Formats.Tar cannot give their bytes back, so they are counted.
        int exportNonUtf8 = export.Keys.Count(k => k.Contains('\uFFFD', StringComparison.Ordinal));
        int oursNonUtf8 = ours.Keys.Count(k => k.StartsWith('\uFFFD'));
        Assert.Equal(exportNonUtf8, oursNonUtf8);
        foreach (string key in export.Keys.Where(k => k.Contains('\uFFFD', StringComparison.Ordinal)).ToList())
            export.Remove(key);
        foreach (string key in ours.Keys.Where(k => k.StartsWith('\uFFFD')).ToList())
            ours.Remove(key);

        Assert.True(export.Count > 2, $"{image}: the export lists only {export.Count} entries");
        Assert.Equal(export.Keys.Order(StringComparer.Ordinal), ours.Keys.Order(StringComparer.Ordinal));
        foreach (var (name, expected) in export)
        {
            JsonElement actual = ours[name];
            string described = $"{actual.GetProperty("Type").GetString()} {actual.GetProperty("Mode").GetString()} {actual.GetProperty("Uid").GetInt64()}:{actual.GetProperty("Gid").GetInt64()}"
                + (actual.TryGetProperty("LinkTarget", out JsonElement link) ? " -> " + link.GetString() : string.Empty)
                + (actual.TryGetProperty("Device", out JsonElement device) ? " device " + device.GetString() : string.Empty)
                + (actual.TryGetProperty("Sha256", out JsonElement sha) ? " sha256 " + sha.GetString() : string.Empty);
            Assert.True(expected == described, $"{image}: /{name}: docker export has '{expected}', eif ls '{described}'");
        }
    }

    [Theory]
    [InlineData("gzip")]
    [InlineData("zstd")]
    public void Ls_CompressedRamdisk_ListsTheSameFiles(string format)
    {
        byte[] plain = NewcArchive.Write(
            new CpioEntry("bin", CpioKind.Directory, 0x1ED, 0, 0, 946684800, 0),
            new CpioEntry("bin/busybox", CpioKind.File, 0x1ED, 0, 0, 946684800, 5, Data: "hello"u8.ToArray()),
            new CpioEntry("bin/sh", CpioKind.Symlink, 0x1FF, 0, 0, 946684800, 7, Data: "busybox"u8.ToArray()));
        byte[] stored = format == "gzip" ? NewcArchive.Gzip(plain) : NewcArchive.Zstd(plain);
        string eif = BuildEif(("plain.cpio", plain), ($"packed.cpio.{format}", stored));

        var (code, stdout, stderr) = CliHarness.Run("ls", "--eif-path", eif);

        Assert.True(code == 0, stderr);
        string[] blocks = stdout.Split("\n\n");
        Assert.Equal(2, blocks.Length);
        Assert.Contains($", {format}):", blocks[1]);
        Assert.Equal(Lines(blocks[0]).Skip(1), Lines(blocks[1]).Skip(1));
        Assert.Contains("lrwxrwxrwx 0/0          7 2000-01-01 00:00 bin/sh -> busybox", blocks[1]);
        string sha = Convert.ToHexString(SHA256.HashData("hello"u8)).ToLowerInvariant();
        Assert.Contains($"sha256 {sha}", CliHarness.Run("ls", "--eif-path", eif, "--section", "3", "--long").Stdout);
    }

    [Fact]
    public void Ls_NamesWithControlBytes_AreEscapedInText_AndExactInJson()
    {
        // ESC [ 2 J clears a terminal; a backslash; and 0xff, a byte that is not UTF-8.
        string evil = Encoding.Latin1.GetString([.. "evil"u8, 0x1b, .. "[2J\\name"u8, 0xff]);
        byte[] archive = NewcArchive.Write(new CpioEntry(evil, CpioKind.File, 0x1A4, 0, 0, 0, 0, Data: []));
        string eif = BuildEif(("evil.cpio", archive));

        var text = CliHarness.Run("ls", "--eif-path", eif);
        var json = CliHarness.Run("ls", "--eif-path", eif, "--json");

        Assert.Contains("evil\\x1b[2J\\\\name\\xff", text.Stdout);
        Assert.DoesNotContain('\x1b', text.Stdout);
        JsonElement file = CliHarness.Json(json.Stdout)[0].GetProperty("Files")[0];
        Assert.Equal(Convert.ToHexString(Encoding.Latin1.GetBytes(evil)).ToLowerInvariant(), file.GetProperty("NameHex").GetString());
    }

    [Fact]
    public void Ls_BadSelection_IsAUsageErrorSayingWhatThereIs()
    {
        string eif = BuildEif(("one.cpio", NewcArchive.Write(new CpioEntry("x", CpioKind.File, 0x1A4, 0, 0, 0, 0, Data: []))));

        var section = CliHarness.Run("ls", "--eif-path", eif, "--section", "0");
        var ramdisk = CliHarness.Run("ls", "--eif-path", eif, "--ramdisk", "3");

        Assert.Equal(2, section.Code);
        Assert.Contains("--section 0 is the Kernel section, not a ramdisk (ramdisks: sections 3)", section.Stderr);
        Assert.Equal(2, ramdisk.Code);
        Assert.Contains("--ramdisk 3: the EIF has 1 ramdisk (0 to 0)", ramdisk.Stderr);
    }

    [Fact]
    public void Ls_RamdiskThatIsNoArchive_IsExit3NamingTheRamdisk()
    {
        byte[] good = NewcArchive.Write(new CpioEntry("x", CpioKind.File, 0x1A4, 0, 0, 0, 3, Data: "abc"u8.ToArray()));
        string eif = BuildEif(("truncated.cpio", good[..120]));

        var (code, _, stderr) = CliHarness.Run("ls", "--eif-path", eif);

        Assert.Equal(3, code);
        Assert.Contains($"ramdisk 0 (section 3) of {eif}: the archive ends", stderr);
        Assert.Single(stderr.Trim().Split('\n'));
    }

    // tar -tv's facts per entry of docker export, in eif ls's terms ("file 0644 0:0 sha256 …").
    private static Dictionary<string, string> ReadExport(string path)
    {
        var entries = new Dictionary<string, string>(StringComparer.Ordinal);
        var hashes = new Dictionary<string, string>(StringComparer.Ordinal);
        using var reader = new TarReader(File.OpenRead(path));
        while (reader.GetNextEntry(copyData: false) is { } entry)
        {
            string name = entry.Name.TrimEnd('/');
            if (name.StartsWith("./", StringComparison.Ordinal))
                name = name[2..];
            if (name.Length == 0)
                continue;
            string mode = Convert.ToString((int)entry.Mode & 0xFFF, 8).PadLeft(4, '0');
            string owner = $"{entry.Uid}:{entry.Gid}";
            string described = entry.EntryType switch
            {
                TarEntryType.Directory => $"directory {mode} {owner}",
                TarEntryType.SymbolicLink => $"symlink {mode} {owner} -> {entry.LinkName}",
                TarEntryType.CharacterDevice => $"char-device {mode} {owner} device {((PosixTarEntry)entry).DeviceMajor}:{((PosixTarEntry)entry).DeviceMinor}",
                TarEntryType.BlockDevice => $"block-device {mode} {owner} device {((PosixTarEntry)entry).DeviceMajor}:{((PosixTarEntry)entry).DeviceMinor}",
                TarEntryType.Fifo => $"fifo {mode} {owner}",
                TarEntryType.HardLink => $"file {mode} {owner} sha256 {hashes[entry.LinkName.TrimStart('.', '/')]}",
                _ => $"file {mode} {owner} sha256 {hashes[name] = Sha(entry.DataStream)}",
            };
            entries[name] = described;
        }

        return entries;
    }

    private static string Sha(Stream? data) => Convert.ToHexString(data is null ? SHA256.HashData([]) : SHA256.HashData(data)).ToLowerInvariant();

    private static IEnumerable<string> Lines(string block) => block.Split('\n', StringSplitOptions.RemoveEmptyEntries);

    private string BuildFromImage(string archive)
    {
        string blobs = Directory.CreateDirectory(Path.Combine(_dir, "blobs")).FullName;
        File.WriteAllBytes(Path.Combine(blobs, "bzImage"), new byte[512]);
        File.WriteAllText(Path.Combine(blobs, "cmdline"), "console=ttyS0");
        File.WriteAllBytes(Path.Combine(blobs, "init"), new byte[512]);
        string eif = Path.Combine(_dir, "image.eif");
        var (code, _, stderr) = CliHarness.Run("build-enclave", "--image", $"docker-archive:{archive}", "--blobs", blobs, "--output-file", eif, "--quiet");
        Assert.True(code == 0, stderr);
        return eif;
    }

    private string BuildEif(params (string Name, byte[] Bytes)[] ramdisks)
    {
        string kernel = Path.Combine(_dir, "bzImage");
        File.WriteAllBytes(kernel, new byte[512]);
        var args = new List<string> { "build-eif", "--kernel", kernel, "--cmdline", "console=ttyS0" };
        foreach (var (name, bytes) in ramdisks)
        {
            string file = Path.Combine(_dir, name);
            File.WriteAllBytes(file, bytes);
            args.AddRange(["--ramdisk", file]);
        }

        string eif = Path.Combine(_dir, $"{Guid.NewGuid():N}.eif");
        args.AddRange(["--output", eif]);
        var (code, _, stderr) = CliHarness.Run(args.ToArray());
        Assert.True(code == 0, stderr);
        return eif;
    }



}

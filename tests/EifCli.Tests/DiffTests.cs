using System.Text.Json;
using EifBuilder.Cpio;
using EifTests.Shared;
using static EifCli.Tests.CliHarness;

namespace EifCli.Tests;

/// <summary>
/// <c>eif diff</c> (issue 9): which PCRs differ, which sections feed them, and inside a differing ramdisk which files;
/// the exit code says whether the measured content is identical. Images are built for real with build-enclave (on the
/// default runtime) and build-eif (from ramdisks written with the product's cpio writer), and taken from tests/golden.
/// </summary>
public class DiffTests : IDisposable
{
    private const string BuildTime = "2025-01-01T00:00:00Z";
    private const long MTime = 1_700_000_000;

    private readonly string _dir = Directory.CreateTempSubdirectory("eif-diff").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    // -------------------------------------------------------------------------------------------------------------
    // The issue's criterion: two builds of an image that differ by one file
    // -------------------------------------------------------------------------------------------------------------

    [Fact]
    public void Diff_BuildEnclaveOfImagesDifferingByOneFile_NamesTheFileAndPcr0AndPcr2Only()
    {
        var (installed, _, installErr) = Run("runtime", "install");
        Assert.True(installed == 0, installErr);
        string oldEif = BuildEnclave("old", "{\"level\":\"info\"}\n");
        string newEif = BuildEnclave("new", "{\"level\":\"debug\"}\n");

        var (code, stdout, stderr) = Run("diff", oldEif, newEif);

        TestContext.Current.TestOutputHelper?.WriteLine(stdout); // the report, for whoever reads a failure
        Assert.Equal(ExitCode.VerificationFailed, code);
        Assert.Equal($"eif: {oldEif} and {newEif} differ in PCR0, PCR2\n", stderr);
        Assert.Matches(@"(?m)^PCR0  differs  [0-9a-f]{8}… → [0-9a-f]{8}…$", stdout);
        Assert.Matches(@"(?m)^PCR1  same     [0-9a-f]{8}…$", stdout);
        Assert.Matches(@"(?m)^PCR2  differs  ", stdout);
        Assert.Matches(@"(?m)^PCR8  absent$", stdout);
        Assert.Contains("  kernel      same      (PCR0, PCR1)\n", stdout);
        Assert.Contains("  cmdline     same      (PCR0, PCR1)\n", stdout);
        Assert.Contains("  ramdisk 0   same      (PCR0, PCR1)\n", stdout);
        Assert.Contains("  ramdisk 1   differs   (PCR0, PCR2)\n", stdout);
        string line = Assert.Single(FileLines(stdout, 1));
        string oldSha = Sha8("{\"level\":\"info\"}\n"u8.ToArray()), newSha = Sha8("{\"level\":\"debug\"}\n"u8.ToArray());
        Assert.Equal($"  M rootfs/etc/app.json  content {oldSha}… → {newSha}…, size 17 → 18", line);

        // The image IDs and the second layer's digest follow from the file; the first layer's does not.
        Assert.Contains("  ~ DockerInfo.RootFS.Layers[1]  \"sha256:", stdout);
        Assert.DoesNotContain("Layers[0]", stdout);

        var json = Json(Run("diff", oldEif, newEif, "--json").Stdout);
        Assert.Equal(["PCR0", "PCR2"], Differing(json));
        var files = json.GetProperty("Ramdisks").EnumerateArray().Single().GetProperty("Files").EnumerateArray().ToList();
        Assert.Equal("rootfs/etc/app.json", Assert.Single(files).GetProperty("Path").GetString());
    }

    [Fact]
    public void Diff_BuildEifOfRamdisksDifferingByOneFile_NamesTheFileAndPcr0AndPcr2Only()
    {
        string bootstrap = Ramdisk("boot.cpio", Dir("dev"), File("init", "#!init"));
        string oldEif = BuildEif("old.eif", [bootstrap, Ramdisk("a.cpio", Dir("rootfs"), File("rootfs/app.conf", "port=80\n"), File("rootfs/bin", "binary"))]);
        string newEif = BuildEif("new.eif", [bootstrap, Ramdisk("b.cpio", Dir("rootfs"), File("rootfs/app.conf", "port=8080\n"), File("rootfs/bin", "binary"))]);

        var (code, stdout, stderr) = Run("diff", oldEif, newEif);

        Assert.Equal(ExitCode.VerificationFailed, code);
        Assert.Contains("differ in PCR0, PCR2", stderr);
        Assert.Matches(@"(?m)^PCR1  same ", stdout);
        Assert.Contains("  ramdisk 0   same      (PCR0, PCR1)\n", stdout);
        Assert.Contains("  ramdisk 1   differs   (PCR0, PCR2)\n", stdout);
        Assert.Contains("  metadata    same      (not measured)\n", stdout);
        Assert.Contains("ramdisk 1: 1 changed\n", stdout);
        Assert.Equal([$"  M rootfs/app.conf  content {Sha8("port=80\n"u8.ToArray())}… → {Sha8("port=8080\n"u8.ToArray())}…, size 8 → 10"], FileLines(stdout, 1));
        Assert.DoesNotContain("metadata:", stdout);
    }

    // -------------------------------------------------------------------------------------------------------------
    // What is equal
    // -------------------------------------------------------------------------------------------------------------

    [Fact]
    public void Diff_IdenticalImages_ExitsZeroWithSameEverywhere()
    {
        string ramdisk = Ramdisk("r.cpio", File("init", "x"));
        string first = BuildEif("1.eif", [ramdisk, ramdisk]);
        string second = BuildEif("2.eif", [ramdisk, ramdisk]); // a rebuild: same inputs, same build time, same bytes

        var (code, stdout, stderr) = Run("diff", first, second);

        Assert.Equal(0, code);
        Assert.Empty(stderr);
        var lines = stdout.TrimEnd('\n').Split('\n');
        Assert.All(lines[..3], l => Assert.Matches("^PCR[012]  same     [0-9a-f]{8}…$", l));
        Assert.Equal("PCR8  absent", lines[3]);
        Assert.Equal("sections", lines[4]);
        Assert.Equal(["kernel", "cmdline", "ramdisk 0", "ramdisk 1", "metadata"], lines[5..].Select(l => l[2..13].TrimEnd()));
        Assert.All(lines[5..], l => Assert.Equal("same", l[14..18]));
        Assert.Equal(0, Run("diff", first, first).Code);
    }

    [Fact]
    public void Diff_SameContentOtherNameAndVersion_ExitsZeroAndShowsTheMetadata()
    {
        string ramdisk = Ramdisk("r.cpio", File("init", "x"));
        string first = BuildEif("1.eif", [ramdisk, ramdisk], more: ["--name", "app", "--version", "1.0"]);
        string second = BuildEif("2.eif", [ramdisk, ramdisk], more: ["--name", "app2", "--version", "1.1"]);

        var (code, stdout, stderr) = Run("diff", first, second);

        Assert.True(code == 0, stderr);
        Assert.Empty(stderr);
        Assert.Contains("  metadata    differs   (not measured)\n", stdout);
        Assert.EndsWith(
            "metadata: 2 changed\n" +
            "  ~ ImageName     \"app\" → \"app2\"\n" +
            "  ~ ImageVersion  \"1.0\" → \"1.1\"\n", stdout);
    }

    [Fact]
    public void Diff_ResignedWithTheSameCertificate_ExitsZeroThoughTheSignatureBytesDiffer()
    {
        // ECDSA signatures are randomised (golden README): re-signing gives other signature bytes, the same PCR8.
        string resigned = Path.Combine(_dir, "resigned.eif");
        var (signed, _, signErr) = Run("sign-eif", "--eif-path", Golden("synth_sha384_named.eif"),
            "--signing-certificate", Golden("inputs/signing_cert.pem"), "--private-key", Golden("inputs/signing_key.pem"), "--output-file", resigned);
        Assert.True(signed == 0, signErr);

        var (code, stdout, stderr) = Run("diff", Golden("synth_signed.eif"), resigned);

        Assert.True(code == 0, stderr);
        Assert.Matches(@"(?m)^PCR8  same     c10e62ea…$", stdout);
        Assert.Contains("  signature   differs   (PCR8)\n", stdout);
    }

    // -------------------------------------------------------------------------------------------------------------
    // File-level differences
    // -------------------------------------------------------------------------------------------------------------

    [Fact]
    public void Diff_ModeChangedOnly_IsAMetadataLineWithTheMode()
    {
        string bootstrap = Ramdisk("boot.cpio", File("init", "x"));
        string oldEif = BuildEif("old.eif", [bootstrap, Ramdisk("a.cpio", File("rootfs/run.sh", "echo", mode: 0x1A4))]);
        string newEif = BuildEif("new.eif", [bootstrap, Ramdisk("b.cpio", File("rootfs/run.sh", "echo", mode: 0x1ED))]);

        var (code, stdout, _) = Run("diff", oldEif, newEif);

        Assert.Equal(ExitCode.VerificationFailed, code);
        Assert.Equal(["  m rootfs/run.sh  mode -rw-r--r-- → -rwxr-xr-x"], FileLines(stdout, 1));
    }

    [Fact]
    public void Diff_FileAddedAndRemovedAndAttributesChanged_OneLineEachSortedByPath()
    {
        string bootstrap = Ramdisk("boot.cpio", File("init", "x"));
        string oldEif = BuildEif("old.eif", [bootstrap, Ramdisk("a.cpio",
            Dir("rootfs"),
            File("rootfs/z-old", "gone"),
            File("rootfs/owned", "o", uid: 0),
            Link("rootfs/sh", "busybox"),
            Device("rootfs/dev/console", 5, 1),
            File("rootfs/was-file", "f"))]);
        string newEif = BuildEif("new.eif", [bootstrap, Ramdisk("b.cpio",
            Dir("rootfs"),
            File("rootfs/owned", "o", uid: 1000, gid: 1000, mtime: MTime + 60),
            Link("rootfs/sh", "toybox"),
            Device("rootfs/dev/console", 5, 2),
            Link("rootfs/was-file", "elsewhere"),
            File("rootfs/a-new", "hello"))]);

        var (code, stdout, _) = Run("diff", oldEif, newEif);

        Assert.Equal(ExitCode.VerificationFailed, code);
        Assert.Contains("ramdisk 1: 1 added, 1 deleted, 4 changed\n", stdout);
        Assert.Equal(
        [
            "  A rootfs/a-new        file, 5 bytes, -rw-r--r--",
            "  M rootfs/dev/console  device 5:1 → 5:2",
            "  m rootfs/owned        uid 0 → 1000, gid 0 → 1000, mtime 2023-11-14T22:13:20Z → 2023-11-14T22:14:20Z",
            "  M rootfs/sh           target busybox → toybox",
            "  M rootfs/was-file     type file → symlink, mode -rw-r--r-- → lrwxrwxrwx",
            "  D rootfs/z-old        file, 4 bytes, -rw-r--r--",
        ], FileLines(stdout, 1));
    }

    [Fact]
    public void Diff_HardLinkDataOnTheOtherName_IsNoFileDifference()
    {
        // newc stores a hard-linked file's data under one of its names; which one is the writer's choice, not a change.
        static CpioEntry Linked(string name, object inode, string data) =>
            new(name, CpioKind.File, 0x1A4, 0, 0, MTime, data.Length, Data: System.Text.Encoding.UTF8.GetBytes(data), Inode: inode, LinkCount: 2);
        object first = new(), second = new();
        string bootstrap = Ramdisk("boot.cpio", File("init", "x"));
        string oldEif = BuildEif("old.eif", [bootstrap, Ramdisk("a.cpio", Linked("rootfs/a", first, ""), Linked("rootfs/b", first, "shared"))]);
        string newEif = BuildEif("new.eif", [bootstrap, Ramdisk("b.cpio", Linked("rootfs/a", second, "shared"), Linked("rootfs/b", second, ""))]);

        var (code, stdout, _) = Run("diff", oldEif, newEif);

        Assert.Equal(ExitCode.VerificationFailed, code);
        Assert.Contains("ramdisk 1: no file differs (the archives differ only in layout: entry order, inode numbers, which name of a hard link holds the data, padding)\n", stdout);
    }

    [Fact]
    public void Diff_SameFilesOtherCompression_SaysNoFileDiffers()
    {
        string bootstrap = Ramdisk("boot.cpio", File("init", "x"));
        string plain = Ramdisk("a.cpio", File("rootfs/f", "data"));
        string gzipped = Path.Combine(_dir, "a.cpio.gz");
        using (var output = System.IO.File.Create(gzipped))
        using (var gzip = new System.IO.Compression.GZipStream(output, System.IO.Compression.CompressionLevel.Optimal))
            gzip.Write(System.IO.File.ReadAllBytes(plain));

        var (code, stdout, _) = Run("diff", BuildEif("old.eif", [bootstrap, plain]), BuildEif("new.eif", [bootstrap, gzipped]));

        Assert.Equal(ExitCode.VerificationFailed, code);
        Assert.Contains("ramdisk 1: no file differs (the archives differ in compression, none → gzip)\n", stdout);
    }

    [Fact]
    public void Diff_RamdisksThatAreNotArchives_StillAnswersAtSectionLevel()
    {
        // The golden ramdisks are arbitrary bytes: a valid EIF need not carry cpio archives.
        string oldEif = BuildEif("old.eif", [Golden("inputs/ramdisk1.bin"), Golden("inputs/ramdisk1.bin")]);
        string newEif = BuildEif("new.eif", [Golden("inputs/ramdisk1.bin"), Golden("inputs/ramdisk2.bin")]);

        var (code, stdout, _) = Run("diff", oldEif, newEif);

        Assert.Equal(ExitCode.VerificationFailed, code);
        Assert.Contains("  ramdisk 1   differs   (PCR0, PCR2)\n", stdout);
        Assert.Matches(@"(?m)^ramdisk 1: not compared file by file: ramdisk 1 \(section \d\) of .*old\.eif: not a newc cpio archive", stdout);
    }

    // -------------------------------------------------------------------------------------------------------------
    // Cmdline, kernel, sections added, PCR8
    // -------------------------------------------------------------------------------------------------------------

    [Fact]
    public void Diff_OtherCmdline_IsPcr0AndPcr1WithBothTexts()
    {
        string ramdisk = Ramdisk("r.cpio", File("init", "x"));
        string oldEif = BuildEif("old.eif", [ramdisk, ramdisk], cmdline: "console=ttyS0");
        string newEif = BuildEif("new.eif", [ramdisk, ramdisk], cmdline: "console=ttyS0 quiet");

        var (code, stdout, stderr) = Run("diff", oldEif, newEif);

        Assert.Equal(ExitCode.VerificationFailed, code);
        Assert.Contains("differ in PCR0, PCR1\n", stderr);
        Assert.Matches(@"(?m)^PCR2  same ", stdout);
        Assert.Contains("  cmdline     differs   (PCR0, PCR1)\n", stdout);
        Assert.Contains("cmdline\n  - console=ttyS0\n  + console=ttyS0 quiet\n", stdout);
    }

    [Fact]
    public void Diff_OtherKernel_GivesSizesAndHashes()
    {
        string ramdisk = Ramdisk("r.cpio", File("init", "x"));
        string kernel = Path.Combine(_dir, "kernel2.bin");
        System.IO.File.WriteAllBytes(kernel, new byte[5000]);
        string oldEif = BuildEif("old.eif", [ramdisk]);
        string newEif = BuildEif("new.eif", [ramdisk], kernel: kernel);

        var (code, stdout, _) = Run("diff", oldEif, newEif);

        Assert.Equal(ExitCode.VerificationFailed, code);
        string oldSha = Sha8(System.IO.File.ReadAllBytes(Golden("inputs/kernel.bin")));
        Assert.Contains($"kernel: size 4096 → 5000, sha256 {oldSha}… → {Sha8(new byte[5000])}…\n", stdout);
    }

    [Fact]
    public void Diff_SignedAgainstUnsigned_ReportsPcr8AndTheSignatureSection()
    {
        var (code, stdout, stderr) = Run("diff", Golden("synth_sha384_named.eif"), Golden("synth_signed.eif"));

        Assert.Equal(ExitCode.VerificationFailed, code);
        Assert.EndsWith("differ in PCR8\n", stderr);
        Assert.Matches(@"(?m)^PCR0  same ", stdout);
        Assert.Matches(@"(?m)^PCR8  added    — → c10e62ea…$", stdout);
        Assert.Contains("  signature   added     (PCR8)\n", stdout);

        var (back, backOut, _) = Run("diff", Golden("synth_signed.eif"), Golden("synth_sha384_named.eif"));
        Assert.Equal(ExitCode.VerificationFailed, back);
        Assert.Matches(@"(?m)^PCR8  removed  c10e62ea… → —$", backOut);
        Assert.Contains("  signature   removed   (PCR8)\n", backOut);
    }

    [Fact]
    public void Diff_SignedByAnotherCertificate_Pcr8Differs()
    {
        var identity = TestPki.EcIdentity("P-384");
        string certificate = Path.Combine(_dir, "cert.pem"), key = Path.Combine(_dir, "key.pem"), other = Path.Combine(_dir, "other.eif");
        System.IO.File.WriteAllBytes(certificate, identity.CertificatePem);
        System.IO.File.WriteAllText(key, identity.KeyPem());
        var (signed, _, signErr) = Run("sign-eif", "--eif-path", Golden("synth_sha384_named.eif"), "--signing-certificate", certificate, "--private-key", key, "--output-file", other);
        Assert.True(signed == 0, signErr);

        var (code, stdout, stderr) = Run("diff", Golden("synth_signed.eif"), other);

        Assert.Equal(ExitCode.VerificationFailed, code);
        Assert.EndsWith("differ in PCR8\n", stderr);
        Assert.Matches(@"(?m)^PCR8  differs  c10e62ea… → [0-9a-f]{8}…$", stdout);
    }

    [Fact]
    public void Diff_ARamdiskAdded_IsNamedAsAdded()
    {
        var (code, stdout, _) = Run("diff", Golden("synth_sha384_named.eif"), Golden("synth_three_ramdisks.eif"));

        Assert.Equal(ExitCode.VerificationFailed, code);
        Assert.Matches(@"(?m)^PCR1  same ", stdout);
        Assert.Contains("  ramdisk 2   added     (PCR0, PCR2)\n", stdout);
    }

    [Fact]
    public void Diff_MetadataNestedValues_ArePathsWithOldAndNew()
    {
        var (code, stdout, _) = Run("diff", Golden("synth_sha384_named.eif"), Golden("synth_metadata.eif"));

        Assert.Equal(0, code);
        Assert.Contains("metadata: 1 changed\n  ~ CustomMetadata  null → {\"build\":42,\"owner\":\"golden\",\"tags\":[\"a\",\"b\"]}\n", stdout);
    }

    // -------------------------------------------------------------------------------------------------------------
    // JSON and errors
    // -------------------------------------------------------------------------------------------------------------

    [Fact]
    public void Diff_Json_HasTheSameContentStructured()
    {
        string bootstrap = Ramdisk("boot.cpio", File("init", "x"));
        string oldEif = BuildEif("old.eif", [bootstrap, Ramdisk("a.cpio", File("rootfs/f", "1"), File("rootfs/gone", "g"))], more: ["--version", "1"]);
        string newEif = BuildEif("new.eif", [bootstrap, Ramdisk("b.cpio", File("rootfs/f", "22"))], more: ["--version", "2"]);

        var (code, stdout, _) = Run("diff", oldEif, newEif, "--json");

        Assert.Equal(ExitCode.VerificationFailed, code);
        var json = Json(stdout);
        Assert.Equal(
            ["Old", "New", "MeasurementsEqual", "Measurements", "Sections", "Ramdisks", "Metadata", "Warnings"],
            json.EnumerateObject().Select(p => p.Name));
        Assert.Equal(oldEif, json.GetProperty("Old").GetString());
        Assert.False(json.GetProperty("MeasurementsEqual").GetBoolean());
        var pcrs = json.GetProperty("Measurements");
        Assert.Equal(["PCR0", "PCR1", "PCR2", "PCR8"], pcrs.EnumerateObject().Select(p => p.Name));
        Assert.Equal("same", pcrs.GetProperty("PCR1").GetProperty("Status").GetString());
        Assert.Equal(pcrs.GetProperty("PCR1").GetProperty("Old").GetString(), pcrs.GetProperty("PCR1").GetProperty("New").GetString());
        Assert.Matches("^[0-9a-f]{96}$", pcrs.GetProperty("PCR2").GetProperty("New").GetString());
        Assert.Equal("absent", pcrs.GetProperty("PCR8").GetProperty("Status").GetString());
        Assert.Equal(JsonValueKind.Null, pcrs.GetProperty("PCR8").GetProperty("Old").ValueKind);

        var sections = json.GetProperty("Sections").EnumerateArray().ToList();
        Assert.Equal(["kernel", "cmdline", "ramdisk 0", "ramdisk 1", "metadata"], sections.Select(s => s.GetProperty("Name").GetString()));
        Assert.Equal(["PCR0", "PCR2"], sections[3].GetProperty("Pcrs").EnumerateArray().Select(p => p.GetString()));
        Assert.Matches("^[0-9a-f]{64}$", sections[3].GetProperty("New").GetProperty("Sha256").GetString());

        var ramdisk = json.GetProperty("Ramdisks").EnumerateArray().Single();
        Assert.Equal(1, ramdisk.GetProperty("Ramdisk").GetInt32());
        Assert.Equal("none", ramdisk.GetProperty("Compression").GetProperty("New").GetString());
        var files = ramdisk.GetProperty("Files").EnumerateArray().ToList();
        Assert.Equal(["rootfs/f", "rootfs/gone"], files.Select(f => f.GetProperty("Path").GetString()));
        Assert.Equal(["content", "removed"], files.Select(f => f.GetProperty("Change").GetString()));
        Assert.Equal(["content", "size"], files[0].GetProperty("Fields").EnumerateArray().Select(f => f.GetProperty("Field").GetString()));
        Assert.Equal("2", files[0].GetProperty("Fields")[1].GetProperty("New").GetString());
        Assert.Equal(2, files[0].GetProperty("New").GetProperty("Size").GetInt64());
        Assert.Equal(JsonValueKind.Null, files[1].GetProperty("New").ValueKind);

        var change = json.GetProperty("Metadata").GetProperty("Changes").EnumerateArray().Single();
        Assert.Equal("ImageVersion", change.GetProperty("Path").GetString());
        Assert.Equal("changed", change.GetProperty("Change").GetString());
        Assert.Equal("1", change.GetProperty("Old").GetString());
        Assert.Equal("2", change.GetProperty("New").GetString());
    }

    [Fact]
    public void Diff_NotAnEif_ExitsThreeNamingTheFile()
    {
        string text = Path.Combine(_dir, "notes.txt");
        System.IO.File.WriteAllText(text, "not an image\n");

        var (code, stdout, stderr) = Run("diff", Golden("synth_signed.eif"), text);

        Assert.Equal(ExitCode.InvalidInput, code);
        Assert.Empty(stdout);
        Assert.StartsWith($"eif: {text}: ", stderr);
        Assert.Single(stderr.TrimEnd('\n').Split('\n'));
    }

    [Fact]
    public void Diff_MissingFile_IsAUsageError()
    {
        var (code, _, stderr) = Run("diff", Golden("synth_signed.eif"), Path.Combine(_dir, "none.eif"));
        Assert.Equal(ExitCode.Usage, code);
        Assert.Contains("none.eif': no such file.", stderr);
    }

    [Theory]
    [InlineData("diff")]
    [InlineData("diff a.eif")]
    [InlineData("diff a.eif b.eif c.eif")]
    public void Parse_WrongNumberOfFiles_HasErrors(string line)
    {
        var root = Cli.BuildRootCommand(TextWriter.Null, TextWriter.Null);
        Assert.NotEmpty(root.Parse(line).Errors);
    }

    // -------------------------------------------------------------------------------------------------------------
    // Helpers
    // -------------------------------------------------------------------------------------------------------------

    private static CpioEntry File(string name, string content, int mode = 0x1A4, long uid = 0, long gid = 0, long mtime = MTime)
    {
        byte[] data = System.Text.Encoding.UTF8.GetBytes(content);
        return new CpioEntry(name, CpioKind.File, mode, uid, gid, mtime, data.Length, Data: data);
    }

    private static CpioEntry Dir(string name) => new(name, CpioKind.Directory, 0x1ED, 0, 0, MTime, 0);

    private static CpioEntry Link(string name, string target) =>
        new(name, CpioKind.Symlink, 0x1FF, 0, 0, MTime, target.Length, Data: System.Text.Encoding.UTF8.GetBytes(target));

    private static CpioEntry Device(string name, int major, int minor) =>
        new(name, CpioKind.CharDevice, 0x180, 0, 0, MTime, 0, RdevMajor: major, RdevMinor: minor);

    private static string Sha8(byte[] data) => Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(data))[..8];

    private static List<string?> Differing(JsonElement json) =>
        json.GetProperty("Measurements").EnumerateObject()
            .Where(p => p.Value.GetProperty("Status").GetString() is not ("same" or "absent"))
            .Select(p => (string?)p.Name).ToList();

    // The file lines of "ramdisk N: …" in a text report.
    private static List<string> FileLines(string stdout, int ramdisk)
    {
        var lines = stdout.Split('\n');
        int start = Array.FindIndex(lines, l => l.StartsWith($"ramdisk {ramdisk}: ", StringComparison.Ordinal));
        Assert.True(start >= 0, stdout);
        return lines.Skip(start + 1).TakeWhile(l => l.StartsWith("  ", StringComparison.Ordinal)).ToList();
    }

    // A newc ramdisk written with the product's writer.
    private string Ramdisk(string name, params CpioEntry[] entries)
    {
        string path = Path.Combine(_dir, name);
        using var archive = new CpioArchiveStream(entries);
        using var file = System.IO.File.Create(path);
        archive.CopyTo(file);
        return path;
    }

    private string BuildEif(string name, string[] ramdisks, string cmdline = "console=ttyS0", string? kernel = null, string[]? more = null)
    {
        string output = Path.Combine(_dir, name);
        var args = new List<string> { "build-eif", "--kernel", kernel ?? Golden("inputs/kernel.bin"), "--cmdline", cmdline, "--output", output, "--build-time", BuildTime };
        foreach (string ramdisk in ramdisks)
            args.AddRange(["--ramdisk", ramdisk]);
        args.AddRange(more ?? []);
        var (code, _, stderr) = Run([.. args]);
        Assert.True(code == 0, stderr);
        return output;
    }

    // build-enclave on the default runtime, from a docker-archive of a crafted image whose /etc/app.json is given.
    private string BuildEnclave(string name, string appJson)
    {
        string archive = Path.Combine(_dir, name + ".tar");
        new CraftedImage()
            .Layer(CraftedImage.Dir("bin/"), CraftedImage.File("bin/app", "#!/bin/sh\necho app\n", mode: 0x1ED))
            .Layer(CraftedImage.Dir("etc/"), CraftedImage.File("etc/app.json", appJson), CraftedImage.File("etc/hostname", "enclave\n"))
            .WriteDockerArchive(archive, "example/app:1");
        string output = Path.Combine(_dir, name + ".eif");
        var (code, _, stderr) = Run("build-enclave", "--image", $"docker-archive:{archive}", "--output-file", output, "--build-time", BuildTime, "--quiet");
        Assert.True(code == 0, stderr);
        return output;
    }
}

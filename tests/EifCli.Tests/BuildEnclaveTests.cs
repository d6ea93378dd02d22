using EifTests.Shared;
using static EifCli.Tests.CliHarness;
using static EifTests.Shared.CraftedImage;

namespace EifCli.Tests;

/// <summary>build-enclave through the CLI on images the tests craft (daemonless sources; the daemon and registry have their own tests).</summary>
public class BuildEnclaveTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("eif-enclave").FullName;
    private readonly string _blobs;
    private readonly string _archive;

    public BuildEnclaveTests()
    {
        _blobs = Path.Combine(_dir, "blobs");
        Directory.CreateDirectory(_blobs);
        System.IO.File.WriteAllBytes(Path.Combine(_blobs, "bzImage"), new byte[4096]);
        System.IO.File.WriteAllText(Path.Combine(_blobs, "cmdline"), "console=ttyS0\n");
        System.IO.File.WriteAllBytes(Path.Combine(_blobs, "init"), new byte[2048]);
        _archive = Path.Combine(_dir, "image.tar");
        new CraftedImage().Layer(Dir("bin/"), File("bin/app", "#!/bin/sh\n", mode: 0x1ED)).WriteDockerArchive(_archive, "example/app:1");
    }

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string[] Args(string output, params string[] more) =>
        ["build-enclave", "--image", $"docker-archive:{_archive}", "--blobs", _blobs, "--output-file", output, .. more];

    [Fact]
    public void BuildEnclave_DockerArchive_PrintsMeasurementsLikeNitroCli()
    {
        string output = Path.Combine(_dir, "app.eif");

        var (code, stdout, stderr) = Run(Args(output));

        Assert.True(code == 0, stderr);
        Assert.Contains("Start building the Enclave Image...", stderr);
        Assert.Contains("Enclave Image successfully created", stderr);
        var measurements = Json(stdout).GetProperty("Measurements");
        Assert.Equal(["HashAlgorithm", "PCR0", "PCR1", "PCR2"], measurements.EnumerateObject().Select(p => p.Name));
        var described = Json(Run("describe-eif", "--eif-path", output).Stdout);
        Assert.Equal(measurements.GetProperty("PCR2").GetString(), described.GetProperty("Measurements").GetProperty("PCR2").GetString());
        Assert.Equal("example/app", described.GetProperty("ImageName").GetString());
        Assert.Equal("eif", described.GetProperty("Metadata").GetProperty("BuildTool").GetString());
    }

    [Fact]
    public void BuildEnclave_Quiet_WritesNothingButTheJson()
    {
        var (code, stdout, stderr) = Run(Args(Path.Combine(_dir, "q.eif"), "--quiet"));
        Assert.Equal(0, code);
        Assert.Empty(stderr);
        Assert.StartsWith("{\n  \"Measurements\"", stdout);
    }

    [Fact]
    public void BuildEnclave_Signed_AddsPcr8()
    {
        var (code, stdout, stderr) = Run(Args(Path.Combine(_dir, "s.eif"),
            "--signing-certificate", Golden("inputs/signing_cert.pem"), "--private-key", Golden("inputs/signing_key.pem")));
        Assert.True(code == 0, stderr);
        Assert.True(Json(stdout).GetProperty("Measurements").TryGetProperty("PCR8", out _));
    }

    [Theory]
    [InlineData("--image", "ftp:thing", 3, "is not an image reference")]
    [InlineData("--image", "docker-archive:/nonexistent.tar", 6, "no such file")]
    [InlineData("--image", "oci:/nonexistent-layout", 6, "no such directory")]
    public void BuildEnclave_BadSource_FailsWithOneLineAndNoOutput(string option, string value, int exitCode, string mention)
    {
        string output = Path.Combine(_dir, "bad.eif");
        var (code, stdout, stderr) = Run("build-enclave", option, value, "--blobs", _blobs, "--output-file", output);

        Assert.Equal(exitCode, code);
        Assert.Empty(stdout);
        Assert.Contains(mention, stderr);
        Assert.False(System.IO.File.Exists(output));
    }

    [Fact]
    public void BuildEnclave_ImageNotInArchive_ExitsSix()
    {
        var (code, _, stderr) = Run("build-enclave", "--image", $"docker-archive:{_archive}:other/app:2", "--blobs", _blobs, "--output-file", Path.Combine(_dir, "x.eif"));
        Assert.Equal(ExitCode.ImageUnavailable, code);
        Assert.Contains("no image tagged 'other/app:2' (tags: example/app:1)", stderr);
    }

    [Fact]
    public void BuildEnclave_MissingBlobs_SaysWhereItLooked()
    {
        var (code, _, stderr) = Run("build-enclave", "--image", $"docker-archive:{_archive}", "--blobs", Path.Combine(_dir, "no-blobs"), "--output-file", Path.Combine(_dir, "x.eif"));
        Assert.Equal(ExitCode.InvalidInput, code);
        Assert.Contains("no-blobs (--blobs)", stderr);
        Assert.Single(stderr.TrimEnd('\n').Split('\n'));
    }

    [Fact]
    public void BuildEnclave_OutputFolderMissing_IsAUsageError()
    {
        var (code, _, stderr) = Run(Args(Path.Combine(_dir, "no", "such", "folder", "x.eif")));
        Assert.Equal(ExitCode.Usage, code);
        Assert.Contains("does not exist", stderr);
    }

    [Fact]
    public void BuildEnclave_OutputFolderNotWritable_IsAnIoErrorWithNothingLeft()
    {
        // /proc exists and refuses new files even to root.
        var (code, _, stderr) = Run(Args("/proc/eif-test.eif"));
        Assert.Equal(ExitCode.IoError, code);
        Assert.Contains("/proc", stderr);
        Assert.False(System.IO.File.Exists("/proc/eif-test.eif"));
    }

    [Fact]
    public void BuildEnclave_CorruptLayer_IsInvalidInputWithNothingLeft()
    {
        string layout = Path.Combine(_dir, "oci");
        new CraftedImage().Layer(File("bin/app", "x")).WriteOciLayout(layout, "v1", Compression.Gzip, corrupt: (_, blob) => blob[^10] ^= 1);
        string output = Path.Combine(_dir, "c.eif");

        var (code, _, stderr) = Run("build-enclave", "--image", $"oci:{layout}:v1", "--blobs", _blobs, "--output-file", output);

        Assert.Equal(ExitCode.InvalidInput, code);
        Assert.False(System.IO.File.Exists(output));
        Assert.Empty(Directory.GetFiles(_dir, "*.tmp"));
        Assert.Single(stderr.TrimEnd('\n').Split('\n'), l => l.StartsWith("eif: ", StringComparison.Ordinal));
    }

    [Fact]
    public void BuildEnclave_DaemonUnreachable_NamesTheSocketAndExitsSix()
    {
        string output = Path.Combine(_dir, "d.eif");
        string? saved = Environment.GetEnvironmentVariable("DOCKER_HOST");
        Environment.SetEnvironmentVariable("DOCKER_HOST", "unix:///nonexistent/docker.sock");
        try
        {
            var (code, stdout, stderr) = Run("build-enclave", "--docker-uri", "example/app:1", "--blobs", _blobs, "--output-file", output);

            Assert.Equal(ExitCode.ImageUnavailable, code);
            Assert.Empty(stdout);
            Assert.Contains("/nonexistent/docker.sock", stderr);
            Assert.Contains("dockerd", stderr);
            Assert.False(System.IO.File.Exists(output));
        }
        finally
        {
            Environment.SetEnvironmentVariable("DOCKER_HOST", saved);
        }
    }

    [Theory]
    [InlineData("--docker-uri a --image oci:x")]
    [InlineData("--docker-dir .")]
    [InlineData("")]
    public void BuildEnclave_SourceOptions_AreChecked(string sourceArgs)
    {
        var (code, _, stderr) = Run(["build-enclave", .. sourceArgs.Split(' ', StringSplitOptions.RemoveEmptyEntries), "--output-file", Path.Combine(_dir, "x.eif")]);
        Assert.Equal(ExitCode.Usage, code);
        Assert.StartsWith("eif: ", stderr);
    }
}

using static EifCli.Tests.CliHarness;

namespace EifCli.Tests;

public class BuildEifTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("eif-cli").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    public static TheoryData<string> UnsignedCases() => new(
        "synth_sha384_named", "synth_sha384_noname", "synth_one_ramdisk", "synth_three_ramdisks", "synth_aarch64", "synth_metadata");

    /// <summary>Replays the exact eif_build command of each golden file through <c>eif build-eif</c> and expects the same bytes.</summary>
    [Theory]
    [MemberData(nameof(UnsignedCases))]
    public void BuildEif_GoldenCommandLine_ReproducesTheGoldenFileByteForByte(string name)
    {
        string output = Path.Combine(_dir, name + ".eif");
        string[] args = GoldenBuildArgs(name, output);

        var (code, stdout, stderr) = Run(args);

        Assert.True(code == 0, stderr);
        Assert.Equal(File.ReadAllBytes(Golden(name + ".eif")), File.ReadAllBytes(output));
        var printed = Json(stdout).GetProperty("Measurements");
        var expected = Json(File.ReadAllText(Golden(name + ".pcrs.json")));
        foreach (var property in expected.EnumerateObject())
            Assert.Equal(property.Value.GetString(), printed.GetProperty(property.Name).GetString());
    }

    [Fact]
    public void BuildEif_PrintsMeasurementsLikeNitroCli()
    {
        string output = Path.Combine(_dir, "o.eif");
        var (code, stdout, _) = Run("build-eif", "--kernel", Golden("inputs/kernel.bin"), "--cmdline", "x", "--ramdisk", Golden("inputs/ramdisk1.bin"), "--output", output);

        Assert.Equal(0, code);
        Assert.Matches("^\\{\n  \"Measurements\": \\{\n    \"HashAlgorithm\": \"Sha384 \\{ \\.\\.\\. \\}\",\n    \"PCR0\": \"[0-9a-f]{96}\",\n    \"PCR1\": \"[0-9a-f]{96}\",\n    \"PCR2\": \"[0-9a-f]{96}\"\n  \\}\n\\}\n$", stdout);
    }

    [Fact]
    public void BuildEif_Defaults_NameOurToolAndHonourVersion()
    {
        string output = Path.Combine(_dir, "d.eif");
        string config = Path.Combine(_dir, "kernel.config");
        File.WriteAllText(config, "#\n# Automatically generated file; DO NOT EDIT.\n# Linux/x86 6.12.48+deb12-amd64 Kernel Configuration\n");

        var (code, _, stderr) = Run(
            "build-eif", "--kernel", Golden("inputs/kernel.bin"), "--cmdline", "x", "--ramdisk", Golden("inputs/ramdisk1.bin"),
            "--output", output, "--name", "app", "--version", "2.3", "--kernel-config", config, "--img-os", "Custom", "--build-time", "2025-05-05T05:05:05Z");
        Assert.True(code == 0, stderr);
        var described = Json(Run("describe-eif", "--eif-path", output).Stdout);

        Assert.Equal("app", described.GetProperty("ImageName").GetString());
        Assert.Equal("2.3", described.GetProperty("ImageVersion").GetString());
        var metadata = described.GetProperty("Metadata");
        Assert.Equal("eif", metadata.GetProperty("BuildTool").GetString());
        Assert.Equal(BuildEifCommand.ToolVersion, metadata.GetProperty("BuildToolVersion").GetString());
        Assert.Equal("Custom", metadata.GetProperty("OperatingSystem").GetString());       // the option wins over the config
        Assert.Equal("6.12.48+deb12", metadata.GetProperty("KernelVersion").GetString()); // from the config
        Assert.Equal("2025-05-05T05:05:05Z", metadata.GetProperty("BuildTime").GetString());
    }

    [Theory]
    [InlineData("--build-time", "last tuesday", 3, "RFC 3339")]
    [InlineData("--arch", "riscv64", 2, "riscv64")]
    [InlineData("--cmdline", "a\0b", 3, "NUL")]
    public void BuildEif_BadValue_FailsWithOneLineAndNoOutput(string option, string value, int exitCode, string mention)
    {
        string output = Path.Combine(_dir, "bad.eif");
        var args = new List<string> { "build-eif", "--kernel", Golden("inputs/kernel.bin"), "--ramdisk", Golden("inputs/ramdisk1.bin"), "--output", output };
        if (option != "--cmdline")
            args.AddRange(["--cmdline", "x"]);
        args.AddRange([option, value]);

        var (code, stdout, stderr) = Run([.. args]);

        Assert.Equal(exitCode, code);
        Assert.Empty(stdout);
        Assert.Contains(mention, stderr);
        Assert.Empty(Directory.GetFiles(_dir));
    }

    [Fact]
    public void BuildEif_OversizedCustomMetadata_FailsWithoutOutput()
    {
        string meta = Path.Combine(_dir, "meta.json");
        File.WriteAllText(meta, "\"" + new string('x', 5000) + "\"");
        string output = Path.Combine(_dir, "m.eif");

        var (code, _, stderr) = Run("build-eif", "--kernel", Golden("inputs/kernel.bin"), "--cmdline", "x", "--ramdisk", Golden("inputs/ramdisk1.bin"), "--metadata", meta, "--output", output);

        Assert.Equal(ExitCode.InvalidInput, code);
        Assert.Equal($"eif: {meta}: custom metadata file is 5002 bytes; custom metadata is limited to 4096 bytes\n", stderr);
        Assert.False(File.Exists(output));
    }

    [Fact]
    public void BuildEif_SourceDateEpoch_SetsTheDefaultBuildTime()
    {
        string output = Path.Combine(_dir, "s.eif");
        Environment.SetEnvironmentVariable("SOURCE_DATE_EPOCH", "1704067200");
        try
        {
            Assert.Equal(0, Run("build-eif", "--kernel", Golden("inputs/kernel.bin"), "--cmdline", "x", "--ramdisk", Golden("inputs/ramdisk1.bin"), "--output", output).Code);
        }
        finally
        {
            Environment.SetEnvironmentVariable("SOURCE_DATE_EPOCH", null);
        }

        Assert.Equal("2024-01-01T00:00:00+00:00", Json(Run("describe-eif", "--eif-path", output).Stdout).GetProperty("Metadata").GetProperty("BuildTime").GetString());
    }
}

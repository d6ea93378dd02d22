namespace EifCli.Tests;

/// <summary>Command-line parsing only: which command lines have errors (dotnet/sign's shape).</summary>
public class ParseTests
{
    private static readonly string Kernel = CliHarness.Golden("inputs/kernel.bin");
    private static readonly string Eif = CliHarness.Golden("synth_signed.eif");

    private static bool HasErrors(params string[] args) =>
        Cli.BuildRootCommand(TextWriter.Null, TextWriter.Null).Parse(args).Errors.Count > 0;

    public static TheoryData<string[], bool> Cases() => new()
    {
        { ["describe-eif"], true },
        { ["describe-eif", "--eif-path", Eif], false },
        { ["describe-eif", "--eif-path", "/nonexistent.eif"], true },
        { ["describe-eif", "--eif-path", "/tmp"], true },
        { ["build-eif", "--kernel", Kernel, "--cmdline", "x", "--output", "/tmp/x.eif"], true },            // no --ramdisk
        { ["build-eif", "--kernel", Kernel, "--cmdline", "x", "--ramdisk", Kernel, "--output", "/tmp/x.eif"], false },
        { ["build-eif", "--kernel", Kernel, "--cmdline", "x", "--ramdisk", Kernel, "--ramdisk", Kernel, "--output", "/tmp/x.eif"], false },
        { ["build-eif", "--kernel", Kernel, "--cmdline", "x", "--ramdisk", Kernel, "--output", "/nonexistent-dir/x.eif"], true },
        { ["build-eif", "--kernel", Kernel, "--cmdline", "x", "--ramdisk", Kernel, "--output", "/tmp/x.eif", "--arch", "aarch64"], false },
        { ["build-eif", "--kernel", Kernel, "--cmdline", "x", "--ramdisk", Kernel, "--output", "/tmp/x.eif", "--arch", "arm"], true },
        { ["pcr"], true },
        { ["pcr", "--input", Kernel], false },
        { ["pcr", "--input", Kernel, "--signing-certificate", Kernel], true },
        { ["verify-eif", "--eif-path", Eif], false },
        { ["verify-eif", "--eif-path", Eif, "--pcr0", new string('a', 96)], false },
        { ["verify-eif", "--eif-path", Eif, "--pcr0", new string('a', 95)], true },
        { ["verify-eif", "--eif-path", Eif, "--pcr0", new string('g', 96)], true },
        { ["no-such-verb"], true },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void Parse_CommandLine_HasErrorsOrNot(string[] args, bool errors) =>
        Assert.Equal(errors, HasErrors(args));

    [Fact]
    public void Run_UsageError_ExitsTwoWithAHint()
    {
        var (code, stdout, stderr) = CliHarness.Run("describe-eif");
        Assert.Equal(ExitCode.Usage, code);
        Assert.Empty(stdout);
        Assert.Equal("eif: Option '--eif-path' is required.\nRun 'eif describe-eif --help' for usage.\n", stderr);
    }

    [Theory]
    [InlineData("build-eif")]
    [InlineData("describe-eif")]
    [InlineData("pcr")]
    [InlineData("verify-eif")]
    public void Help_EveryVerb_PrintsUsageAndExitsZero(string verb)
    {
        var (code, stdout, _) = CliHarness.Run(verb, "--help");
        Assert.Equal(0, code);
        Assert.Contains($" {verb} [options]", stdout); // the root name is the host executable's: "eif" when installed
    }
}

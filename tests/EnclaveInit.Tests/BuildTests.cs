namespace EnclaveInit.Tests;

/// <summary>
/// tools/enclave-init/build: warning-free (-Wall -Wextra -Werror), static (no PT_INTERP), reproducible from any folder,
/// writing only into OUTDIR (the runtime installer builds from a temporary copy, and the bytes of init go into PCR0
/// and PCR1), and its C unit tests pass.
/// </summary>
public class BuildTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("enclave-init-build").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void Build_DefaultCompiler_SucceedsWithoutWarningsAndIsStatic()
    {
        InitBuild.RequireCompiler();
        var result = InitBuild.Build(Path.Combine(_dir, "out"));

        Assert.True(result.Run.ExitCode == 0, $"the build failed:\n{result.Run.Output}");
        // -Werror turns any warning into a failure; a clean build also prints nothing but its one summary line.
        string summary = Assert.Single(result.Run.Lines);
        string expected = InitBuild.Which("musl-gcc") is not null ? "enclave-init: musl-gcc (" : "enclave-init: gcc (";
        Assert.StartsWith(expected, summary, StringComparison.Ordinal);
        Assert.False(ElfProgramHeaders.NeedsLoader(result.Init), $"{result.Init} has a PT_INTERP program header: it is not static");
        TestContext.Current.TestOutputHelper?.WriteLine(summary);
    }

    [Fact]
    public void Build_WithGlibcGcc_SucceedsWithoutWarningsAndIsStatic()
    {
        if (InitBuild.Which("gcc") is null || !File.Exists("/usr/include/stdio.h"))
            Assert.Skip("gcc or glibc's headers and static libc (libc6-dev) are not installed (tools/provision installs them)");
        var result = InitBuild.Build(Path.Combine(_dir, "out"), compiler: "gcc");

        Assert.True(result.Run.ExitCode == 0, $"the build with gcc failed:\n{result.Run.Output}");
        Assert.StartsWith("enclave-init: gcc (", Assert.Single(result.Run.Lines), StringComparison.Ordinal);
        Assert.False(ElfProgramHeaders.NeedsLoader(result.Init), $"{result.Init} has a PT_INTERP program header: it is not static");
    }

    [Fact]
    public void Build_FromTwoCopiesAtDifferentPaths_GivesTheSameBytesAndWritesOnlyIntoOutdir()
    {
        InitBuild.RequireCompiler();
        string[] sources = [Path.Combine(_dir, "a", "enclave-init"), Path.Combine(_dir, "somewhere", "much", "deeper", "src")];
        string[] original = Listing(InitBuild.SourceDirectory);
        var inits = new List<byte[]>();
        foreach (string source in sources)
        {
            Directory.CreateDirectory(source);
            foreach (string file in Directory.GetFiles(InitBuild.SourceDirectory))
                File.Copy(file, Path.Combine(source, Path.GetFileName(file)));
            var result = InitBuild.Build(Path.Combine(source + "-out"), sourceDirectory: source);
            Assert.True(result.Run.ExitCode == 0, $"the build from {source} failed:\n{result.Run.Output}");
            Assert.Equal(original, Listing(source));
            inits.Add(File.ReadAllBytes(result.Init));
        }

        Assert.True(inits[0].AsSpan().SequenceEqual(inits[1]), "two builds of the same sources from different folders differ");
    }

    [Fact]
    public void BuildTest_RunsTheCUnitTests_AllPass()
    {
        InitBuild.RequireCompiler();
        var result = InitBuild.Build(Path.Combine(_dir, "out"), test: true);

        Assert.True(result.Run.ExitCode == 0, $"build OUTDIR test failed:\n{result.Run.Output}");
        Assert.DoesNotContain(result.Run.Lines, line => line.StartsWith("not ok", StringComparison.Ordinal));
        Assert.Matches(@"^# \d+ tests, 0 failed$", result.Run.Lines[^1]);
        TestContext.Current.TestOutputHelper?.WriteLine(result.Run.Output);
    }

    [Fact]
    public void NeedsLoader_DynamicProgram_IsTrue()
    {
        // The check itself: this test process's own host program is dynamically linked.
        Assert.True(ElfProgramHeaders.NeedsLoader(Environment.ProcessPath!));
    }

    private static string[] Listing(string dir) =>
        Directory.GetFileSystemEntries(dir, "*", SearchOption.AllDirectories)
            .Select(p => Path.GetRelativePath(dir, p)).Order(StringComparer.Ordinal).ToArray();
}

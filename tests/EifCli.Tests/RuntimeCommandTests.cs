using static EifCli.Tests.CliHarness;

namespace EifCli.Tests;

public class RuntimeCommandTests
{
    [Fact]
    public void RuntimePath_WithoutARuntime_ExitsThreeAndSaysHowToInstall()
    {
        string empty = Directory.CreateTempSubdirectory("eif-no-runtime").FullName;
        try
        {
            var (code, stdout, stderr) = Run("runtime", "path", "--dir", empty);
            Assert.Equal(ExitCode.InvalidInput, code);
            Assert.Empty(stdout);
            Assert.Contains("eif runtime install", stderr);
            Assert.Equal(ExitCode.InvalidInput, Run("runtime", "show", "--dir", empty).Code);
        }
        finally
        {
            Directory.Delete(empty, recursive: true);
        }
    }

    [Fact]
    public void InitSources_AreEmbedded()
    {
        var names = DefaultRuntime.InitSources().Select(s => s.Name).ToList();
        Assert.Contains("init.c", names);
        Assert.Contains("build", names);
        Assert.DoesNotContain(names, n => n.StartsWith("test_", StringComparison.Ordinal));
        Assert.Equal(64, DefaultRuntime.InitSourceHash().Length);
    }

    [Fact]
    public void BuildInit_FromTheEmbeddedSources_GivesAStaticInit()
    {
        string output = Directory.CreateTempSubdirectory("eif-init-build").FullName;
        try
        {
            string how = DefaultRuntime.BuildInit(output);
            byte[] init = File.ReadAllBytes(Path.Combine(output, "init"));
            Assert.Equal("\u007fELF"u8.ToArray(), init[..4]);
            Assert.Contains("built init", how);
            Assert.DoesNotContain(output, how);
        }
        catch (EifBuilder.EnclaveBuildException ex) when (ex.Message.Contains("needs gcc", StringComparison.Ordinal))
        {
            Assert.Skip("no C compiler: tools/provision installs musl-tools and gcc");
        }
        finally
        {
            Directory.Delete(output, recursive: true);
        }
    }
}

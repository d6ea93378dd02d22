using System.Diagnostics;
using EifFormat;
using EifTests.Shared;
using static EifCli.Tests.CliHarness;

namespace EifCli.Tests;

/// <summary>
/// Issue 5, end to end on this machine: the default runtime is installed, an image is built into an EIF with no blob
/// flags (so on that runtime), and the EIF's kernel and ramdisks boot on Debian's QEMU (<c>-M microvm</c>, TCG): the
/// init loads the modules, reports the failed heartbeat (no parent here), runs the image's command as its USER in its
/// WORKDIR, prints the exit-status line and reboots. QEMU's own nitro-enclave machine is the local-boot issue's.
/// </summary>
public class BootSmokeTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("eif-boot").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void DefaultRuntime_EifOfATestImage_BootsAndRunsTheCommand()
    {
        string qemu = TestImages.Which("qemu-system-x86_64") ?? Skip("qemu-system-x86_64 is not installed (tools/provision installs Debian's)");
        string forms = TestImages.Require("entrypoint");
        var (installed, installOut, installErr) = Run("runtime", "install");
        Assert.True(installed == 0, installErr);
        Assert.Matches("^(up to date|installed): ", installOut.Split('\n').Last(l => l.Length > 0));
        string eif = Path.Combine(_dir, "entrypoint.eif");

        var (code, _, stderr) = Run("build-enclave", "--image", $"docker-archive:{forms}/docker-archive.tar", "--output-file", eif, "--quiet");

        Assert.True(code == 0, stderr);
        using (var reader = EifReader.Open(eif))
        {
            Assert.StartsWith("6.12.", reader.Metadata!.BuildMetadata.KernelVersion); // the default runtime's kernel
            Extract(reader);
        }

        string console = Boot(qemu);
        Assert.Contains("enclave: heartbeat to the parent (vsock 3:9000) failed", console);
        Assert.Contains("hello world", console);                     // ENTRYPOINT ["/bin/busybox","echo"] + CMD ["hello","world"]
        Assert.Contains("enclave: command exited with status 0", console);
    }

    private void Extract(EifReader reader)
    {
        using var initrd = File.Create(Path.Combine(_dir, "initrd"));
        foreach (var section in reader.Sections)
        {
            using var data = reader.OpenSection(section.Index);
            switch (section.Type)
            {
                case EifSectionType.Kernel:
                    using (var kernel = File.Create(Path.Combine(_dir, "kernel")))
                        data.CopyTo(kernel);
                    break;
                case EifSectionType.Cmdline:
                    File.WriteAllText(Path.Combine(_dir, "cmdline"), new StreamReader(data).ReadToEnd());
                    break;
                case EifSectionType.Ramdisk:
                    data.CopyTo(initrd); // both ramdisks, in order, as the enclave's loader concatenates them
                    break;
            }
        }
    }

    // microvm, TCG, serial console; reboot=t (unmeasured) and -no-reboot make the guest's reboot end QEMU at once
    // (spec local-boot.md §9). tsc_early_khz (also unmeasured): under host load TCG breaks the kernel's TSC
    // calibration ("could not calculate TSC khz") and the boot hangs; observed 1 hang in 3 boots with both cores
    // busy, none in 4 with a fixed early TSC frequency. Bounded: a hang fails the test instead of the run.
    private string Boot(string qemu)
    {
        var info = new ProcessStartInfo(qemu) { RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = true };
        foreach (string a in new[]
        {
            "-M", "microvm", "-accel", "tcg", "-m", "512M", "-nodefaults", "-no-user-config", "-display", "none",
            "-serial", "stdio", "-monitor", "none", "-no-reboot",
            "-kernel", Path.Combine(_dir, "kernel"), "-initrd", Path.Combine(_dir, "initrd"),
            "-append", File.ReadAllText(Path.Combine(_dir, "cmdline")) + " reboot=t tsc_early_khz=2000000",
        })
        {
            info.ArgumentList.Add(a);
        }

        using var process = Process.Start(info)!;
        process.StandardInput.Close();
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(TimeSpan.FromSeconds(180)))
        {
            process.Kill(entireProcessTree: true);
            Assert.Fail($"QEMU did not exit within 180 s; the console's end:\n{Tail(stdout.Result)}");
        }

        return stdout.Result + stderr.Result;
    }

    private static string Tail(string text) => string.Join('\n', text.Split('\n').TakeLast(25));

    private static string Skip(string reason)
    {
        Assert.Skip(reason);
        return string.Empty;
    }
}

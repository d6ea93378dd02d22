using System.Diagnostics;
using Launcher.Local;

namespace Launcher.Tests;

/// <summary>
/// The QEMU locator and the KVM probe, mostly against small shell scripts standing in for QEMU (written into a
/// temporary folder and passed through the internal overloads, never through the process-wide environment), plus
/// one real probe with Debian's QEMU.
/// </summary>
public sealed class QemuInstallationTests(ITestOutputHelper output)
{
    // What `qemu-system-x86_64 -M help` prints, abridged (QEMU 10.0.2 built by tools/qemu/build).
    private const string MachinesWith = """
        Supported machines are:
        microvm              microvm (i386)
        nitro-enclave        AWS Nitro Enclave
        pc                   Standard PC (i440FX + PIIX, 1996) (alias of pc-i440fx-10.0)
        q35                  Standard PC (Q35 + ICH9, 2009) (alias of pc-q35-10.0)
        """;

    // The same from Debian's bookworm package: no nitro-enclave.
    private const string MachinesWithout = """
        Supported machines are:
        microvm              microvm (i386)
        pc                   Standard PC (i440FX + PIIX, 1996) (alias of pc-i440fx-7.2)
        q35                  Standard PC (Q35 + ICH9, 2009) (alias of pc-q35-7.2)
        """;

    [Fact]
    public void Search_FakeWithoutMachine_IsRejectedWithTheReason()
    {
        string dir = TestEnvironment.TemporaryFolder("qemu");
        string fake = FakeQemu(dir, "old", MachinesWithout, "QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)");

        QemuSearch search = QemuInstallation.Search(fake, EmptyFolder(), EmptyFolder());

        Assert.Null(search.Installation);
        QemuCandidate candidate = Assert.Single(search.Candidates);
        Assert.Equal(fake, candidate.Path);
        Assert.Equal(QemuOrigin.Environment, candidate.Origin);
        Assert.Contains("does not list nitro-enclave", candidate.Rejection);
        Assert.Contains("7.2.22", candidate.Rejection);
        Assert.Contains(fake, search.Describe());
    }

    [Fact]
    public void Search_FakeWithMachine_IsFoundWithItsVersion()
    {
        string dir = TestEnvironment.TemporaryFolder("qemu");
        string fake = FakeQemu(dir, "new", MachinesWith, "QEMU emulator version 10.0.2");

        QemuSearch search = QemuInstallation.Search(fake, EmptyFolder(), EmptyFolder());

        QemuInstallation found = Assert.IsType<QemuInstallation>(search.Installation);
        Assert.Equal(fake, found.Path);
        Assert.Equal("10.0.2", found.Version);
        Assert.Equal("QEMU emulator version 10.0.2", found.VersionLine);
        Assert.Null(Assert.Single(found.Candidates).Rejection);
    }

    [Fact]
    public void Search_EnvironmentRejected_TakesPathBeforeCache()
    {
        string dir = TestEnvironment.TemporaryFolder("qemu");
        string rejected = FakeQemu(dir, "env", MachinesWithout, "QEMU emulator version 7.2.22");
        string cache = Path.Combine(dir, "cache");
        string cached = FakeQemu(Directory.CreateDirectory(Path.Combine(cache, "10.0.2", "bin")).FullName, QemuInstallation.BinaryName, MachinesWith, "QEMU emulator version 10.0.2");
        string onPath = FakeQemu(Directory.CreateDirectory(Path.Combine(dir, "path")).FullName, QemuInstallation.BinaryName, MachinesWith, "QEMU emulator version 10.1.0");

        QemuSearch search = QemuInstallation.Search(rejected, cache, Path.Combine(dir, "path"));

        Assert.Equal(onPath, search.Installation?.Path);
        Assert.Equal("10.1.0", search.Installation?.Version);
        Assert.Equal(new[] { rejected, onPath }, search.Candidates.Select(c => c.Path));
        Assert.Equal(new[] { QemuOrigin.Environment, QemuOrigin.Path }, search.Candidates.Select(c => c.Origin));
        Assert.DoesNotContain(cached, search.Candidates.Select(c => c.Path));
    }

    [Fact]
    public void Search_PathWithoutMachine_TakesNewestCacheVersion()
    {
        string dir = TestEnvironment.TemporaryFolder("qemu");
        string cache = Path.Combine(dir, "cache");
        string older = FakeQemu(Directory.CreateDirectory(Path.Combine(cache, "9.2.0", "bin")).FullName, QemuInstallation.BinaryName, MachinesWith, "QEMU emulator version 9.2.0");
        string newer = FakeQemu(Directory.CreateDirectory(Path.Combine(cache, "10.0.2", "bin")).FullName, QemuInstallation.BinaryName, MachinesWith, "QEMU emulator version 10.0.2");
        // The build's other folders are no versions and are not searched.
        FakeQemu(Directory.CreateDirectory(Path.Combine(cache, "logs", "bin")).FullName, QemuInstallation.BinaryName, MachinesWith, "QEMU emulator version 99");
        string debian = FakeQemu(Directory.CreateDirectory(Path.Combine(dir, "path")).FullName, QemuInstallation.BinaryName, MachinesWithout, "QEMU emulator version 7.2.22");

        QemuSearch search = QemuInstallation.Search(null, cache, Path.Combine(dir, "path"));

        Assert.Equal(newer, search.Installation?.Path);
        Assert.Equal(new[] { debian, newer }, search.Candidates.Select(c => c.Path));
        Assert.Equal(new[] { QemuOrigin.Path, QemuOrigin.Cache }, search.Candidates.Select(c => c.Origin));
        Assert.DoesNotContain(older, search.Candidates.Select(c => c.Path));
    }

    [Fact]
    public void Search_NothingInCache_ListsEveryRejection()
    {
        string dir = TestEnvironment.TemporaryFolder("qemu");
        string first = Directory.CreateDirectory(Path.Combine(dir, "a")).FullName;
        string second = Directory.CreateDirectory(Path.Combine(dir, "b")).FullName;
        string old = FakeQemu(first, QemuInstallation.BinaryName, MachinesWithout, "QEMU emulator version 7.2.22");
        string alsoOld = FakeQemu(second, QemuInstallation.BinaryName, MachinesWithout, "QEMU emulator version 8.0.0");
        // A cache version folder whose build never finished.
        string cache = Path.Combine(dir, "cache");
        Directory.CreateDirectory(Path.Combine(cache, "10.0.2"));

        QemuSearch search = QemuInstallation.Search(Path.Combine(dir, "missing"), cache, $"{first}::{second}");

        Assert.Null(search.Installation);
        var expected = new (QemuOrigin, string?)[]
        {
            (QemuOrigin.Environment, "does not exist"),
            (QemuOrigin.Path, "-M help does not list nitro-enclave (QEMU emulator version 7.2.22)"),
            (QemuOrigin.Path, "-M help does not list nitro-enclave (QEMU emulator version 8.0.0)"),
            (QemuOrigin.Cache, "does not exist"),
        };
        Assert.Equal(expected, search.Candidates.Select(c => (c.Origin, c.Rejection)));
        Assert.Equal(new[] { old, alsoOld }, search.Candidates.Skip(1).Take(2).Select(c => c.Path));
        Assert.Contains("7.2.22", search.Describe());
    }

    [Fact]
    public void Search_PathWithMissingAndLinkedFolders_TriesEachBinaryOnce()
    {
        string dir = TestEnvironment.TemporaryFolder("qemu");
        string real = Directory.CreateDirectory(Path.Combine(dir, "usr-bin")).FullName;
        string old = FakeQemu(real, QemuInstallation.BinaryName, MachinesWithout, "QEMU emulator version 7.2.22");
        string link = Path.Combine(dir, "bin");
        Directory.CreateSymbolicLink(link, real); // as /bin → usr/bin on a merged-/usr Debian

        QemuSearch search = QemuInstallation.Search(null, null, $"{Path.Combine(dir, "missing")}:{link}:{real}");

        Assert.Null(search.Installation);
        QemuCandidate candidate = Assert.Single(search.Candidates);
        Assert.Equal(old, candidate.Path);
    }

    [Fact]
    public void Search_FailingOrNonExecutableFakes_AreRejectedWithTheReason()
    {
        string dir = TestEnvironment.TemporaryFolder("qemu");
        string failing = Script(dir, "failing", "echo 'qemu: cannot open display' >&2; exit 1");
        string plain = Path.Combine(dir, "plain");
        File.WriteAllText(plain, "#!/bin/sh\n");

        Assert.Equal("-M help failed with exit status 1: qemu: cannot open display", QemuInstallation.Search(failing, null, null).Candidates.Single().Rejection);
        Assert.Equal("is not executable", QemuInstallation.Search(plain, null, null).Candidates.Single().Rejection);
    }

    [Fact]
    public void Search_SameBinaryTwice_AsksItOnceUntilItChanges()
    {
        string dir = TestEnvironment.TemporaryFolder("qemu");
        string count = Path.Combine(dir, "count");
        string fake = FakeQemu(dir, "counted", MachinesWithout, "QEMU emulator version 7.2.22", $"echo x >> {count}");

        QemuInstallation.Search(fake, null, null);
        int afterFirst = File.ReadAllLines(count).Length;
        QemuInstallation.Search(fake, null, null);
        Assert.Equal(afterFirst, File.ReadAllLines(count).Length);

        File.SetLastWriteTimeUtc(fake, File.GetLastWriteTimeUtc(fake).AddSeconds(5));
        QemuInstallation.Search(fake, null, null);
        Assert.True(File.ReadAllLines(count).Length > afterFirst);
    }

    [Theory]
    [InlineData(MachinesWith, true)]
    [InlineData(MachinesWithout, false)]
    [InlineData("nitro-enclave-10.0        a versioned name\n", false)]
    [InlineData("nitro-enclave\n", true)]
    [InlineData("", false)]
    public void ListsMachine_MachineHelp_MatchesTheFirstWordOnly(string help, bool expected) =>
        Assert.Equal(expected, QemuInstallation.ListsMachine(help));

    [Theory]
    [InlineData("QEMU emulator version 10.0.2", "10.0.2")]
    [InlineData("QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)", "7.2.22")]
    [InlineData("unknown version", "unknown version")]
    public void VersionNumberOf_VersionLine_IsTheNumber(string line, string expected) =>
        Assert.Equal(expected, QemuInstallation.VersionNumberOf(line));

    [Fact]
    public void Probe_FakePrintingLinuxVersion_IsUsableAndCachedForThisBoot()
    {
        var probe = new FakeProbe("linux", "echo x >> \"$(dirname \"$0\")/runs\"; echo 'Probing EDD (edd=off to disable)... ok'; echo '[    0.000000] Linux version 6.12.95+deb12-amd64'; exec sleep 600");

        KvmVerdict first = probe.Check(TimeSpan.FromSeconds(10));
        KvmVerdict second = probe.Check(TimeSpan.FromSeconds(10));

        Assert.True(first.Usable, first.Reason);
        Assert.False(first.FromCache);
        Assert.Equal("kvm", first.Accelerator);
        Assert.Contains("Linux version", first.Reason);
        Assert.True(second.Usable);
        Assert.True(second.FromCache);
        Assert.Single(File.ReadAllLines(Path.Combine(probe.Folder, "runs")));
        Assert.Contains(probe.Qemu, File.ReadAllText(probe.CacheFile));
        probe.AssertGone();
    }

    [Fact]
    public void Probe_CachedVerdictOfAnotherBoot_IsProbedAgain()
    {
        var probe = new FakeProbe("reboot", "echo x >> \"$(dirname \"$0\")/runs\"; echo 'Linux version 6.1.0'");

        Assert.True(probe.Check(TimeSpan.FromSeconds(10)).Usable);
        File.WriteAllText(probe.BootId, Guid.NewGuid().ToString() + "\n");
        KvmVerdict again = probe.Check(TimeSpan.FromSeconds(10));

        Assert.False(again.FromCache);
        Assert.Equal(2, File.ReadAllLines(Path.Combine(probe.Folder, "runs")).Length);
    }

    [Fact]
    public void Probe_FakeExiting134_IsNotUsableWithTheFirstErrorLine()
    {
        var probe = new FakeProbe("abort", """
            echo 'qemu-system-x86_64: warning: host doesn'"'"'t support requested feature' >&2
            echo 'error: failed to set MSR 0x10a to 0xc000069' >&2
            echo 'qemu-system-x86_64: ../target/i386/kvm/kvm.c:3371: kvm_buf_set_msrs: Assertion `ret == cpu->kvm_msr_buf->nmsrs'"'"' failed.' >&2
            exit 134
            """);

        KvmVerdict verdict = probe.Check(TimeSpan.FromSeconds(10));

        Assert.False(verdict.Usable);
        Assert.Equal("tcg", verdict.Accelerator);
        Assert.Contains("SIGABRT (exit status 134)", verdict.Reason);
        Assert.EndsWith(": error: failed to set MSR 0x10a to 0xc000069", verdict.Reason);
    }

    [Fact]
    public void Probe_FakeKilledBySigabrt_IsNotUsable()
    {
        var probe = new FakeProbe("sigabrt", "echo 'kvm_buf_set_msrs: Assertion failed.' >&2; kill -ABRT $$");

        KvmVerdict verdict = probe.Check(TimeSpan.FromSeconds(10));

        Assert.False(verdict.Usable);
        Assert.Contains("SIGABRT", verdict.Reason);
        Assert.Contains("Assertion failed", verdict.Reason);
    }

    [Fact]
    public void Probe_FakeThatHangs_TimesOutAndLeavesNoProcess()
    {
        var probe = new FakeProbe("hang", "echo 'Probing EDD (edd=off to disable)... ok'; sleep 600 & echo $! > \"$(dirname \"$0\")/child\"; wait");
        TimeSpan timeout = TimeSpan.FromSeconds(2);

        var stopwatch = Stopwatch.StartNew();
        KvmVerdict verdict = probe.Check(timeout);
        stopwatch.Stop();

        Assert.False(verdict.Usable);
        Assert.Contains("no 'Linux version' on the console within 2 s", verdict.Reason);
        Assert.True(File.Exists(Path.Combine(probe.Folder, "child")));
        Assert.True(stopwatch.Elapsed < timeout + TimeSpan.FromSeconds(3), $"took {stopwatch.Elapsed}");
        probe.AssertGone();
    }

    [Fact]
    public void Probe_NoDevice_IsNotUsableWithoutRunningQemu()
    {
        var probe = new FakeProbe("nodev", "echo x >> \"$(dirname \"$0\")/runs\"; echo 'Linux version'");
        File.Delete(probe.DevKvm);

        KvmVerdict verdict = probe.Check(TimeSpan.FromSeconds(10));

        Assert.False(verdict.Usable);
        Assert.Equal($"{probe.DevKvm} does not exist (no KVM module loaded, or no hardware virtualization)", verdict.Reason);
        Assert.False(File.Exists(Path.Combine(probe.Folder, "runs")));
    }

    [Fact]
    public void Probe_QemuThatCannotRun_IsNotUsableAndNotCached()
    {
        var probe = new FakeProbe("norun", "true");
        File.Delete(probe.Qemu);

        KvmVerdict verdict = probe.Check(TimeSpan.FromSeconds(10));

        Assert.False(verdict.Usable);
        Assert.StartsWith("cannot probe KVM: QEMU cannot be run", verdict.Reason);
        Assert.False(File.Exists(probe.CacheFile));
    }

    [Fact]
    public void Probe_DebianQemuOnThisMachine_FinishesWithinItsTimeoutAndLeavesNoQemu()
    {
        const string qemu = "/usr/bin/qemu-system-x86_64";
        string home = Environment.GetFolderPath(Environment.SpecialFolder.UserProfile);
        string bzImage = Path.Combine(home, ".cache", "eif", "runtime", "x86_64", "bzImage");
        if (!File.Exists(qemu))
            Assert.Skip($"needs Debian's QEMU at {qemu} (apt-get install qemu-system-x86; tools/provision installs it)");
        if (!File.Exists(bzImage))
            Assert.Skip($"needs the default runtime's kernel at {bzImage} (eif runtime install)");
        if (KvmProbe.DeviceProblem("/dev/kvm") is { } problem)
            Assert.Skip($"needs a /dev/kvm to probe: {problem}");

        // A link of our own, so that this test's QEMU can be told apart from any other by its command line.
        string dir = TestEnvironment.TemporaryFolder("kvm");
        string kernel = Path.Combine(dir, "bzImage");
        File.CreateSymbolicLink(kernel, bzImage);
        string cacheFile = Path.Combine(dir, KvmProbe.CacheFileName);
        TimeSpan timeout = KvmProbe.DefaultTimeout;

        var stopwatch = Stopwatch.StartNew();
        KvmVerdict verdict = KvmProbe.Check(qemu, kernel, timeout, "/dev/kvm", "/proc/sys/kernel/random/boot_id", cacheFile);
        stopwatch.Stop();
        output.WriteLine($"KVM {(verdict.Usable ? "usable" : "not usable")} after {stopwatch.Elapsed.TotalSeconds:0.0} s: {verdict.Reason}");

        Assert.False(string.IsNullOrWhiteSpace(verdict.Reason));
        Assert.True(stopwatch.Elapsed < timeout + TimeSpan.FromSeconds(5), $"took {stopwatch.Elapsed}");
        Assert.Empty(ProcessesMentioning(kernel));
        KvmVerdict cached = KvmProbe.Check(qemu, kernel, timeout, "/dev/kvm", "/proc/sys/kernel/random/boot_id", cacheFile);
        Assert.True(cached.FromCache);
        Assert.Equal(verdict.Usable, cached.Usable);
    }

    // A script in DIR/NAME that answers -M help with MACHINES and --version with VERSION (running PRELUDE first).
    private static string FakeQemu(string dir, string name, string machines, string version, string prelude = "") =>
        Script(dir, name, $"""
            {prelude}
            case "$1" in
              --version) printf '%s\n' '{version}' ;;
              -M) cat <<'EOF'
            {machines}
            EOF
              ;;
              *) exit 1 ;;
            esac
            """);

    private static string Script(string dir, string name, string body)
    {
        string path = Path.Combine(dir, name);
        File.WriteAllText(path, "#!/bin/sh\n" + body + "\n");
        File.SetUnixFileMode(path, (UnixFileMode)0x1ED); // 0755
        return path;
    }

    private static string EmptyFolder() => TestEnvironment.TemporaryFolder("empty");

    // Live processes whose command line contains TEXT.
    private static List<string> ProcessesMentioning(string text)
    {
        var found = new List<string>();
        foreach (string proc in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(proc), out _))
                continue;
            try
            {
                string commandLine = File.ReadAllText(Path.Combine(proc, "cmdline")).Replace('\0', ' ');
                if (commandLine.Contains(text, StringComparison.Ordinal))
                    found.Add($"{Path.GetFileName(proc)}: {commandLine}");
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                // Gone meanwhile.
            }
        }

        return found;
    }

    // A fake QEMU for the probe, with its own /dev/kvm stand-in (a file that opens read-write), boot id, kernel and
    // verdict file. The fake answers --version, and runs PROBE for everything else (the boot).
    private sealed class FakeProbe
    {
        internal string Folder { get; }
        internal string Qemu { get; }
        internal string DevKvm { get; }
        internal string BootId { get; }
        internal string Kernel { get; }
        internal string CacheFile { get; }

        internal FakeProbe(string name, string probe)
        {
            Folder = TestEnvironment.TemporaryFolder("kvm");
            Qemu = Script(Folder, name, $"""
                if [ "$1" = --version ]; then echo 'QEMU emulator version 10.0.2'; exit 0; fi
                echo $$ > "$(dirname "$0")/pid"
                {probe}
                """);
            DevKvm = Path.Combine(Folder, "kvm");
            File.WriteAllText(DevKvm, string.Empty);
            BootId = Path.Combine(Folder, "boot_id");
            File.WriteAllText(BootId, Guid.NewGuid().ToString() + "\n");
            Kernel = Path.Combine(Folder, "bzImage");
            File.WriteAllText(Kernel, "not a kernel");
            CacheFile = Path.Combine(Folder, KvmProbe.CacheFileName);
        }

        internal KvmVerdict Check(TimeSpan timeout) => KvmProbe.Check(Qemu, Kernel, timeout, DevKvm, BootId, CacheFile);

        // The fake's process and its sleep child no longer exist (a killed child may take a moment to be reaped
        // by its new parent).
        internal void AssertGone()
        {
            Assert.Empty(ProcessesMentioning(Folder));
            foreach (string name in new[] { "pid", "child" })
            {
                string file = Path.Combine(Folder, name);
                if (!File.Exists(file))
                    continue;
                string proc = $"/proc/{File.ReadAllText(file).Trim()}";
                long deadline = Environment.TickCount64 + 2000;
                while (Directory.Exists(proc) && Environment.TickCount64 < deadline)
                    Thread.Sleep(20);
                Assert.False(Directory.Exists(proc), $"the fake QEMU's process ({name}) is still running");
            }
        }
    }
}

using System.Diagnostics;
using System.Text;
using System.Text.Json;
using EifTests.Shared;
using Launcher.Local;

namespace EifCli.Tests;

/// <summary>
/// The whole product on one machine (issue 7): a Dockerfile built by the real Docker daemon, turned into an EIF on the
/// default runtime, booted with <c>eif run-enclave --local</c> on QEMU's nitro-enclave machine with our vhost-user-vsock
/// back end, the heartbeat answered, PCRs read from the emulated NSM inside the enclave and compared with describe-eif,
/// the command's exit status reported, and nothing left running. Plus two enclaves at once, and the failures users hit.
/// In CI (CI=true) these tests never skip: a missing QEMU or test image fails them.
/// </summary>
[Collection(LocalBootCollection.Name)]
public sealed class LocalBootTests : IDisposable
{
    private readonly string _folder;
    private readonly Dictionary<string, string> _env;

    public LocalBootTests()
    {
        _folder = Path.Join("/tmp", $"eif-local-{Guid.NewGuid():N}"[..24]);
        Directory.CreateDirectory(_folder);
        _env = new Dictionary<string, string> { ["EIF_ENCLAVES_DIR"] = Path.Join(_folder, "enclaves") };
    }

    public void Dispose()
    {
        EnclaveVerbTests.Eif(_env, "terminate-enclave", "--all");
        Assert.Empty(QemuProcesses(_folder));
        try
        {
            Directory.Delete(_folder, recursive: true);
        }
        catch (IOException)
        {
        }
    }

    [Fact]
    public void Dockerfile_ToEif_BootsLocally_WithNsmPcrsEqualToDescribeEif()
    {
        RequireQemu();
        string context = RequireImageContext("nsm-e2e");
        InstallRuntime();
        string eif = Path.Join(_folder, "nsm-e2e.eif");
        var stopwatch = Stopwatch.StartNew();

        var build = EnclaveVerbTests.Eif(TimeSpan.FromSeconds(180), _env, "build-enclave", "--docker-dir", context, "--docker-uri", "eif-test/nsm-e2e:local", "--output-file", eif, "--quiet");
        Assert.True(build.Code == 0, build.Stderr);
        JsonElement pcrs = CliHarness.Json(CliHarness.Run("describe-eif", "--eif-path", eif).Stdout).GetProperty("Measurements");

        var run = EnclaveVerbTests.Eif(TimeSpan.FromSeconds(180), _env, "run-enclave", "--local", "--eif-path", eif, "--attach-console", "--accel", Accelerator, "--timeout", "150");
        string console = run.Stdout;

        // The exit status of the image's command (3, nsm-e2e.sh's) is run-enclave's.
        Assert.True(run.Code == 3, $"exit {run.Code}\nstderr:\n{run.Stderr}\nconsole:\n{Tail(console)}");
        Assert.Contains("heartbeat from the enclave (CID 16) acknowledged", run.Stderr);
        Assert.Contains("E2E-APP-START", console);
        Assert.Contains("E2E-APP-NSM-PCR-STATUS 0", console);
        Assert.Contains("E2E-APP-DONE", console);
        foreach (string register in new[] { "PCR0", "PCR1", "PCR2" })
        {
            string expected = pcrs.GetProperty(register).GetString()!;
            Assert.Contains($"nsm-pcr: {register} {expected} locked=1", console);
        }

        Assert.Contains("enclave: command exited with status 3", console);
        Assert.DoesNotContain("heartbeat to the parent (vsock 3:9000) failed", console);
        Assert.Contains("its command exited with status 3", run.Stderr);
        Assert.Empty(CliHarness.Json(EnclaveVerbTests.Eif(_env, "describe-enclaves").Stdout).EnumerateArray());
        Assert.Empty(QemuProcesses(_folder));
        Assert.True(stopwatch.Elapsed < TimeSpan.FromMinutes(2), $"the end-to-end run took {stopwatch.Elapsed} (goal: under 2 minutes under TCG)");
    }

    [Fact]
    public void TwoLocalEnclaves_RunAtOnce_AreListedAndTerminated()
    {
        RequireQemu();
        string forms = RequireImage("hello");
        InstallRuntime();
        string eif = Path.Join(_folder, "hello.eif");
        Assert.Equal(0, EnclaveVerbTests.Eif(_env, "build-enclave", "--image", $"docker-archive:{forms}/docker-archive.tar", "--output-file", eif, "--quiet").Code);

        var first = EnclaveVerbTests.Eif(_env, "run-enclave", "--local", "--eif-path", eif, "--debug-mode", "--memory", "256", "--accel", Accelerator);
        Assert.True(first.Code == 0, first.Stderr);
        var second = EnclaveVerbTests.Eif(_env, "run-enclave", "--local", "--eif-path", eif, "--memory", "256", "--accel", Accelerator);
        Assert.True(second.Code == 0, second.Stderr);

        JsonElement[] enclaves = CliHarness.Json(EnclaveVerbTests.Eif(_env, "describe-enclaves").Stdout).EnumerateArray().ToArray();
        Assert.Equal(2, enclaves.Length);
        Assert.All(enclaves, e => Assert.Equal("local", e.GetProperty("Platform").GetString()));
        Assert.All(enclaves, e => Assert.Equal("RUNNING", e.GetProperty("State").GetString()));
        Assert.Equal([16, 17], enclaves.Select(e => e.GetProperty("EnclaveCID").GetInt32()).Order().ToArray());
        Assert.Equal(["hello", "hello_1"], enclaves.Select(e => e.GetProperty("EnclaveName").GetString()!).Order().ToArray());
        Assert.Equal(2, enclaves.Select(e => e.GetProperty("EnclaveID").GetString()).Distinct().Count());
        Assert.Equal(2, QemuProcesses(_folder).Count);

        // The debug enclave's console shows the image's greeting; the other refuses (production mode).
        var console = EnclaveVerbTests.Eif(_env, "console", "--enclave-name", "hello", "--disconnect-timeout", "8");
        Assert.True(console.Code == 0, console.Stderr);
        Assert.Contains("Hello from the enclave side!", console.Stdout);
        Assert.Equal(44, EnclaveVerbTests.Eif(_env, "console", "--enclave-name", "hello_1").Code);

        var terminate = EnclaveVerbTests.Eif(_env, "terminate-enclave", "--all");
        Assert.True(terminate.Code == 0, terminate.Stderr);
        Assert.Equal(2, terminate.Stderr.Split('\n').Count(l => l.StartsWith("Successfully terminated enclave", StringComparison.Ordinal)));
        Assert.Empty(CliHarness.Json(EnclaveVerbTests.Eif(_env, "describe-enclaves").Stdout).EnumerateArray());
        WaitUntil(() => QemuProcesses(_folder).Count == 0, "QEMU still runs after terminate-enclave --all");
    }

    [Fact]
    public void AttachedLocalEnclave_CtrlCOrKillingTheKeeper_LeavesNoQemu()
    {
        RequireQemu();
        string forms = RequireImage("hello");
        InstallRuntime();
        string eif = Path.Join(_folder, "hello.eif");
        Assert.Equal(0, EnclaveVerbTests.Eif(_env, "build-enclave", "--image", $"docker-archive:{forms}/docker-archive.tar", "--output-file", eif, "--quiet").Code);

        // Ctrl-C (SIGINT) on an attached enclave ends it cleanly: QEMU reaped, the socket and CID released.
        using (var attached = StartAttached(eif))
        {
            attached.WaitForConsole("Hello from the enclave side!");
            attached.Signal("INT");
            Assert.True(attached.Process.WaitForExit(20_000), "run-enclave did not end within 20 s of SIGINT");
            string last = attached.Stderr.Split('\n').Last(l => l.Length > 0);
            Assert.True(last.Contains("terminated", StringComparison.Ordinal), attached.Stderr);
            Assert.Equal(130, attached.Process.ExitCode);
        }

        Assert.Empty(QemuProcesses(_folder));
        Assert.Empty(CliHarness.Json(EnclaveVerbTests.Eif(_env, "describe-enclaves").Stdout).EnumerateArray());

        // SIGKILL cannot be handled: QEMU's parent-death signal ends it, and the next enclave takes the dead keeper's CID.
        using (var attached = StartAttached(eif))
        {
            attached.WaitForConsole("Hello from the enclave side!");
            attached.Signal("KILL");
            Assert.True(attached.Process.WaitForExit(10_000), "run-enclave did not die of SIGKILL");
        }

        WaitUntil(() => QemuProcesses(_folder).Count == 0, "QEMU outlived its keeper's SIGKILL");
        var again = EnclaveVerbTests.Eif(_env, "run-enclave", "--local", "--eif-path", eif, "--memory", "256", "--accel", Accelerator);
        Assert.True(again.Code == 0, again.Stderr);
        Assert.Equal(16, CliHarness.Json(again.Stdout).GetProperty("EnclaveCID").GetInt32());
    }

    [Fact]
    public void AttachedLocalEnclave_StillRunningAtTimeout_Exits124()
    {
        RequireQemu();
        string forms = RequireImage("hello");
        InstallRuntime();
        string eif = Path.Join(_folder, "hello.eif");
        Assert.Equal(0, EnclaveVerbTests.Eif(_env, "build-enclave", "--image", $"docker-archive:{forms}/docker-archive.tar", "--output-file", eif, "--quiet").Code);

        var run = EnclaveVerbTests.Eif(_env, "run-enclave", "--local", "--eif-path", eif, "--memory", "256", "--attach-console", "--timeout", "10", "--accel", Accelerator);

        Assert.True(run.Code == 124, $"exit {run.Code}: {run.Stderr}");
        Assert.Contains("Hello from the enclave side!", run.Stdout);
        Assert.Contains("eif: the enclave was still running after --timeout 10 s and was ended; the console log is ", run.Stderr);
        Assert.Empty(QemuProcesses(_folder));
    }

    [Fact]
    public void GuestWithoutHeartbeat_IsE36NamingTheConsoleLog()
    {
        RequireQemu();
        string eif = RawEif("no-heartbeat", "#!/bin/busybox sh\n/bin/busybox echo INIT-WITHOUT-HEARTBEAT\nexec /bin/busybox sleep 600\n");

        var run = EnclaveVerbTests.Eif(_env, "run-enclave", "--local", "--eif-path", eif, "--heartbeat-timeout", "25", "--accel", Accelerator);

        Assert.Equal(36, run.Code);
        string line = run.Stderr.Split('\n').Single(l => l.StartsWith("[ E36 ]", StringComparison.Ordinal));
        Assert.Contains("VsockTimeoutError", line);
        string log = line[(line.IndexOf("the console log is ", StringComparison.Ordinal) + "the console log is ".Length)..].Trim();
        Assert.Contains("INIT-WITHOUT-HEARTBEAT", File.ReadAllText(log));
        Assert.Empty(QemuProcesses(_folder));
    }

    [Fact]
    public void KernelPanic_IsDetectedOnTheConsoleAndReported()
    {
        RequireQemu();
        string eif = RawEif("panic", "#!/bin/busybox sh\n/bin/busybox echo INIT-EXITS-NOW\nexit 7\n"); // PID 1 exits: the kernel panics

        var stopwatch = Stopwatch.StartNew();
        var run = EnclaveVerbTests.Eif(_env, "run-enclave", "--local", "--eif-path", eif, "--accel", Accelerator);

        Assert.Equal(36, run.Code);
        Assert.Contains("the enclave's kernel panicked (Kernel panic - not syncing: Attempted to kill init!", run.Stderr);
        Assert.Contains("the console log is ", run.Stderr);
        Assert.True(stopwatch.Elapsed < TimeSpan.FromSeconds(90), $"a panic took {stopwatch.Elapsed} to report (the EIF's panic=30 must not be waited out)");
        Assert.Empty(QemuProcesses(_folder));
    }

    [Fact]
    public void EifQemuWouldReject_IsRefusedBeforeQemuStarts()
    {
        RequireQemu();
        // An aarch64 EIF: QEMU's loader says "Expected EIF flags to be 0"; we say why before starting it.
        var run = EnclaveVerbTests.Eif(_env, "run-enclave", "--local", "--eif-path", CliHarness.Golden("synth_aarch64.eif"));
        Assert.Equal(35, run.Code);
        Assert.Contains("built for aarch64", run.Stderr);
        Assert.Empty(QemuProcesses(_folder));
    }

    [Fact]
    public void EifVersion3_IsRefusedBeforeQemuStartsSayingWhy()
    {
        RequireQemu();
        // A valid version 3 EIF: a golden file with its metadata section (version 4's) taken out, the table, the
        // version and the CRC rewritten (spec §2: header fields, section tables at 0x1C and 0x11C, CRC at 0x220).
        byte[] v4 = File.ReadAllBytes(CliHarness.Golden("synth_sha384_named.eif"));
        var sections = new List<byte[]>();
        int count = System.Buffers.Binary.BinaryPrimitives.ReadUInt16BigEndian(v4.AsSpan(0x1A));
        for (int i = 0; i < count; i++)
        {
            int offset = (int)System.Buffers.Binary.BinaryPrimitives.ReadUInt64BigEndian(v4.AsSpan(0x1C + (8 * i)));
            int size = (int)System.Buffers.Binary.BinaryPrimitives.ReadUInt64BigEndian(v4.AsSpan(0x11C + (8 * i)));
            if (System.Buffers.Binary.BinaryPrimitives.ReadUInt16BigEndian(v4.AsSpan(offset)) != 5) // 5: metadata
                sections.Add(v4[offset..(offset + 12 + size)]);
        }

        var v3 = new MemoryStream();
        v3.Write(v4, 0, 548);
        foreach (byte[] section in sections)
            v3.Write(section);
        byte[] file = v3.ToArray();
        System.Buffers.Binary.BinaryPrimitives.WriteUInt16BigEndian(file.AsSpan(4), 3);
        System.Buffers.Binary.BinaryPrimitives.WriteUInt16BigEndian(file.AsSpan(0x1A), (ushort)sections.Count);
        long at = 548;
        for (int i = 0; i < 32; i++)
        {
            System.Buffers.Binary.BinaryPrimitives.WriteUInt64BigEndian(file.AsSpan(0x1C + (8 * i)), i < sections.Count ? (ulong)at : 0);
            System.Buffers.Binary.BinaryPrimitives.WriteUInt64BigEndian(file.AsSpan(0x11C + (8 * i)), i < sections.Count ? (ulong)(sections[i].Length - 12) : 0);
            at += i < sections.Count ? sections[i].Length : 0;
        }

        var crc = new System.IO.Hashing.Crc32();
        crc.Append(file.AsSpan(0, 0x220));
        crc.Append(file.AsSpan(548));
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32BigEndian(file.AsSpan(0x220), crc.GetCurrentHashAsUInt32());
        string eif = Path.Join(_folder, "v3.eif");
        File.WriteAllBytes(eif, file);
        Assert.Contains("\"EifVersion\": 3", CliHarness.Run("describe-eif", "--eif-path", eif).Stdout);

        var run = EnclaveVerbTests.Eif(_env, "run-enclave", "--local", "--eif-path", eif);

        Assert.Equal(35, run.Code);
        Assert.Contains("QEMU's nitro-enclave machine boots EIF version 4 and later ('version' 3)", run.Stderr);
        Assert.Empty(QemuProcesses(_folder));
    }

    [Fact]
    public void QemuBuild_AStepThatFails_IsOneLineNamingTheStep()
    {
        // /proc refuses new folders: the build fails at its first step, before any package, download or compile.
        string script = Path.Combine(TestImages.RepositoryRoot, "tools", "qemu", "build");
        var info = new ProcessStartInfo("bash") { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (string argument in new[] { script, "--prefix", "/proc/eif-qemu-test" })
            info.ArgumentList.Add(argument);
        info.Environment["XDG_CACHE_HOME"] = Path.Join(_folder, "cache");
        using var build = Process.Start(info)!;
        string stderr = build.StandardError.ReadToEnd();
        build.WaitForExit();

        Assert.Equal(1, build.ExitCode);
        Assert.Single(stderr.Trim().Split('\n'));
        Assert.StartsWith("qemu build: creating the install folder /proc/eif-qemu-test/bin failed (cannot create directory", stderr.Trim());

        using var usage = Process.Start(new ProcessStartInfo("bash", [script, "--jobs", "many"]) { RedirectStandardError = true })!;
        string usageError = usage.StandardError.ReadToEnd();
        usage.WaitForExit();
        Assert.Equal(2, usage.ExitCode);
        Assert.Equal("qemu build: --jobs wants a positive number, not 'many'", usageError.Trim());
    }

    [Fact]
    public void MissingQemu_SaysHowToBuildOne()
    {
        var env = new Dictionary<string, string>(_env)
        {
            ["PATH"] = Path.Join(_folder, "empty-path"),
            ["XDG_CACHE_HOME"] = Path.Join(_folder, "empty-cache"),
            ["EIF_QEMU"] = Path.Join(_folder, "no-such-qemu"),
        };
        var run = EnclaveVerbTests.Eif(env, "run-enclave", "--local", "--eif-path", CliHarness.Golden("synth_sha384_named.eif"));
        Assert.True(run.Code == 19, $"exit {run.Code}: {run.Stderr}");
        Assert.Contains("tools/qemu/build", run.Stderr);
        Assert.Contains("no-such-qemu", run.Stderr);
    }

    private AttachedRun StartAttached(string eif)
    {
        ProcessStartInfo start = EifCli.EnclaveProcess.SelfCommand("run-enclave", "--local", "--eif-path", eif, "--memory", "256", "--attach-console", "--accel", Accelerator);
        start.RedirectStandardOutput = true;
        start.RedirectStandardError = true;
        foreach (var (key, value) in _env)
            start.Environment[key] = value;
        return new AttachedRun(Process.Start(start)!);
    }

    /// <summary>A run-enclave --attach-console in the background, its output collected as it comes.</summary>
    private sealed class AttachedRun : IDisposable
    {
        private readonly StringBuilder _stdout = new();
        private readonly StringBuilder _stderr = new();

        internal AttachedRun(Process process)
        {
            Process = process;
            process.OutputDataReceived += (_, e) => { lock (_stdout) _stdout.Append(e.Data).Append('\n'); };
            process.ErrorDataReceived += (_, e) => { lock (_stderr) _stderr.Append(e.Data).Append('\n'); };
            process.BeginOutputReadLine();
            process.BeginErrorReadLine();
        }

        internal Process Process { get; }

        internal string Stdout { get { lock (_stdout) return _stdout.ToString(); } }

        internal string Stderr { get { lock (_stderr) return _stderr.ToString(); } }

        internal void WaitForConsole(string text)
        {
            long deadline = Environment.TickCount64 + 60_000;
            while (!Stdout.Contains(text, StringComparison.Ordinal))
            {
                if (Process.HasExited)
                    Assert.Fail($"run-enclave exited ({Process.ExitCode}) before the console showed '{text}': {Stderr}");
                Assert.True(Environment.TickCount64 < deadline, $"no '{text}' on the console within 60 s: {Stderr}");
                Thread.Sleep(100);
            }
        }

        internal void Signal(string signal)
        {
            using Process kill = Process.Start("kill", $"-{signal} {Process.Id}")!;
            kill.WaitForExit();
            Assert.Equal(0, kill.ExitCode);
        }

        public void Dispose()
        {
            if (!Process.HasExited)
                Process.Kill(entireProcessTree: true);
            Process.WaitForExit();
            Process.Dispose();
        }
    }

    /// <summary>"tcg" here (the machine's /dev/kvm is a software module that hangs QEMU); EIF_TEST_ACCEL overrides.</summary>
    private static string Accelerator => Environment.GetEnvironmentVariable("EIF_TEST_ACCEL") ?? "auto";

    private static void RequireQemu()
    {
        if (QemuInstallation.Find() is null)
            RequireOrFail($"no QEMU with the nitro-enclave machine: run tools/qemu/build (tools/test does); {QemuInstallation.Search().Describe()}");
    }

    private static string RequireImage(string name)
    {
        string dir = Path.Combine(TestImages.RepositoryRoot, ".build", "test-images", name);
        if (!File.Exists(Path.Combine(dir, "docker-archive.tar")))
            RequireOrFail($"test image '{name}' is not built: run tools/test-images (tools/test does)");
        return dir;
    }

    private static string RequireImageContext(string name)
    {
        RequireImage(name);
        string context = Path.Combine(TestImages.RepositoryRoot, ".build", "test-images", "context", name);
        if (!File.Exists(Path.Combine(context, "Dockerfile")))
            RequireOrFail($"the build context of '{name}' is missing: run tools/test-images (tools/test does)");
        return context;
    }

    private static void RequireOrFail(string reason)
    {
        if (Environment.GetEnvironmentVariable("CI") == "true")
            Assert.Fail($"CI must provide this: {reason}");
        Assert.Skip(reason);
    }

    private static void InstallRuntime()
    {
        var (code, _, stderr) = CliHarness.Run("runtime", "install");
        Assert.True(code == 0, stderr);
    }

    // An EIF on the default runtime's kernel whose one ramdisk is busybox and the given /init: for boots that go wrong.
    private string RawEif(string name, string init)
    {
        InstallRuntime();
        string runtime = CliHarness.Run("runtime", "path").Stdout.Trim();
        string ramdisk = Path.Join(_folder, name + ".cpio");
        File.WriteAllBytes(ramdisk, Newc(
            ("bin", 0x41ED, []),
            ("bin/busybox", 0x81ED, File.ReadAllBytes("/bin/busybox")),
            ("dev", 0x41ED, []),
            ("init", 0x81ED, Encoding.ASCII.GetBytes(init))));
        string eif = Path.Join(_folder, name + ".eif");
        var (code, _, stderr) = CliHarness.Run("build-eif", "--kernel", Path.Join(runtime, "bzImage"), "--cmdline", File.ReadAllText(Path.Join(runtime, "cmdline")).Trim(),
            "--ramdisk", ramdisk, "--output", eif);
        Assert.True(code == 0, stderr);
        return eif;
    }

    // A minimal cpio newc archive (kernel's Documentation/driver-api/early-userspace/buffer-format.rst).
    private static byte[] Newc(params (string Name, uint Mode, byte[] Data)[] entries)
    {
        var output = new MemoryStream();
        uint ino = 1;
        void Entry(string name, uint mode, byte[] data)
        {
            byte[] nameBytes = Encoding.ASCII.GetBytes(name + "\0");
            string header = "070701" + string.Concat(new uint[] { ino++, mode, 0, 0, 1, 0, (uint)data.Length, 0, 0, 0, 0, (uint)nameBytes.Length, 0 }.Select(v => v.ToString("x8")));
            output.Write(Encoding.ASCII.GetBytes(header));
            output.Write(nameBytes);
            output.Write(new byte[(4 - (output.Length % 4)) % 4]);
            output.Write(data);
            output.Write(new byte[(4 - (output.Length % 4)) % 4]);
        }

        foreach (var (name, mode, data) in entries)
            Entry(name, mode, data);
        Entry("TRAILER!!!", 0, []);
        return output.ToArray();
    }

    /// <summary>QEMU processes whose command line mentions <paramref name="folder"/> (their EIF or socket is in it).</summary>
    private static List<int> QemuProcesses(string folder)
    {
        var found = new List<int>();
        foreach (string proc in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(proc), out int pid))
                continue;
            try
            {
                string cmdline = File.ReadAllText(Path.Join(proc, "cmdline")).Replace('\0', ' ');
                if (cmdline.Contains("qemu-system-x86_64", StringComparison.Ordinal) && cmdline.Contains(folder, StringComparison.Ordinal))
                    found.Add(pid);
            }
            catch (IOException)
            {
            }
        }

        return found;
    }

    private static void WaitUntil(Func<bool> condition, string message)
    {
        long deadline = Environment.TickCount64 + 15_000;
        while (!condition())
        {
            Assert.True(Environment.TickCount64 < deadline, message);
            Thread.Sleep(100);
        }
    }

    private static string Tail(string text) => string.Join('\n', text.Split('\n').TakeLast(40));
}

/// <summary>Local boots run one at a time: each uses both cores under TCG, and their timings have goals.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class LocalBootCollection
{
    /// <summary>The collection's name.</summary>
    public const string Name = "local boot";
}

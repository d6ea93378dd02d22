using System.Diagnostics;
using System.Text.Json;
using Launcher.Simulation;
using Launcher.Tests;

namespace EifCli.Tests;

/// <summary>
/// The enclave verbs as users run them: the real <c>eif</c> program in its own process, its enclave processes
/// detached, on the Nitro simulator (EIF_NITRO_SIMULATOR) with real hugepages, each test with its own enclaves folder
/// (EIF_ENCLAVES_DIR).
/// </summary>
[Collection(HugePagesCollection.Name)]
public sealed class EnclaveVerbTests : IDisposable
{
    private readonly string _folder;
    private readonly SimulatedNitro _sim;
    private readonly Dictionary<string, string> _env;

    public EnclaveVerbTests()
    {
        _folder = Path.Join("/tmp", $"eif-verbs-{Guid.NewGuid():N}"[..24]);
        Directory.CreateDirectory(_folder);
        _sim = SimulatedNitro.Create(Path.Join(_folder, "sim"), new SimulatorConfig());
        _env = new Dictionary<string, string>
        {
            ["EIF_NITRO_SIMULATOR"] = _sim.Folder,
            ["EIF_ENCLAVES_DIR"] = Path.Join(_folder, "enclaves"),
        };
    }

    public void Dispose()
    {
        // Whatever a failed test left running: end it, so no enclave process outlives the test run.
        Eif(_env, "terminate-enclave", "--all");
        try
        {
            Directory.Delete(_folder, recursive: true);
        }
        catch (IOException)
        {
            // A socket still being torn down; /tmp is cleaned anyway.
        }
    }

    private static string Golden(string name) => Path.Combine(AppContext.BaseDirectory, "golden", name);

    /// <summary>Runs eif with <paramref name="env"/>; returns its exit code and output.</summary>
    internal static (int Code, string Stdout, string Stderr) Eif(IReadOnlyDictionary<string, string> env, params string[] args) =>
        Eif(TimeSpan.FromSeconds(60), env, args);

    /// <summary>Runs eif with <paramref name="args"/>, failing the test when it takes longer than <paramref name="limit"/>.</summary>
    internal static (int Code, string Stdout, string Stderr) Eif(TimeSpan limit, IReadOnlyDictionary<string, string> env, params string[] args)
    {
        ProcessStartInfo start = EnclaveProcess.SelfCommand(args);
        start.RedirectStandardOutput = true;
        start.RedirectStandardError = true;
        foreach (var (key, value) in env)
            start.Environment[key] = value;
        using Process process = Process.Start(start)!;
        Task<string> stdout = process.StandardOutput.ReadToEndAsync();
        Task<string> stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(limit))
        {
            process.Kill(entireProcessTree: true);
            Assert.Fail($"eif {string.Join(' ', args)} did not finish within {limit.TotalSeconds:0} s");
        }

        return (process.ExitCode, stdout.Result, stderr.Result);
    }

    private (int Code, string Stdout, string Stderr) Eif(params string[] args) => Eif(_env, args);

    private static bool ProcessAlive(int pid) => Directory.Exists($"/proc/{pid}") && !File.ReadAllText($"/proc/{pid}/stat").Contains(") Z ", StringComparison.Ordinal);

    [Fact]
    public void RunDescribeTerminate_OnTheSimulator_BehaveAsNitroCli()
    {
        HugePages.Require(80);
        string eif = Golden("synth_metadata.eif");
        var run = Eif("run-enclave", "--eif-path", eif, "--memory", "64", "--cpu-count", "2");
        Assert.True(run.Code == 0, run.Stderr);
        JsonElement launched = CliHarness.Json(run.Stdout);
        Assert.Equal(
            ["EnclaveName", "EnclaveID", "ProcessID", "EnclaveCID", "NumberOfCPUs", "CPUIDs", "MemoryMiB", "Platform"],
            launched.EnumerateObject().Select(p => p.Name).ToArray());
        Assert.Equal("synth_metadata", launched.GetProperty("EnclaveName").GetString());
        Assert.Matches("^i-0123456789abcdef0-enc[0-9a-f]+$", launched.GetProperty("EnclaveID").GetString());
        Assert.Equal(16, launched.GetProperty("EnclaveCID").GetInt32());
        Assert.Equal(2, launched.GetProperty("NumberOfCPUs").GetInt32());
        Assert.Equal([2, 3], launched.GetProperty("CPUIDs").EnumerateArray().Select(e => e.GetInt32()).ToArray());
        Assert.Equal(64, launched.GetProperty("MemoryMiB").GetInt32());
        Assert.Equal("simulated", launched.GetProperty("Platform").GetString());
        int pid = launched.GetProperty("ProcessID").GetInt32();
        Assert.True(ProcessAlive(pid), "the enclave process is not running after run-enclave returned");
        Assert.Contains("Started enclave with enclave-cid: 16, memory: 64 MiB, cpu-ids: [2, 3]", run.Stderr);

        // A second launch of the same EIF gets the next name and the next CID and cores.
        var second = Eif("run-enclave", "--eif-path", eif, "--memory", "64", "--cpu-ids", "4", "5");
        Assert.True(second.Code == 0, second.Stderr);
        Assert.Equal("synth_metadata_1", CliHarness.Json(second.Stdout).GetProperty("EnclaveName").GetString());
        Assert.Equal(17, CliHarness.Json(second.Stdout).GetProperty("EnclaveCID").GetInt32());

        var describe = Eif("describe-enclaves", "--metadata");
        Assert.True(describe.Code == 0, describe.Stderr);
        JsonElement[] enclaves = CliHarness.Json(describe.Stdout).EnumerateArray().ToArray();
        Assert.Equal(2, enclaves.Length);
        JsonElement first = enclaves.Single(e => e.GetProperty("EnclaveName").GetString() == "synth_metadata");
        Assert.Equal("RUNNING", first.GetProperty("State").GetString());
        Assert.Equal("NONE", first.GetProperty("Flags").GetString());
        Assert.Equal(pid, first.GetProperty("ProcessID").GetInt32());
        JsonElement measurements = CliHarness.Json(CliHarness.Run("describe-eif", "--eif-path", eif).Stdout).GetProperty("Measurements");
        Assert.Equal(measurements.GetProperty("PCR0").GetString(), first.GetProperty("Measurements").GetProperty("PCR0").GetString());
        Assert.Equal(measurements.GetProperty("PCR2").GetString(), first.GetProperty("Measurements").GetProperty("PCR2").GetString());
        Assert.True(first.TryGetProperty("ImageName", out _));
        Assert.True(first.GetProperty("Metadata").TryGetProperty("BuildTime", out _));

        var terminate = Eif("terminate-enclave", "--enclave-name", "synth_metadata");
        Assert.True(terminate.Code == 0, terminate.Stderr);
        JsonElement terminated = CliHarness.Json(terminate.Stdout);
        Assert.Equal(launched.GetProperty("EnclaveID").GetString(), terminated.GetProperty("EnclaveID").GetString());
        Assert.True(terminated.GetProperty("Terminated").GetBoolean());
        Assert.Contains($"Successfully terminated enclave {launched.GetProperty("EnclaveID").GetString()}.", terminate.Stderr);
        long deadline = Environment.TickCount64 + 10_000;
        while (ProcessAlive(pid) && Environment.TickCount64 < deadline)
            Thread.Sleep(50);
        Assert.False(ProcessAlive(pid), "the enclave process did not exit after terminate-enclave");

        var remaining = CliHarness.Json(Eif("describe-enclaves").Stdout).EnumerateArray().ToArray();
        Assert.Equal("synth_metadata_1", Assert.Single(remaining).GetProperty("EnclaveName").GetString());
        Assert.Equal(0, Eif("terminate-enclave", "--all").Code);
        Assert.Empty(CliHarness.Json(Eif("describe-enclaves").Stdout).EnumerateArray());
    }

    [Fact]
    public void Console_DebugEnclave_ShowsBootOutputAndTheLogAfterTheEnd()
    {
        HugePages.Require(48);
        var run = Eif("run-enclave", "--eif-path", Golden("synth_sha384_named.eif"), "--memory", "64", "--cpu-count", "2", "--debug-mode", "--enclave-name", "dbg");
        Assert.True(run.Code == 0, run.Stderr);
        string id = CliHarness.Json(run.Stdout).GetProperty("EnclaveID").GetString()!;
        Assert.Equal("DEBUG_MODE", CliHarness.Json(Eif("describe-enclaves").Stdout)[0].GetProperty("Flags").GetString());

        var console = Eif("console", "--enclave-id", id, "--disconnect-timeout", "2");
        Assert.True(console.Code == 0, console.Stderr);
        Assert.StartsWith("[sim] Nitro Enclaves simulator:", console.Stdout);
        Assert.Contains("heartbeat 0xB7 to vsock 3:9000: echoed", console.Stdout);

        Assert.Equal(0, Eif("terminate-enclave", "--enclave-id", id).Code);
        var after = Eif("console", "--enclave-id", id);
        Assert.True(after.Code == 0, after.Stderr);
        Assert.Contains("has ended; its console log", after.Stderr);
        Assert.StartsWith("[sim] Nitro Enclaves simulator:", after.Stdout);
    }

    [Fact]
    public void Console_ProductionEnclave_IsE44()
    {
        HugePages.Require(48);
        var run = Eif("run-enclave", "--eif-path", Golden("synth_sha384_named.eif"), "--memory", "64", "--cpu-count", "2");
        Assert.True(run.Code == 0, run.Stderr);
        var console = Eif("console", "--enclave-name", "synth_sha384_named");
        Assert.Equal(44, console.Code);
        Assert.StartsWith("[ E44 ] Enclave console connection failure.", console.Stderr);
    }

    [Fact]
    public void RunEnclave_NoDriver_SaysSoAndHowToInstallIt()
    {
        // This machine has no Nitro Enclaves driver: no /dev/nitro_enclaves, no nitro_enclaves module.
        Assert.SkipWhen(File.Exists("/dev/nitro_enclaves") || Directory.Exists("/sys/module/nitro_enclaves"), "this machine has the Nitro Enclaves driver");
        var env = new Dictionary<string, string> { ["EIF_ENCLAVES_DIR"] = Path.Join(_folder, "real") };
        var run = Eif(env, "run-enclave", "--eif-path", Golden("synth_sha384_named.eif"), "--memory", "64", "--cpu-count", "2");
        Assert.Equal(19, run.Code); // nitro-cli: E19, reading ne_cpus fails
        string line = Assert.Single(run.Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.StartsWith("[ E19 ] File operation failure. '/sys/module/nitro_enclaves/parameters/ne_cpus' Open: no such file: the Nitro Enclaves driver (nitro_enclaves) is not loaded.", line);
        Assert.Contains("dnf install aws-nitro-enclaves-cli", line);
        Assert.Contains("nitro-enclaves-allocator", line);
        Assert.Empty(run.Stdout);
    }

    [Theory]
    [InlineData(26, "[ E26 ] Insufficient memory requested.", "--memory", "0", "--cpu-count", "2")]
    [InlineData(26, "[ E26 ] Insufficient memory requested.", "--memory", "32", "--cpu-count", "2")]
    [InlineData(22, "[ E22 ] Insufficient CPUs available in the pool.", "--memory", "64", "--cpu-count", "8")]
    [InlineData(21, "[ E21 ] No such CPU available in the pool.", "--memory", "64", "--cpu-ids", "1")]
    [InlineData(20, "[ E20 ] Invalid CPU configuration.", "--memory", "64", "--cpu-ids", "2")]
    [InlineData(3, "[ E03 ] Invalid argument provided.", "--memory", "64", "--cpu-count", "2", "--enclave-cid", "3")]
    [InlineData(2, "[ E02 ] Conflicting arguments.", "--memory", "64", "--cpu-count", "2", "--cpu-ids", "2", "3")]
    [InlineData(25, "[ E25 ] No such hugepage flag error.", "--memory", "64", "--cpu-count", "2", "--hugepage-size", "3M")]
    public void RunEnclave_BadRequest_IsRefusedWithNitroCliCodeAndLeavesNothing(int code, string prefix, params string[] options)
    {
        HugePages.Require(48);
        var run = Eif(["run-enclave", "--eif-path", Golden("synth_sha384_named.eif"), .. options]);
        Assert.Equal(code, run.Code);
        Assert.StartsWith(prefix, run.Stderr);
        Assert.Empty(run.Stdout);
        Assert.Empty(Launcher.Supervision.EnclaveDirectory.Sockets(_env["EIF_ENCLAVES_DIR"]));
    }

    [Fact]
    public void RunEnclave_NoHeartbeat_IsE36AndTheEnclaveIsGone()
    {
        HugePages.Require(48);
        SimulatedNitro silent = SimulatedNitro.Create(Path.Join(_folder, "silent"), new SimulatorConfig { Boot = SimulatedBoot.Silent });
        var env = new Dictionary<string, string>(_env) { ["EIF_NITRO_SIMULATOR"] = silent.Folder };
        long freeBefore = HugePages.Free;
        var run = Eif(env, "run-enclave", "--eif-path", Golden("synth_sha384_named.eif"), "--memory", "64", "--cpu-count", "2", "--heartbeat-timeout", "2");
        Assert.Equal(36, run.Code);
        Assert.Contains("[ E36 ] Enclave boot failure. Waiting on enclave to boot failed with error VsockTimeoutError", run.Stderr);
        Assert.Empty(Launcher.Supervision.EnclaveDirectory.Sockets(env["EIF_ENCLAVES_DIR"]));
        Assert.Equal(freeBefore, HugePages.Free);
        Assert.False(File.Exists(Path.Join(silent.VsockFolder, "3.9000")), "the heartbeat listener is left behind");
    }

    [Fact]
    public async Task RunEnclave_Foreground_HoldsTheEnclaveUntilSigterm()
    {
        HugePages.Require(48);
        ProcessStartInfo start = EnclaveProcess.SelfCommand("run-enclave", "--eif-path", Golden("synth_sha384_named.eif"), "--memory", "64", "--cpu-count", "2", "--foreground");
        start.RedirectStandardOutput = true;
        start.RedirectStandardError = true;
        foreach (var (key, value) in _env)
            start.Environment[key] = value;
        using Process process = Process.Start(start)!;
        Task<string> stderr = process.StandardError.ReadToEndAsync();
        string json = string.Empty;
        while (!json.TrimEnd().EndsWith('}'))
            json += (await process.StandardOutput.ReadLineAsync(TestContext.Current.CancellationToken) ?? throw new Xunit.Sdk.XunitException($"no JSON: {await stderr}")) + "\n";
        Assert.Equal(process.Id, CliHarness.Json(json).GetProperty("ProcessID").GetInt32());
        Assert.Equal(process.Id, CliHarness.Json(Eif("describe-enclaves").Stdout)[0].GetProperty("ProcessID").GetInt32());

        Assert.Equal(0, Syscall.Kill(process.Id, 15));
        Assert.True(process.WaitForExit(15_000), "the foreground enclave did not end on SIGTERM");
        Assert.Equal(0, process.ExitCode);
        Assert.Contains("was terminated", await stderr);
        Assert.Empty(CliHarness.Json(Eif("describe-enclaves").Stdout).EnumerateArray());
    }

    [Fact]
    public void DescribeEnclaves_DeadEnclaveProcess_CountsAFailedConnection()
    {
        string folder = _env["EIF_ENCLAVES_DIR"];
        Directory.CreateDirectory(folder);
        using (var dead = new System.Net.Sockets.Socket(System.Net.Sockets.AddressFamily.Unix, System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Unspecified))
        {
            // Bound, never listening; renamed before closing, because .NET unlinks the file it bound when it closes.
            dead.Bind(new System.Net.Sockets.UnixDomainSocketEndPoint(Path.Join(folder, "bound")));
            File.Move(Path.Join(folder, "bound"), Path.Join(folder, "7.sock"));
        }

        Assert.True(File.Exists(Path.Join(folder, "7.sock")));
        var describe = Eif("describe-enclaves");
        Assert.Equal(39, describe.Code);
        Assert.Equal("[]", describe.Stdout.Trim());
        Assert.Contains("[ E39 ] Enclave process connection failure. Failed connections: 1", describe.Stderr);
        Assert.Contains("the stale socket was removed", describe.Stderr);
        Assert.False(File.Exists(Path.Join(folder, "7.sock")));
    }

    [Fact]
    public void TerminateAndConsole_UnknownEnclave_AreE40AndE58()
    {
        var byId = Eif("terminate-enclave", "--enclave-id", "i-0123456789abcdef0-enc99");
        Assert.Equal(40, byId.Code);
        Assert.StartsWith("[ E40 ]", byId.Stderr);
        var byName = Eif("console", "--enclave-name", "nobody");
        Assert.Equal(58, byName.Code);
        Assert.StartsWith("[ E58 ]", byName.Stderr);
    }

    private static class Syscall
    {
        [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "kill", SetLastError = true)]
        internal static extern int Kill(int pid, int signal);
    }
}

using System.Net.Sockets;
using System.Text;
using Launcher.Simulation;
using Launcher.Supervision;

namespace Launcher.Tests;

/// <summary>
/// The supervisor and its client over a real Unix socket, holding an enclave on the simulator: describe, terminate,
/// the console from boot, an enclave that stops by itself, stale sockets, permissions.
/// </summary>
[Collection(HugePagesCollection.Name)]
public sealed class SupervisorTests
{
    private static (SimulatedNitro Sim, string Folder, EnclaveSupervisor Supervisor, Thread Runner) Start(bool debug, SimulatorConfig? config = null)
    {
        HugePages.Require(48);
        SimulatedNitro sim = TestEnvironment.Simulator(config);
        string folder = Path.Join(sim.Folder, "enclaves");
        var request = new LaunchRequest
        {
            EifPath = TestEnvironment.Golden("synth_metadata.eif"),
            MemoryMiB = 64,
            CpuCount = 2,
            DebugMode = debug,
            EnclaveName = "web",
            HeartbeatTimeout = TimeSpan.FromSeconds(20),
        };
        EnclaveSupervisor supervisor = EnclaveHost.LaunchSupervised(sim.Platform, request, folder);
        var runner = new Thread(() => supervisor.Run()) { IsBackground = true };
        runner.Start();
        return (sim, folder, supervisor, runner);
    }

    private static string SocketOf(string folder) => Assert.Single(EnclaveDirectory.Sockets(folder));

    [Fact]
    public void Describe_RunningEnclave_ReturnsWhatWasLaunched()
    {
        var (sim, folder, supervisor, runner) = Start(debug: false);
        using (supervisor)
        {
            EnclaveDescription d = EnclaveClient.Describe(SocketOf(folder));
            Assert.Equal("web", d.EnclaveName);
            Assert.Equal($"i-0123456789abcdef0-enc{sim.Device.OpenEnclaves.Single().SlotUid:x}", d.EnclaveId);
            Assert.Equal(Environment.ProcessId, d.ProcessId);
            Assert.Equal(16UL, d.EnclaveCid);
            Assert.Equal([2, 3], d.CpuIds);
            Assert.Equal(64UL, d.MemoryMiB);
            Assert.Equal(EnclaveState.Running, d.State);
            Assert.False(d.DebugMode);
            Assert.Equal("simulated", d.Platform);
            Assert.NotNull(d.MetadataJson);
            using var reader = EifFormat.EifReader.Open(TestEnvironment.Golden("synth_metadata.eif"));
            Assert.Equal(reader.ComputeDigests().Measurements.Pcr0, d.Measurements.Pcr0);
        }

        Assert.True(runner.Join(TimeSpan.FromSeconds(10)));
    }

    [Fact]
    public void Terminate_ThroughTheSocket_ReleasesEverythingAndEndsTheSupervision()
    {
        long freeBefore = HugePages.Free;
        var (sim, folder, supervisor, runner) = Start(debug: false);
        string socket = SocketOf(folder);
        using (supervisor)
        {
            EnclaveDescription after = EnclaveClient.Terminate(socket);
            Assert.Equal(EnclaveState.Empty, after.State);
            Assert.True(runner.Join(TimeSpan.FromSeconds(10)), "Run did not return after Terminate");
            Assert.Equal("terminated", supervisor.Ending);
        }

        Assert.False(File.Exists(socket), "the socket file is left behind");
        Assert.Empty(sim.Device.OpenEnclaves);
        Assert.Equal(freeBefore, HugePages.Free);
        Assert.Throws<EnclaveException>(() => EnclaveClient.Describe(socket));
    }

    [Fact]
    public void Console_DebugEnclave_StreamsFromBootToAllReadersAndKeepsALog()
    {
        var (_, folder, supervisor, runner) = Start(debug: true);
        string socket = SocketOf(folder);
        string first, second;
        using (supervisor)
        {
            using Stream a = EnclaveClient.OpenConsole(socket);
            using Stream b = EnclaveClient.OpenConsole(socket);
            first = ReadUntil(a, "no enclave code runs");
            second = ReadUntil(b, "no enclave code runs");
            EnclaveClient.Terminate(socket);
            Assert.True(runner.Join(TimeSpan.FromSeconds(10)));

            // The console ends with the enclave: the reader sees end of stream.
            a.ReadTimeout = 10_000;
            var rest = new MemoryStream();
            a.CopyTo(rest);
        }

        // From the first line the hypervisor printed, before the heartbeat (nitro-cli shows nothing before it, #343).
        Assert.StartsWith("[sim] Nitro Enclaves simulator: slot", first);
        Assert.Contains("kernel command line:", first);
        Assert.Equal(first, second);
        string log = File.ReadAllText(Path.ChangeExtension(socket, ".console.log"));
        Assert.StartsWith(first, log);
    }

    [Fact]
    public void Console_ProductionEnclave_IsRefusedWithE44()
    {
        var (_, folder, supervisor, _) = Start(debug: false);
        using (supervisor)
        {
            var ex = Assert.Throws<EnclaveException>(() => EnclaveClient.OpenConsole(SocketOf(folder)));
            Assert.Equal(LaunchError.EnclaveConsoleConnectionFailure, ex.Error);
            Assert.Contains("--debug-mode", ex.Message);
        }
    }

    [Fact]
    public void Run_EnclaveStopsByItself_EndsAsExitedAndCleansUp()
    {
        long freeBefore = HugePages.Free;
        var (sim, folder, supervisor, runner) = Start(debug: true, new SimulatorConfig { RunMilliseconds = 300 });
        string socket = SocketOf(folder);
        using (supervisor)
            Assert.True(runner.Join(TimeSpan.FromSeconds(20)), "the supervisor did not notice the enclave's end (POLLHUP)");
        Assert.Equal("exited", supervisor.Ending);
        Assert.False(File.Exists(socket));
        Assert.Empty(sim.Device.OpenEnclaves);
        Assert.Equal(freeBefore, HugePages.Free);
        Assert.Contains("shut itself down", File.ReadAllText(Path.ChangeExtension(socket, ".console.log")));
    }

    [Fact]
    public void Socket_AndFolder_AreOwnerOnly()
    {
        var (_, folder, supervisor, _) = Start(debug: false);
        using (supervisor)
        {
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute, File.GetUnixFileMode(folder));
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(SocketOf(folder)));
        }
    }

    [Fact]
    public void Request_UnknownCommand_IsAnsweredWithE14()
    {
        var (_, folder, supervisor, _) = Start(debug: false);
        using (supervisor)
        {
            using var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            socket.Connect(new UnixDomainSocketEndPoint(SocketOf(folder)));
            socket.Send("{\"Command\":\"Reboot\"}\n"u8);
            using var stream = new NetworkStream(socket);
            string answer = new StreamReader(stream).ReadLine()!;
            Assert.Contains("\"Ok\":false", answer);
            Assert.Contains("\"Error\":14", answer);
            Assert.Contains("Reboot", answer);
        }
    }

    [Fact]
    public void Describe_StaleSocket_IsE39AndTheSocketIsRemoved()
    {
        string folder = TestEnvironment.TemporaryFolder("stale");
        string path = EnclaveDirectory.SocketPath(folder, 0x2a);
        using (var dead = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified))
        {
            // Bound, never listening: a dead supervisor's file. Renamed before closing, because .NET unlinks what it bound.
            dead.Bind(new UnixDomainSocketEndPoint(path + ".bound"));
            File.Move(path + ".bound", path);
        }

        Assert.True(File.Exists(path));
        var ex = Assert.Throws<EnclaveException>(() => EnclaveClient.Describe(path));
        Assert.Equal(LaunchError.EnclaveProcessConnectionFailure, ex.Error);
        Assert.Contains("the stale socket was removed", ex.Message);
        Assert.False(File.Exists(path));
    }

    [Fact]
    public void SocketPathForId_ParsesTheSlotAfterTheLastEnc()
    {
        Assert.Equal("/x/2a.sock", EnclaveDirectory.SocketPathForId("/x", "i-0123456789abcdef0-enc2a"));
        Assert.Equal("/x/1.sock", EnclaveDirectory.SocketPathForId("/x", "i-enc9-enc1"));
        Assert.Null(EnclaveDirectory.SocketPathForId("/x", "i-0123456789abcdef0"));
        Assert.Null(EnclaveDirectory.SocketPathForId("/x", "i-1-encxyz"));
    }

    private static string ReadUntil(Stream stream, string marker)
    {
        var text = new StringBuilder();
        byte[] buffer = new byte[4096];
        long deadline = Environment.TickCount64 + 15_000;
        stream.ReadTimeout = 15_000;
        while (!text.ToString().Contains(marker, StringComparison.Ordinal))
        {
            Assert.True(Environment.TickCount64 < deadline, $"no '{marker}' in the console: {text}");
            int n = stream.Read(buffer);
            Assert.True(n > 0, $"the console ended before '{marker}': {text}");
            text.Append(Encoding.UTF8.GetString(buffer, 0, n));
        }

        return text.ToString();
    }
}

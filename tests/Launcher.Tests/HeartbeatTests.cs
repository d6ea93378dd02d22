using Launcher.Simulation;
using Launcher.Vsock;

namespace Launcher.Tests;

/// <summary>
/// The enclave's boot signal (spec/launch.md §2.5): nitro-cli's timeout rule, and <see cref="Heartbeat.Await"/> /
/// <see cref="Heartbeat.Listen"/> over <see cref="SimulatedVsock"/> with a parent (CID 3) and enclaves sharing one folder.
/// </summary>
public sealed class HeartbeatTests
{
    private const ulong MiB = 1UL << 20;
    private const ulong GiB = 1UL << 30;

    private const uint ParentCid = 3;     // VMADDR_CID_PARENT (nitro-cli commands.rs)
    private const uint EnclaveCid = 16;   // the first auto-assigned CID seen in user reports (spec/launch.md §1.3)
    private const uint OtherCid = 17;
    private const uint Port = 9000;       // ENCLAVE_READY_VSOCK_PORT (nitro-cli eif_loader)
    private const byte HeartbeatByte = 0xB7; // HEART_BEAT (nitro-cli eif_loader; bootstrap init.c)

    // errno.h
    private const int EADDRINUSE = 98;
    private const int EADDRNOTAVAIL = 99;

    // --- Timeout ------------------------------------------------------------------------------------------------

    [Theory]
    // source: spec/launch.md §2.5: ceil(eif / 6 GiB) × 90 s + ceil(memory / 100 GiB) × 90 s (nitro-cli TIMEOUT_MINUTE_MS = 90,000)
    [InlineData(1 * MiB, 512 * MiB, 180)]
    [InlineData(7 * GiB, 512 * MiB, 270)]
    [InlineData(1 * MiB, 150 * GiB, 270)]
    [InlineData(6 * GiB, 100 * GiB, 180)]          // exact multiples do not start a new step
    [InlineData(6 * GiB + 1, 100 * GiB + 1, 360)]  // one byte over starts one
    [InlineData(13 * GiB, 201 * GiB, 540)]
    [InlineData(0, 0, 180)]                        // at least one step each
    // source: nitro-cli resource_manager.rs test_timeout_calculation (EIF part: 2 GiB → 1, 6 GiB → 1, 10 GiB → 2 steps)
    [InlineData(2 * GiB, 1 * GiB, 180)]
    [InlineData(10 * GiB, 1 * GiB, 270)]
    public void Timeout_EifAndMemorySizes_FollowsNitroCliRule(ulong eifBytes, ulong memoryBytes, int expectedSeconds)
    {
        Assert.Equal(TimeSpan.FromSeconds(expectedSeconds), Heartbeat.Timeout(eifBytes, memoryBytes));
    }

    // --- Await --------------------------------------------------------------------------------------------------

    [Fact]
    public void Await_EnclaveSendsTheHeartbeat_EchoesItBack()
    {
        using var vsock = new Sockets();
        using IVsockListener listener = vsock.Parent.Listen(new VsockAddress(ParentCid, Port));
        using var client = new Client(vsock.Enclave, HeartbeatByte);
        Heartbeat.Await(listener, EnclaveCid, TimeSpan.FromSeconds(20));
        Assert.Equal(HeartbeatByte, client.Echo());
    }

    [Fact]
    public void Await_WrongByte_ThrowsBootFailureNamingTheByte()
    {
        using var vsock = new Sockets();
        using IVsockListener listener = vsock.Parent.Listen(new VsockAddress(ParentCid, Port));
        using var client = new Client(vsock.Enclave, 0x42);
        EnclaveException ex = Assert.Throws<EnclaveException>(() => Heartbeat.Await(listener, EnclaveCid, TimeSpan.FromSeconds(20)));
        Assert.Equal(LaunchError.EnclaveBootFailure, ex.Error); // E36
        Assert.Contains("sent 0x42", ex.Message);
        Assert.Contains("0xB7", ex.Message);
        Assert.Equal(-1, client.Echo());   // closed without an echo
    }

    [Fact]
    public void Await_ClosedWithoutAByte_ThrowsBootFailure()
    {
        using var vsock = new Sockets();
        using IVsockListener listener = vsock.Parent.Listen(new VsockAddress(ParentCid, Port));
        using (vsock.Enclave.Connect(new VsockAddress(ParentCid, Port), TimeSpan.FromSeconds(5)))
        {
        }

        EnclaveException ex = Assert.Throws<EnclaveException>(() => Heartbeat.Await(listener, EnclaveCid, TimeSpan.FromSeconds(20)));
        Assert.Equal(LaunchError.EnclaveBootFailure, ex.Error);
        Assert.Contains("closed the connection without a byte", ex.Message);
    }

    [Fact]
    public void Await_NoConnectionWithinTheTimeout_ThrowsVsockTimeoutError()
    {
        using var vsock = new Sockets();
        using IVsockListener listener = vsock.Parent.Listen(new VsockAddress(ParentCid, Port));
        long start = Environment.TickCount64;
        EnclaveException ex = Assert.Throws<EnclaveException>(() => Heartbeat.Await(listener, EnclaveCid, TimeSpan.FromMilliseconds(400)));
        Assert.InRange(Environment.TickCount64 - start, 350, 10_000);
        Assert.Equal(LaunchError.EnclaveBootFailure, ex.Error);
        // nitro-cli: "Waiting on enclave to boot failed with error VsockTimeoutError" (resource_manager.rs, spec/launch.md §2.5)
        Assert.StartsWith("Waiting on enclave to boot failed with error VsockTimeoutError", ex.Message);
        Assert.Contains($"CID {EnclaveCid}", ex.Message);
    }

    [Fact]
    public void Await_ConnectionFromAnotherCid_IsIgnoredAndTheEnclaveThenSucceeds()
    {
        using var vsock = new Sockets();
        var stranger = new SimulatedVsock(vsock.Folder, OtherCid);
        using IVsockListener listener = vsock.Parent.Listen(new VsockAddress(ParentCid, Port));

        // The stranger connects first (and even sends the right byte), then the enclave.
        using VsockConnection first = stranger.Connect(new VsockAddress(ParentCid, Port), TimeSpan.FromSeconds(5));
        first.Stream.WriteByte(HeartbeatByte);
        using VsockConnection second = vsock.Enclave.Connect(new VsockAddress(ParentCid, Port), TimeSpan.FromSeconds(5));
        second.Stream.WriteByte(HeartbeatByte);

        var log = new List<string>();
        Heartbeat.Await(listener, EnclaveCid, TimeSpan.FromSeconds(20), log: log.Add);

        second.Stream.ReadTimeout = 10_000;
        Assert.Equal(HeartbeatByte, second.Stream.ReadByte());
        first.Stream.ReadTimeout = 10_000;
        Assert.Equal(-1, ReadOrEndOfStream(first.Stream));   // closed (with the byte unread: a reset), never echoed
        Assert.Equal($"ignored a heartbeat connection from CID {OtherCid} (this enclave is CID {EnclaveCid})", Assert.Single(log));
    }

    [Fact]
    public void Await_CidZero_AcceptsAnyPeer()
    {
        using var vsock = new Sockets();
        var stranger = new SimulatedVsock(vsock.Folder, OtherCid);
        using IVsockListener listener = vsock.Parent.Listen(new VsockAddress(ParentCid, Port));
        using var client = new Client(stranger, HeartbeatByte);
        Heartbeat.Await(listener, 0, TimeSpan.FromSeconds(20));
        Assert.Equal(HeartbeatByte, client.Echo());
    }

    [Fact]
    public void Await_StoppedFromTheStart_ThrowsBootFailureWellBeforeTheTimeout()
    {
        using var vsock = new Sockets();
        using IVsockListener listener = vsock.Parent.Listen(new VsockAddress(ParentCid, Port));
        long start = Environment.TickCount64;
        EnclaveException ex = Assert.Throws<EnclaveException>(() => Heartbeat.Await(listener, EnclaveCid, TimeSpan.FromSeconds(60), stopped: () => true));
        Assert.InRange(Environment.TickCount64 - start, 0, 2_000);
        Assert.Equal(LaunchError.EnclaveBootFailure, ex.Error);
        Assert.Contains("stopped before it sent its heartbeat", ex.Message);
        Assert.DoesNotContain("VsockTimeoutError", ex.Message);
    }

    [Fact]
    public void Await_StopsWhileWaiting_ThrowsBootFailureSoonAfter()
    {
        using var vsock = new Sockets();
        using IVsockListener listener = vsock.Parent.Listen(new VsockAddress(ParentCid, Port));
        int calls = 0;
        long start = Environment.TickCount64;
        EnclaveException ex = Assert.Throws<EnclaveException>(
            () => Heartbeat.Await(listener, EnclaveCid, TimeSpan.FromSeconds(60), stopped: () => ++calls >= 3));
        Assert.Equal(3, calls);
        Assert.InRange(Environment.TickCount64 - start, 0, 5_000);   // polled between short accepts, not at the timeout
        Assert.Contains("stopped", ex.Message);
    }

    // --- Listen -------------------------------------------------------------------------------------------------

    [Fact]
    public void Listen_PortFree_BindsTheAddress()
    {
        using var vsock = new Sockets();
        using IVsockListener listener = Heartbeat.Listen(vsock.Parent, new VsockAddress(ParentCid, Port), TimeSpan.FromSeconds(1));
        Assert.Equal(new VsockAddress(ParentCid, Port), listener.LocalAddress);
    }

    [Fact]
    public void Listen_PortTakenThenFreed_WaitsAndSucceeds()
    {
        // nitro-cli#516: a second launch gets EADDRINUSE on CID 3:9000 while the first waits for its heartbeat.
        using var vsock = new Sockets();
        var address = new VsockAddress(ParentCid, Port);
        IVsockListener holder = vsock.Parent.Listen(address);
        var release = new Thread(() =>
        {
            Thread.Sleep(500);
            holder.Dispose();
        });
        var log = new List<string>();
        long start = Environment.TickCount64;
        release.Start();
        using IVsockListener listener = Heartbeat.Listen(vsock.Parent, address, TimeSpan.FromSeconds(20), log.Add);
        Assert.True(release.Join(TimeSpan.FromSeconds(20)));
        Assert.InRange(Environment.TickCount64 - start, 400, 15_000);
        Assert.Equal(address, listener.LocalAddress);
        Assert.Equal($"{address} is in use (another enclave is booting); waiting for it", Assert.Single(log));
    }

    [Fact]
    public void Listen_PortStaysTaken_ThrowsBootFailureWithEaddrinuse()
    {
        using var vsock = new Sockets();
        var address = new VsockAddress(ParentCid, Port);
        using IVsockListener holder = vsock.Parent.Listen(address);
        long start = Environment.TickCount64;
        EnclaveException ex = Assert.Throws<EnclaveException>(() => Heartbeat.Listen(vsock.Parent, address, TimeSpan.FromMilliseconds(400)));
        Assert.InRange(Environment.TickCount64 - start, 350, 10_000);
        Assert.Equal(LaunchError.EnclaveBootFailure, ex.Error); // E36 (spec/launch.md §2.2: bind fail → E36)
        Assert.Equal(EADDRINUSE, ex.Errno);
        Assert.Contains(address.ToString(), ex.Message);
        Assert.Equal(LaunchError.SocketError, Assert.IsType<EnclaveException>(ex.InnerException).Error);
    }

    [Fact]
    public void Listen_CidNotLocal_ThrowsBootFailureWithoutWaiting()
    {
        using var vsock = new Sockets();
        long start = Environment.TickCount64;
        EnclaveException ex = Assert.Throws<EnclaveException>(() => Heartbeat.Listen(vsock.Parent, new VsockAddress(5, Port), TimeSpan.FromSeconds(30)));
        Assert.InRange(Environment.TickCount64 - start, 0, 5_000);
        Assert.Equal(LaunchError.EnclaveBootFailure, ex.Error);
        Assert.Equal(EADDRNOTAVAIL, ex.Errno);
    }

    /// <summary>One byte, or -1 at the end of the stream or when the peer reset it.</summary>
    private static int ReadOrEndOfStream(Stream stream)
    {
        try
        {
            return stream.ReadByte();
        }
        catch (IOException)
        {
            return -1;
        }
    }

    /// <summary>One folder of simulated vsock sockets, with the parent (CID 3) and an enclave (CID 16); deleted on dispose.</summary>
    private sealed class Sockets : IDisposable
    {
        public Sockets()
        {
            Folder = TestEnvironment.TemporaryFolder("hb");
            Parent = new SimulatedVsock(Folder, ParentCid);
            Enclave = new SimulatedVsock(Folder, EnclaveCid);
        }

        public string Folder { get; }

        public SimulatedVsock Parent { get; }

        public SimulatedVsock Enclave { get; }

        public void Dispose() => Directory.Delete(Folder, recursive: true);
    }

    /// <summary>
    /// The enclave's side on its own thread (bootstrap init.c <c>enclave_ready</c>): connect to the parent's port,
    /// write one byte, read the echo (-1 when the parent closes without one).
    /// </summary>
    private sealed class Client : IDisposable
    {
        private readonly Thread _thread;
        private int _echo = -2;
        private Exception? _failure;

        public Client(SimulatedVsock transport, byte send)
        {
            _thread = new Thread(() =>
            {
                try
                {
                    using VsockConnection connection = transport.Connect(new VsockAddress(ParentCid, Port), TimeSpan.FromSeconds(5));
                    connection.Stream.WriteByte(send);
                    connection.Stream.ReadTimeout = 15_000;
                    _echo = ReadOrEndOfStream(connection.Stream);
                }
                catch (Exception ex)
                {
                    _failure = ex;
                }
            });
            _thread.Start();
        }

        /// <summary>Waits for the client and returns what it read back.</summary>
        public int Echo()
        {
            Assert.True(_thread.Join(TimeSpan.FromSeconds(20)), "the enclave side did not finish");
            Assert.Null(_failure);
            return _echo;
        }

        public void Dispose() => _thread.Join(TimeSpan.FromSeconds(20));
    }
}

using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text.Json;
using EifTests.Shared;
using Launcher.Local;

namespace EifCli.Tests;

/// <summary>
/// Issue 8: a local enclave (the vsock-e2e test image: an echo service on vsock port 5000 and a relay on 5002 that
/// connects each connection to the parent's port 8001) reached through <c>--publish</c>, and reaching a host service
/// through <c>--forward</c>. Bulk transfers check the SHA-256 of what arrived; throughput is printed, not asserted
/// (tools/bench/vsock-bench measures it). In CI these tests never skip.
/// </summary>
[Collection(LocalBootCollection.Name)]
public sealed class LocalForwardingTests(LocalForwardingTests.Enclave enclave, ITestOutputHelper output) : IClassFixture<LocalForwardingTests.Enclave>
{
    private const long Bulk = 256L << 20;

    [Fact]
    public void Publish_256MiBEachWayThroughOneConnection_ArrivesIntact()
    {
        enclave.Require();
        var (sent, received, count, elapsed) = Transfer(enclave.EchoPort, Bulk, seed: 1);

        Assert.Equal(Bulk, count);
        Assert.Equal(Convert.ToHexString(sent), Convert.ToHexString(received));
        output.WriteLine($"publish → vsock echo: {Bulk >> 20} MiB each way in {elapsed.TotalSeconds:0.0} s = {Rate(Bulk, elapsed)} each way ({enclave.Accelerator})");
    }

    [Fact]
    public void PublishThenForward_RelayThroughTheEnclave_ArrivesIntact()
    {
        enclave.Require();
        // host → TCP → --publish → vsock 5002 → the enclave's relay → vsock 3:8001 → --forward → the host's echo
        // server, and back the same way: every byte crosses the virtio-vsock device four times.
        const long size = 64L << 20;
        var (sent, received, count, elapsed) = Transfer(enclave.RelayPort, size, seed: 2);

        Assert.Equal(size, count);
        Assert.Equal(Convert.ToHexString(sent), Convert.ToHexString(received));
        Assert.True(enclave.HostEcho.Served > 0, "the host's echo server saw no connection: --forward did not reach it");
        output.WriteLine($"publish → relay → forward → host echo: {size >> 20} MiB each way in {elapsed.TotalSeconds:0.0} s = {Rate(size, elapsed)}");
    }

    [Fact]
    public async Task Publish_100ConcurrentShortConnections_EachEchoesItsOwnPayload()
    {
        enclave.Require();
        var stopwatch = Stopwatch.StartNew();
        var failures = new List<string>();
        await Task.WhenAll(Enumerable.Range(0, 100).Select(i => Task.Run(async () =>
        {
            byte[] payload = new byte[1024 + (i * 331 % 60_000)];
            new Random(1000 + i).NextBytes(payload);
            try
            {
                using var client = Connect(enclave.EchoPort);
                var reader = Task.Run(() => ReadAll(client));
                await client.SendAsync(payload);
                client.Shutdown(SocketShutdown.Send);
                byte[] echoed = await reader.WaitAsync(TimeSpan.FromSeconds(60));
                if (!echoed.AsSpan().SequenceEqual(payload))
                {
                    lock (failures)
                        failures.Add($"connection {i}: sent {payload.Length} bytes, got {echoed.Length} back, not the same");
                }
            }
            catch (Exception ex) when (ex is SocketException or IOException or TimeoutException)
            {
                lock (failures)
                    failures.Add($"connection {i}: {ex.Message}");
            }
        })));

        Assert.Empty(failures);
        output.WriteLine($"100 concurrent connections echoed in {stopwatch.Elapsed.TotalSeconds:0.0} s");
    }

    [Fact]
    public async Task KillingTheHostPeerMidTransfer_ResetsOnlyThatConnection()
    {
        enclave.Require();
        const long size = 32L << 20;
        // A second transfer runs throughout; it must finish intact.
        var other = Task.Run(() => Transfer(enclave.EchoPort, size, seed: 3));

        using (var victim = Connect(enclave.EchoPort))
        {
            byte[] chunk = new byte[64 << 10];
            new Random(4).NextBytes(chunk);
            long echoed = 0;
            var reader = Task.Run(() =>
            {
                byte[] buffer = new byte[64 << 10];
                try
                {
                    int n;
                    while ((n = victim.Receive(buffer)) > 0)
                        Interlocked.Add(ref echoed, n);
                }
                catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
                {
                }
            });
            for (int i = 0; i < 64 && Interlocked.Read(ref echoed) < (4 << 20); i++)
                victim.Send(chunk);
            WaitUntil(() => Interlocked.Read(ref echoed) > (1 << 20), "no echo on the victim connection");

            // The host-side peer dies: its connection ends with a reset (linger 0), not a FIN.
            victim.LingerState = new LingerOption(true, 0);
            victim.Close();
            await reader.WaitAsync(TimeSpan.FromSeconds(5));
        }

        var (sent, received, count, _) = await other.WaitAsync(TimeSpan.FromSeconds(120));
        Assert.Equal(size, count);
        Assert.Equal(Convert.ToHexString(sent), Convert.ToHexString(received));

        // The enclave and its services go on: a new connection echoes.
        var (sentAfter, receivedAfter, countAfter, _) = Transfer(enclave.EchoPort, 1 << 20, seed: 5);
        Assert.Equal(1 << 20, countAfter);
        Assert.Equal(sentAfter, receivedAfter);
        WaitUntil(() => enclave.Forwarding("ActiveConnections") == 0, "connections are still spliced after their peers went away");
    }

    [Fact]
    public async Task KillingTheForwardTargetMidTransfer_ResetsOnlyThatConnection()
    {
        enclave.Require();
        int before = enclave.HostEcho.Served;
        using var relayed = Connect(enclave.RelayPort);
        byte[] chunk = new byte[64 << 10];
        long echoed = 0;
        var reader = Task.Run(() =>
        {
            byte[] buffer = new byte[64 << 10];
            try
            {
                int n;
                while ((n = relayed.Receive(buffer)) > 0)
                    Interlocked.Add(ref echoed, n);
                return "end of stream";
            }
            catch (SocketException ex)
            {
                return ex.SocketErrorCode.ToString();
            }
        });
        var writer = Task.Run(() =>
        {
            try
            {
                for (int i = 0; i < 4096; i++)
                    relayed.Send(chunk);
            }
            catch (SocketException)
            {
                // The relay went away under the writer: expected.
            }
        });
        WaitUntil(() => Interlocked.Read(ref echoed) > (1 << 20), "no echo through the relay");
        WaitUntil(() => enclave.HostEcho.Served > before, "the host echo server has not seen the relay's connection");

        // The service behind --forward dies mid-transfer.
        enclave.HostEcho.ResetAll();

        string ending = await reader.WaitAsync(TimeSpan.FromSeconds(30));
        await writer.WaitAsync(TimeSpan.FromSeconds(30));
        output.WriteLine($"after the target's reset the client saw: {ending}, after {Interlocked.Read(ref echoed) >> 10} KiB echoed");

        // Everything else goes on.
        var (sent, received, count, _) = Transfer(enclave.RelayPort, 1 << 20, seed: 6);
        Assert.Equal(1 << 20, count);
        Assert.Equal(sent, received);
    }

    [Fact]
    public async Task SlowReader_TheLauncherBuffersABoundedAmount()
    {
        enclave.Require();
        long rssBefore = enclave.KeeperRss();
        using var client = Connect(enclave.EchoPort);
        client.SendTimeout = 0;
        byte[] chunk = new byte[256 << 10];
        long written = 0;
        // Write without reading: the enclave's echo blocks on its writes, the vsock credit runs out, the launcher
        // stops reading the TCP socket, and the TCP window closes. The writer must stall.
        var writer = Task.Run(() =>
        {
            try
            {
                for (int i = 0; i < 1024; i++)
                {
                    client.Send(chunk);
                    Interlocked.Add(ref written, chunk.Length);
                }
            }
            catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
            {
            }
        });

        long last = -1;
        for (int i = 0; i < 60 && Interlocked.Read(ref written) != last; i++)
        {
            last = Interlocked.Read(ref written);
            Thread.Sleep(1000);
        }

        long stalledAt = Interlocked.Read(ref written);
        long rssStalled = enclave.KeeperRss();
        output.WriteLine($"writer stalled after {stalledAt >> 20} MiB; keeper RSS {rssBefore >> 20} MiB → {rssStalled >> 20} MiB");
        Assert.False(writer.IsCompleted, $"the writer pushed all {1024 * chunk.Length >> 20} MiB into a connection nobody reads");
        Assert.True(stalledAt < (64L << 20), $"{stalledAt >> 20} MiB were taken in before the writer stalled");
        Assert.True(rssStalled - rssBefore < (48L << 20), $"the keeper grew by {(rssStalled - rssBefore) >> 20} MiB holding a stalled connection");

        // Closing with unread data resets the connection; the writer ends.
        client.Shutdown(SocketShutdown.Receive);
        client.Close();
        await writer.WaitAsync(TimeSpan.FromSeconds(10));
    }

    [Fact]
    public void Publish_ToAPortNothingListensOn_ResetsTheTcpConnection()
    {
        enclave.Require();
        using var client = Connect(enclave.DeadPort);
        client.ReceiveTimeout = 20_000;
        byte[] buffer = new byte[16];
        int n;
        try
        {
            // The reset may already be there when this sends.
            client.Send("anyone?"u8.ToArray());
            n = client.Receive(buffer);
        }
        catch (SocketException ex) when (ex.SocketErrorCode == SocketError.ConnectionReset)
        {
            n = -1;
        }

        Assert.True(n <= 0, $"got {n} bytes from a vsock port nobody listens on");
    }

    [Fact]
    public void ForwardToUnixSocket_RelaysAndAnUnreachableTargetResetsOnlyItsConnection()
    {
        enclave.Require();
        string folder = Path.Join("/tmp", $"eif-fwd-{Guid.NewGuid():N}"[..20]);
        Directory.CreateDirectory(folder);
        string socketPath = Path.Join(folder, "echo.sock");
        var env = new Dictionary<string, string> { ["EIF_ENCLAVES_DIR"] = Path.Join(folder, "enclaves") };
        using var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        listener.Bind(new UnixDomainSocketEndPoint(socketPath));
        listener.Listen(16);
        var server = new Thread(() =>
        {
            try
            {
                using Socket peer = listener.Accept();
                byte[] buffer = new byte[64 << 10];
                int n;
                while ((n = peer.Receive(buffer)) > 0)
                    peer.Send(buffer, 0, n, SocketFlags.None);
                peer.Shutdown(SocketShutdown.Send);
            }
            catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
            {
            }
        }) { IsBackground = true };
        server.Start();
        int relay = Enclave.FreePort();
        try
        {
            var run = EnclaveVerbTests.Eif(env, "run-enclave", "--local", "--eif-path", enclave.EifPath, "--memory", "512", "--accel", enclave.Accelerator, "--debug-mode",
                "--publish", $"{relay}:5002", "--forward", $"8001=unix:{socketPath}");
            Assert.True(run.Code == 0, run.Stderr);
            Enclave.WaitForServices(env);

            var (sent, received, count, _) = Transfer(relay, 4 << 20, seed: 7);
            Assert.Equal(4 << 20, count);
            Assert.Equal(sent, received);

            // The target goes away: a relayed connection now ends at once (the launcher resets the enclave's
            // connection to CID 3, so the relay closes), and the enclave stays up.
            listener.Dispose();
            File.Delete(socketPath);
            using var client = Connect(relay);
            client.ReceiveTimeout = 30_000;
            int n;
            try
            {
                client.Send("x"u8.ToArray());
                n = client.Receive(new byte[16]);
            }
            catch (SocketException ex) when (ex.SocketErrorCode == SocketError.ConnectionReset)
            {
                n = -1;
            }

            Assert.True(n <= 0, $"got {n} bytes through a forward whose target is gone");
            var describe = EnclaveVerbTests.Eif(env, "describe-enclaves");
            Assert.Equal("RUNNING", Assert.Single(CliHarness.Json(describe.Stdout).EnumerateArray().ToArray()).GetProperty("State").GetString());
        }
        finally
        {
            EnclaveVerbTests.Eif(env, "terminate-enclave", "--all");
            Directory.Delete(folder, recursive: true);
        }
    }

    [Fact]
    public void TerminatingTheEnclave_EndsItsConnectionsAndListeners()
    {
        enclave.Require();
        string folder = Path.Join("/tmp", $"eif-fwd-{Guid.NewGuid():N}"[..20]);
        var env = new Dictionary<string, string> { ["EIF_ENCLAVES_DIR"] = Path.Join(folder, "enclaves") };
        int echo = Enclave.FreePort();
        try
        {
            var run = EnclaveVerbTests.Eif(env, "run-enclave", "--local", "--eif-path", enclave.EifPath, "--memory", "512", "--accel", enclave.Accelerator, "--debug-mode",
                "--publish", $"{echo}:5000");
            Assert.True(run.Code == 0, run.Stderr);
            int keeper = CliHarness.Json(run.Stdout).GetProperty("ProcessID").GetInt32();
            Enclave.WaitForServices(env);
            using var client = Connect(echo);
            client.ReceiveTimeout = 30_000;
            client.Send(new byte[64 << 10]);
            byte[] buffer = new byte[64 << 10];
            Assert.True(client.Receive(buffer) > 0, "no echo before the terminate");

            var terminate = EnclaveVerbTests.Eif(env, "terminate-enclave", "--all");
            Assert.True(terminate.Code == 0, terminate.Stderr);

            // The open connection ends (reset or end of stream) instead of hanging, and nothing listens any more.
            int n;
            try
            {
                while ((n = client.Receive(buffer)) > 0)
                {
                }
            }
            catch (SocketException ex) when (ex.SocketErrorCode == SocketError.ConnectionReset)
            {
                n = -1;
            }

            Assert.True(n <= 0);
            WaitUntil(() => !Directory.Exists($"/proc/{keeper}"), $"the keeper {keeper} still runs after terminate-enclave");
            var refused = Assert.Throws<SocketException>(() => Connect(echo));
            Assert.Equal(SocketError.ConnectionRefused, refused.SocketErrorCode);
        }
        finally
        {
            EnclaveVerbTests.Eif(env, "terminate-enclave", "--all");
            Directory.Delete(folder, recursive: true);
        }
    }

    private static (byte[] Sent, byte[] Received, long Count, TimeSpan Elapsed) Transfer(int port, long size, int seed)
    {
        using var client = Connect(port);
        var stopwatch = Stopwatch.StartNew();
        var receiver = Task.Run(() =>
        {
            using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
            byte[] buffer = new byte[256 << 10];
            long count = 0;
            int n;
            while ((n = client.Receive(buffer)) > 0)
            {
                sha.AppendData(buffer, 0, n);
                count += n;
            }

            return (sha.GetHashAndReset(), count);
        });
        using var sent = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        var random = new Random(seed);
        byte[] chunk = new byte[256 << 10];
        for (long left = size; left > 0;)
        {
            int n = (int)Math.Min(chunk.Length, left);
            random.NextBytes(chunk.AsSpan(0, n));
            sent.AppendData(chunk, 0, n);
            client.Send(chunk, 0, n, SocketFlags.None);
            left -= n;
        }

        client.Shutdown(SocketShutdown.Send);
        var (received, total) = receiver.GetAwaiter().GetResult();
        return (sent.GetHashAndReset(), received, total, stopwatch.Elapsed);
    }

    private static Socket Connect(int port)
    {
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        socket.Connect(IPAddress.Loopback, port);
        return socket;
    }

    private static byte[] ReadAll(Socket socket)
    {
        var output = new MemoryStream();
        byte[] buffer = new byte[64 << 10];
        int n;
        while ((n = socket.Receive(buffer)) > 0)
            output.Write(buffer, 0, n);
        return output.ToArray();
    }

    private static string Rate(long bytes, TimeSpan elapsed) => $"{bytes / elapsed.TotalSeconds / (1 << 20):0.0} MiB/s";

    private static void WaitUntil(Func<bool> condition, string message)
    {
        long deadline = Environment.TickCount64 + 30_000;
        while (!condition())
        {
            Assert.True(Environment.TickCount64 < deadline, message);
            Thread.Sleep(50);
        }
    }

    /// <summary>
    /// One local enclave of the vsock-e2e image for the whole class, with a host echo server behind --forward:
    /// --publish EchoPort:5000, RelayPort:5002 and DeadPort:5999, --forward 8001=tcp:127.0.0.1:(the echo server).
    /// </summary>
    public sealed class Enclave : IDisposable
    {
        private readonly string? _skip;
        private readonly string _folder;
        private readonly Dictionary<string, string> _env;

        public Enclave()
        {
            _folder = Path.Join("/tmp", $"eif-fwd-{Guid.NewGuid():N}"[..20]);
            Directory.CreateDirectory(_folder);
            _env = new Dictionary<string, string> { ["EIF_ENCLAVES_DIR"] = Path.Join(_folder, "enclaves") };
            HostEcho = new EchoServer();
            Accelerator = Environment.GetEnvironmentVariable("EIF_TEST_ACCEL") ?? "auto";
            string image = Path.Combine(TestImages.RepositoryRoot, ".build", "test-images", "vsock-e2e", "docker-archive.tar");
            if (QemuInstallation.Find() is null)
            {
                _skip = $"no QEMU with the nitro-enclave machine: run tools/qemu/build (tools/test does); {QemuInstallation.Search().Describe()}";
                return;
            }

            if (!File.Exists(image))
            {
                _skip = "test image 'vsock-e2e' is not built: run tools/test-images (tools/test does)";
                return;
            }

            var install = CliHarness.Run("runtime", "install");
            Assert.True(install.Code == 0, install.Stderr);
            string eif = Path.Join(_folder, "vsock-e2e.eif");
            var build = EnclaveVerbTests.Eif(_env, "build-enclave", "--image", $"docker-archive:{image}", "--output-file", eif, "--quiet");
            Assert.True(build.Code == 0, build.Stderr);
            EifPath = eif;

            EchoPort = FreePort();
            RelayPort = FreePort();
            DeadPort = FreePort();
            var run = EnclaveVerbTests.Eif(_env, "run-enclave", "--local", "--eif-path", eif, "--memory", "512", "--accel", Accelerator, "--debug-mode",
                "--publish", $"127.0.0.1:{EchoPort}:5000", "--publish", $"{RelayPort}:5002", "--publish", $"{DeadPort}:5999",
                "--forward", $"8001=tcp:127.0.0.1:{HostEcho.Port}");
            Assert.True(run.Code == 0, run.Stderr);
            KeeperPid = CliHarness.Json(run.Stdout).GetProperty("ProcessID").GetInt32();
            WaitForServices(_env);
        }

        /// <summary>The vsock-e2e EIF.</summary>
        public string EifPath { get; } = string.Empty;

        /// <summary>The services start after the heartbeat: waits for both listening lines on the console.</summary>
        internal static void WaitForServices(IReadOnlyDictionary<string, string> env)
        {
            long deadline = Environment.TickCount64 + 60_000;
            string console = string.Empty;
            while (Environment.TickCount64 < deadline)
            {
                console = EnclaveVerbTests.Eif(env, "console", "--enclave-name", "vsock-e2e", "--disconnect-timeout", "1").Stdout;
                if (console.Contains("listening on vsock:5000", StringComparison.Ordinal) && console.Contains("listening on vsock:5002", StringComparison.Ordinal))
                    return;
            }

            Assert.Fail($"the enclave's services did not start within 60 s; console:\n{console}");
        }

        public EchoServer HostEcho { get; }

        public string Accelerator { get; }

        public int EchoPort { get; }

        public int RelayPort { get; }

        public int DeadPort { get; }

        public int KeeperPid { get; }

        public void Require()
        {
            if (_skip is null)
                return;
            if (Environment.GetEnvironmentVariable("CI") == "true")
                Assert.Fail($"CI must provide this: {_skip}");
            Assert.Skip(_skip);
        }

        /// <summary>The keeper process's resident memory in bytes (/proc/PID/status VmRSS).</summary>
        public long KeeperRss()
        {
            foreach (string line in File.ReadLines($"/proc/{KeeperPid}/status"))
            {
                if (line.StartsWith("VmRSS:", StringComparison.Ordinal))
                    return long.Parse(line["VmRSS:".Length..].Trim().Split(' ')[0], System.Globalization.CultureInfo.InvariantCulture) * 1024;
            }

            throw new InvalidOperationException($"no VmRSS for {KeeperPid}");
        }

        /// <summary>A number from describe-enclaves' "Forwarding" object of this enclave.</summary>
        public long Forwarding(string field)
        {
            var describe = EnclaveVerbTests.Eif(_env, "describe-enclaves");
            JsonElement enclave = Assert.Single(CliHarness.Json(describe.Stdout).EnumerateArray().ToArray());
            return enclave.GetProperty("Forwarding").GetProperty(field).GetInt64();
        }

        public void Dispose()
        {
            if (_skip is null)
            {
                var terminate = EnclaveVerbTests.Eif(_env, "terminate-enclave", "--all");
                Assert.True(terminate.Code == 0, terminate.Stderr);
            }

            HostEcho.Dispose();
            try
            {
                Directory.Delete(_folder, recursive: true);
            }
            catch (IOException)
            {
            }
        }

        internal static int FreePort()
        {
            using var probe = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            probe.Bind(new IPEndPoint(IPAddress.Loopback, 0));
            return ((IPEndPoint)probe.LocalEndPoint!).Port;
        }
    }

    /// <summary>A TCP echo server on 127.0.0.1 (the host service behind --forward) whose connections can be reset at will.</summary>
    public sealed class EchoServer : IDisposable
    {
        private readonly Socket _listener = new(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        private readonly List<Socket> _open = [];
        private int _served;

        public EchoServer()
        {
            _listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
            _listener.Listen(256);
            Port = ((IPEndPoint)_listener.LocalEndPoint!).Port;
            new Thread(Accept) { IsBackground = true, Name = "host echo accept" }.Start();
        }

        public int Port { get; }

        public int Served => Volatile.Read(ref _served);

        /// <summary>Resets every open connection (the service crashed).</summary>
        public void ResetAll()
        {
            lock (_open)
            {
                foreach (Socket socket in _open)
                {
                    socket.LingerState = new LingerOption(true, 0);
                    socket.Close();
                }

                _open.Clear();
            }
        }

        public void Dispose()
        {
            _listener.Dispose();
            ResetAll();
        }

        private void Accept()
        {
            while (true)
            {
                Socket socket;
                try
                {
                    socket = _listener.Accept();
                }
                catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
                {
                    return;
                }

                Interlocked.Increment(ref _served);
                lock (_open)
                    _open.Add(socket);
                new Thread(() => Echo(socket)) { IsBackground = true, Name = "host echo" }.Start();
            }
        }

        private void Echo(Socket socket)
        {
            byte[] buffer = new byte[64 << 10];
            try
            {
                int n;
                while ((n = socket.Receive(buffer)) > 0)
                    socket.Send(buffer, 0, n, SocketFlags.None);
                socket.Shutdown(SocketShutdown.Send);
            }
            catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
            {
            }

            lock (_open)
            {
                if (_open.Remove(socket))
                    socket.Dispose();
            }
        }
    }
}

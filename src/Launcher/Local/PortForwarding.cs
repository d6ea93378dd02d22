using System.Globalization;
using System.Net;
using System.Net.Sockets;
using Launcher.Interop;
using Launcher.Vsock;

namespace Launcher.Local;

/// <summary>
/// <c>--forward VSOCKPORT=tcp:HOST:PORT|unix:PATH</c>: the enclave connects to the parent (CID 3) on VSOCKPORT, and the
/// launcher connects to the host address and splices the two, as vsock-proxy does for KMS on a parent instance.
/// </summary>
/// <param name="VsockPort">The port the enclave connects to on CID 3.</param>
/// <param name="Target">Where the launcher connects: an <see cref="IPEndPoint"/>, a <see cref="DnsEndPoint"/> or a <see cref="UnixDomainSocketEndPoint"/>.</param>
/// <param name="Text">The rule as given (it travels to the enclave process in this form).</param>
public sealed record ForwardRule(uint VsockPort, EndPoint Target, string Text)
{
    /// <summary>Parses <c>VSOCKPORT=tcp:HOST:PORT</c> (HOST a name, an IPv4 address or a bracketed IPv6 one) or <c>VSOCKPORT=unix:PATH</c>.</summary>
    /// <exception cref="EnclaveException">E03 naming the rule and what is wrong with it.</exception>
    public static ForwardRule Parse(string text)
    {
        int equals = text.IndexOf('=', StringComparison.Ordinal);
        if (equals < 0)
            throw Bad(text, "expected VSOCKPORT=tcp:HOST:PORT or VSOCKPORT=unix:PATH");
        uint vsockPort = PortForwarding.VsockPort(text, text[..equals]);
        string target = text[(equals + 1)..];
        if (target.StartsWith("unix:", StringComparison.Ordinal))
        {
            string path = target["unix:".Length..];
            if (path.Length == 0)
                throw Bad(text, "unix: needs a socket path");
            // sockaddr_un.sun_path is 108 bytes with its NUL (unix(7)).
            if (System.Text.Encoding.UTF8.GetByteCount(path) > 107)
                throw Bad(text, $"the socket path is {System.Text.Encoding.UTF8.GetByteCount(path)} bytes; Unix sockets allow 107");
            return new ForwardRule(vsockPort, new UnixDomainSocketEndPoint(path), text);
        }

        if (!target.StartsWith("tcp:", StringComparison.Ordinal))
            throw Bad(text, $"'{target}' is neither tcp:HOST:PORT nor unix:PATH");
        (string host, string port) = PortForwarding.SplitHostPort(text, target["tcp:".Length..]);
        if (host.Length == 0)
            throw Bad(text, "tcp: needs a host");
        int tcpPort = PortForwarding.TcpPort(text, port, allowZero: false);
        EndPoint endPoint = IPAddress.TryParse(host, out IPAddress? address) ? new IPEndPoint(address, tcpPort) : new DnsEndPoint(host, tcpPort);
        return new ForwardRule(vsockPort, endPoint, text);
    }

    /// <summary>The target as the user wrote it (<c>tcp:HOST:PORT</c> or <c>unix:PATH</c>).</summary>
    public string TargetText => Text[(Text.IndexOf('=', StringComparison.Ordinal) + 1)..];

    private static EnclaveException Bad(string text, string why) =>
        new(LaunchError.InvalidArgument, $"--forward '{text}': {why}");
}

/// <summary>
/// <c>--publish [HOST:]HOSTPORT:VSOCKPORT</c>, as <c>docker run -p</c>: the launcher listens on the host's TCP port and
/// connects every connection into the enclave's vsock port. HOST defaults to 127.0.0.1 (not docker's 0.0.0.0: an
/// enclave under development is not something to expose to the network by accident); HOSTPORT 0 picks a free port.
/// </summary>
/// <param name="Address">The host address to listen on.</param>
/// <param name="HostPort">The TCP port (0: any free one).</param>
/// <param name="VsockPort">The enclave's vsock port.</param>
/// <param name="Text">The rule as given.</param>
public sealed record PublishRule(IPAddress Address, int HostPort, uint VsockPort, string Text)
{
    /// <summary>Parses <c>HOSTPORT:VSOCKPORT</c>, <c>HOST:HOSTPORT:VSOCKPORT</c> or <c>[IPV6]:HOSTPORT:VSOCKPORT</c>.</summary>
    /// <exception cref="EnclaveException">E03 naming the rule and what is wrong with it.</exception>
    public static PublishRule Parse(string text)
    {
        int last = text.LastIndexOf(':');
        if (last < 0)
            throw Bad(text, "expected [HOST:]HOSTPORT:VSOCKPORT");
        uint vsockPort = PortForwarding.VsockPort(text, text[(last + 1)..]);
        string rest = text[..last];
        IPAddress address = IPAddress.Loopback;
        string hostPort = rest;
        if (rest.Contains(':', StringComparison.Ordinal))
        {
            (string host, hostPort) = PortForwarding.SplitHostPort(text, rest);
            if (!IPAddress.TryParse(host, out IPAddress? parsed))
                throw Bad(text, $"'{host}' is not an IP address to listen on");
            address = parsed;
        }

        return new PublishRule(address, PortForwarding.TcpPort(text, hostPort, allowZero: true), vsockPort, text);
    }

    private static EnclaveException Bad(string text, string why) =>
        new(LaunchError.InvalidArgument, $"--publish '{text}': {why}");
}

/// <summary>
/// The port forwarding of one local enclave: a vsock listener on CID 3 per <see cref="ForwardRule"/> and a TCP listener
/// per <see cref="PublishRule"/>, each connection spliced both ways by two threads. Memory is bounded per connection:
/// a splice holds one buffer per direction, and the vsock side's credit flow control (<see cref="VsockDevice"/>) makes
/// a writer wait for a slow reader instead of buffering, so back pressure reaches the TCP peer through its window.
/// Half-close travels (a TCP FIN becomes a vsock SHUTDOWN and back), a reset travels as a reset, and only the
/// connection concerned ends. Listeners are bound by <see cref="Start"/>, before the enclave boots, so a port in use
/// is an error before QEMU starts.
/// </summary>
public sealed class PortForwarding : IDisposable
{
    /// <summary>The most connections spliced at once (each costs at most ~2 × 256 KiB of vsock buffers and 2 × 32 KiB here).</summary>
    public const int MaxConnections = 512;

    /// <summary>How long the launcher tries to reach a forward target or the enclave's port.</summary>
    public static readonly TimeSpan ConnectTimeout = TimeSpan.FromSeconds(10);

    private const int SpliceBuffer = 32 * 1024;

    private readonly IVsockTransport _vsock;
    private readonly uint _guestCid;
    private readonly IReadOnlyList<ForwardRule> _forwards;
    private readonly IReadOnlyList<PublishRule> _publishes;
    private readonly Action<string>? _log;
    private readonly List<IVsockListener> _vsockListeners = [];
    private readonly List<(PublishRule Rule, Socket Socket)> _tcpListeners = [];
    private readonly List<Thread> _acceptThreads = [];
    private readonly HashSet<Splice> _splices = [];
    private volatile bool _disposed;
    private int _pending;
    private long _total;

    /// <summary>Port forwarding between <paramref name="vsock"/> (the enclave's, host side) and the host's network.</summary>
    public PortForwarding(IVsockTransport vsock, uint guestCid, IReadOnlyList<ForwardRule> forwards, IReadOnlyList<PublishRule> publishes, Action<string>? log)
    {
        _vsock = vsock;
        _guestCid = guestCid;
        _forwards = forwards;
        _publishes = publishes;
        _log = log;
    }

    /// <summary>The TCP addresses published, with the ports actually bound (HOSTPORT 0 becomes the port chosen).</summary>
    public IReadOnlyList<(IPEndPoint Host, uint VsockPort)> Published { get; private set; } = [];

    /// <summary>The rules and counters, for describe-enclaves.</summary>
    public ForwardingStatus Status => new(
        _forwards.Select(r => r.Text).ToList(),
        Published.Select(p => $"{Describe(p.Host.Address, p.Host.Port)}:{p.VsockPort}").ToList(),
        ActiveConnections,
        TotalConnections);

    /// <summary>Connections being spliced now.</summary>
    public int ActiveConnections
    {
        get
        {
            lock (_splices)
                return _splices.Count;
        }
    }

    /// <summary>Connections spliced since the start.</summary>
    public long TotalConnections => Interlocked.Read(ref _total);

    /// <summary>Binds every listener, then starts accepting.</summary>
    /// <exception cref="EnclaveException">E11 naming the rule when a port cannot be bound (in use, not an address of this host); nothing stays bound.</exception>
    public void Start()
    {
        try
        {
            foreach (ForwardRule rule in _forwards)
            {
                if (_forwards.Count(r => r.VsockPort == rule.VsockPort) > 1)
                    throw new EnclaveException(LaunchError.InvalidArgument, $"--forward '{rule.Text}': vsock port {rule.VsockPort} is forwarded twice");
                try
                {
                var address = new VsockAddress(NitroEnclaves.ParentCid, rule.VsockPort);
                    // The device's own listeners answer the enclave's connect only once the target is reached.
                    _vsockListeners.Add(_vsock is VsockDevice.HostSide device ? device.Listen(address, 64, deferResponse: true) : _vsock.Listen(address, 64));
                }
                catch (EnclaveException ex)
                {
                    throw new EnclaveException(ex.Error, $"--forward '{rule.Text}': {ex.Message}", ex.Errno, ex);
                }
            }

            foreach (PublishRule rule in _publishes)
            {
                var socket = new Socket(rule.Address.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
                try
                {
                    socket.Bind(new IPEndPoint(rule.Address, rule.HostPort));
                    socket.Listen(128);
                }
                catch (SocketException ex)
                {
                    socket.Dispose();
                    throw new EnclaveException(LaunchError.SocketError,
                        $"--publish '{rule.Text}': cannot listen on {Describe(rule.Address, rule.HostPort)}: {ex.Message} ({ex.SocketErrorCode})", ex.ErrorCode, ex);
                }

                _tcpListeners.Add((rule, socket));
            }
        }
        catch
        {
            Dispose();
            throw;
        }

        for (int i = 0; i < _vsockListeners.Count; i++)
        {
            (IVsockListener listener, ForwardRule rule) = (_vsockListeners[i], _forwards[i]);
            _log?.Invoke($"forwarding the enclave's connections to vsock port {rule.VsockPort} (CID 3) to {rule.TargetText}");
            StartThread($"forward {rule.VsockPort} accept", () => AcceptForward(listener, rule));
        }

        Published = _tcpListeners.Select(l => ((IPEndPoint)l.Socket.LocalEndPoint!, l.Rule.VsockPort)).ToList();
        foreach ((PublishRule rule, Socket socket) in _tcpListeners)
        {
            var bound = (IPEndPoint)socket.LocalEndPoint!;
            _log?.Invoke($"publishing {Describe(bound.Address, bound.Port)} to the enclave's vsock port {rule.VsockPort}");
            StartThread($"publish {bound.Port} accept", () => AcceptPublish(socket, rule));
        }
    }

    /// <summary>Closes the listeners and resets every connection still spliced.</summary>
    public void Dispose()
    {
        _disposed = true;
        foreach (IVsockListener listener in _vsockListeners)
            listener.Dispose();
        foreach ((_, Socket socket) in _tcpListeners)
            socket.Dispose();
        List<Splice> open;
        lock (_splices)
            open = [.. _splices];
        foreach (Splice splice in open)
            splice.Abort("the enclave stopped");
        foreach (Thread thread in _acceptThreads)
            thread.Join(TimeSpan.FromSeconds(2));
    }

    // vsock ports: the whole u32 except VMADDR_PORT_ANY (linux/vm_sockets.h: -1U).
    internal static uint VsockPort(string rule, string text)
    {
        if (!uint.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out uint port) || port == VmSockets.PortAny)
            throw new EnclaveException(LaunchError.InvalidArgument, $"'{rule}': the vsock port '{text}' is not a number from 0 to 4294967294");
        return port;
    }

    internal static int TcpPort(string rule, string text, bool allowZero)
    {
        if (!int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out int port) || port > 65535 || (port == 0 && !allowZero))
            throw new EnclaveException(LaunchError.InvalidArgument, $"'{rule}': the TCP port '{text}' is not a number from {(allowZero ? 0 : 1)} to 65535");
        return port;
    }

    // "HOST:PORT" or "[IPV6]:PORT" → (HOST, PORT).
    internal static (string Host, string Port) SplitHostPort(string rule, string text)
    {
        if (text.StartsWith('['))
        {
            int close = text.IndexOf(']', StringComparison.Ordinal);
            if (close < 0 || close + 1 >= text.Length || text[close + 1] != ':')
                throw new EnclaveException(LaunchError.InvalidArgument, $"'{rule}': '{text}' is not [IPV6]:PORT");
            return (text[1..close], text[(close + 2)..]);
        }

        int colon = text.LastIndexOf(':');
        if (colon < 0)
            throw new EnclaveException(LaunchError.InvalidArgument, $"'{rule}': '{text}' is not HOST:PORT");
        string host = text[..colon];
        if (host.Contains(':', StringComparison.Ordinal))
            throw new EnclaveException(LaunchError.InvalidArgument, $"'{rule}': write an IPv6 address in brackets ([{host}])");
        return (host, text[(colon + 1)..]);
    }

    private static string Describe(IPAddress address, int port) =>
        address.AddressFamily == AddressFamily.InterNetworkV6 ? $"[{address}]:{port}" : $"{address}:{port}";

    private void StartThread(string name, ThreadStart body)
    {
        var thread = new Thread(body) { IsBackground = true, Name = name };
        _acceptThreads.Add(thread);
        thread.Start();
    }

    // The enclave connected to CID 3 on the rule's port: connect to the target, then answer the enclave's connect and
    // splice. A target that cannot be reached resets the request, so the enclave's connect() fails (ECONNRESET), as
    // for a port nothing listens on, instead of succeeding and breaking at the first write as with vsock-proxy.
    private void AcceptForward(IVsockListener listener, ForwardRule rule)
    {
        while (!_disposed)
        {
            VsockConnection? connection;
            try
            {
                connection = listener.Accept(TimeSpan.FromMilliseconds(500));
            }
            catch (EnclaveException)
            {
                return; // closed
            }

            if (connection is null)
                continue;
            var stream = (VsockDevice.GuestStream)connection.Stream;
            if (!Admit(out string? refusal))
            {
                _log?.Invoke($"--forward {rule.Text}: {refusal}; the enclave's connection request is reset");
                stream.Abort(refusal!);
                continue;
            }

            var thread = new Thread(() => ConnectForward(stream, rule), 256 * 1024) { IsBackground = true, Name = $"forward {rule.VsockPort} connect" };
            thread.Start();
        }
    }

    private void ConnectForward(VsockDevice.GuestStream stream, ForwardRule rule)
    {
        Socket socket = rule.Target is UnixDomainSocketEndPoint
            ? new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified)
            : new Socket(SocketType.Stream, ProtocolType.Tcp); // dual mode: IPv4 and IPv6 targets, names of either
        try
        {
            using var timeout = new CancellationTokenSource(ConnectTimeout);
            socket.ConnectAsync(rule.Target, timeout.Token).AsTask().GetAwaiter().GetResult();
        }
        catch (Exception ex) when (ex is SocketException or OperationCanceledException)
        {
            string why = ex is OperationCanceledException ? $"no answer within {ConnectTimeout.TotalSeconds:0} s" : ex.Message;
            _log?.Invoke($"--forward {rule.Text}: cannot connect to {rule.TargetText}: {why}; the enclave's connection request is reset");
            socket.Dispose();
            stream.Abort($"{rule.TargetText} cannot be reached");
            Release();
            return;
        }

        if (!stream.Confirm())
        {
            // The enclave gave up waiting (Linux's vsock connect timeout is 2 s) or reset it.
            socket.Dispose();
            stream.Abort("the enclave gave up the connection");
            Release();
            return;
        }

        Run(new Splice(this, socket, stream, $"vsock 3:{rule.VsockPort} → {rule.TargetText}"));
    }

    private void AcceptPublish(Socket listener, PublishRule rule)
    {
        while (!_disposed)
        {
            Socket client;
            try
            {
                client = listener.Accept();
            }
            catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
            {
                return; // closed
            }

            if (!Admit(out string? refusal))
            {
                _log?.Invoke($"--publish {rule.Text}: {refusal}; the TCP connection is reset");
                Reset(client);
                continue;
            }

            var thread = new Thread(() => ConnectPublish(client, rule), 256 * 1024) { IsBackground = true, Name = $"publish {rule.VsockPort} connect" };
            thread.Start();
        }
    }

    private void ConnectPublish(Socket client, PublishRule rule)
    {
        VsockConnection connection;
        try
        {
            connection = _vsock.Connect(new VsockAddress(_guestCid, rule.VsockPort), ConnectTimeout);
        }
        catch (EnclaveException ex)
        {
            // Nothing listens on the port (yet): the TCP client sees a reset, as with a closed port.
            _log?.Invoke($"--publish {rule.Text}: {ex.Message}; the TCP connection is reset");
            Reset(client);
            Release();
            return;
        }

        string peer = client.RemoteEndPoint?.ToString() ?? "?";
        Run(new Splice(this, client, (VsockDevice.GuestStream)connection.Stream, $"{peer} → vsock {_guestCid}:{rule.VsockPort}"));
    }

    // Counts a connection in, or says why not.
    private bool Admit(out string? refusal)
    {
        lock (_splices)
        {
            // _pending counts connections admitted and still connecting; _splices those spliced.
            if (_disposed)
            {
                refusal = "the enclave is stopping";
                return false;
            }

            if (_splices.Count + _pending >= MaxConnections)
            {
                refusal = $"{MaxConnections} connections are open already";
                return false;
            }

            _pending++;
            refusal = null;
            return true;
        }
    }

    private void Release()
    {
        lock (_splices)
            _pending--;
    }

    private void Run(Splice splice)
    {
        lock (_splices)
        {
            _pending--;
            if (_disposed)
            {
                splice.Abort("the enclave stopped");
                return;
            }

            _splices.Add(splice);
        }

        Interlocked.Increment(ref _total);
        splice.Start();
    }

    private void Finished(Splice splice)
    {
        lock (_splices)
            _splices.Remove(splice);
    }

    // An abortive close: linger 0 makes close() send RST instead of FIN (socket(7) SO_LINGER).
    private static void Reset(Socket socket)
    {
        try
        {
            socket.LingerState = new LingerOption(true, 0);
        }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
        {
        }

        socket.Dispose();
    }

    /// <summary>
    /// One connection spliced both ways: end of stream travels as a half-close, an error or reset on either side
    /// resets the other, and the connection is released when both directions are done.
    /// </summary>
    private sealed class Splice(PortForwarding owner, Socket socket, VsockDevice.GuestStream vsock, string name)
    {
        private int _aborted;
        private int _directionsLeft = 2;

        internal void Start()
        {
            new Thread(SocketToVsock, 256 * 1024) { IsBackground = true, Name = $"{name} (up)" }.Start();
            new Thread(VsockToSocket, 256 * 1024) { IsBackground = true, Name = $"{name} (down)" }.Start();
        }

        internal void Abort(string why)
        {
            if (Interlocked.Exchange(ref _aborted, 1) != 0)
                return;
            vsock.Abort(why);
            Reset(socket);
        }

        private void SocketToVsock()
        {
            byte[] buffer = new byte[SpliceBuffer];
            try
            {
                while (true)
                {
                    int n = socket.Receive(buffer);
                    if (n == 0)
                    {
                        vsock.ShutdownWrite();
                        break;
                    }

                    vsock.Write(buffer.AsSpan(0, n));
                }
            }
            catch (Exception ex) when (ex is SocketException or IOException or ObjectDisposedException)
            {
                // A reset (or error) on either side: the other side is reset too, and only this connection ends.
                Abort(ex.Message);
            }

            Done();
        }

        private void VsockToSocket()
        {
            byte[] buffer = new byte[SpliceBuffer];
            try
            {
                while (true)
                {
                    int n = vsock.Read(buffer);
                    if (n == 0)
                    {
                        if (vsock.ResetReason is { } reset)
                            Abort(reset);
                        else
                            socket.Shutdown(SocketShutdown.Send);
                        break;
                    }

                    int sent = 0;
                    while (sent < n)
                        sent += socket.Send(buffer, sent, n - sent, SocketFlags.None);
                }
            }
            catch (Exception ex) when (ex is SocketException or IOException or ObjectDisposedException)
            {
                Abort(ex.Message);
            }

            Done();
        }

        private void Done()
        {
            if (Interlocked.Decrement(ref _directionsLeft) != 0)
                return;
            if (Volatile.Read(ref _aborted) == 0)
            {
                socket.Dispose();
                vsock.Dispose();
            }

            owner.Finished(this);
        }
    }
}

using System.Runtime.InteropServices;
using Launcher.Interop;
using Launcher.Vsock;

namespace Launcher.Local;

/// <summary>
/// The device side of a virtio-vsock device (virtio 1.2 §5.10) for one guest, on the rings a vhost-user front end
/// (QEMU) hands over: queue 0 carries packets to the guest, queue 1 packets from it. Stream sockets only. The host side
/// is this process: guest connections to the host (CID 2) or the parent (CID 3) reach listeners registered through
/// <see cref="Host"/> (an <see cref="IVsockTransport"/>, so the heartbeat code runs on it unchanged), and host code can
/// connect into the guest. Flow control is the spec's credit scheme in both directions: each connection buffers at most
/// <see cref="BufferSize"/> bytes each way, so a slow reader on either side never makes this process buffer more.
/// One thread moves packets; host streams block on their connection.
/// </summary>
internal sealed class VsockDevice : IDisposable
{
    /// <summary>Bytes buffered per connection and direction; also the buf_alloc this side advertises.</summary>
    internal const int BufferSize = 256 * 1024;

    /// <summary>How long a closed connection waits for the guest's RST before sending one (Linux VSOCK_CLOSE_TIMEOUT, 8 s).</summary>
    internal static readonly TimeSpan CloseTimeout = TimeSpan.FromSeconds(8);

    private const int RxQueue = 0;
    private const int TxQueue = 1;

    private readonly object _gate = new();
    private readonly Dictionary<(uint GuestPort, uint HostPort), GuestConnection> _connections = [];
    private readonly Dictionary<uint, Listener> _listeners = [];
    private readonly Queue<VsockHeader> _control = new();
    private readonly Action<string>? _log;
    private readonly int _wakeFd;
    private readonly Thread _thread;
    private volatile bool _stopping;
    private GuestMemory? _memory;
    private readonly byte[] _receiveBuffer = new byte[VsockHeader.Size + VsockHeader.MaxPayload];
    private readonly byte[] _sendBuffer = new byte[VsockHeader.Size + VsockHeader.MaxPayload];
    private readonly List<GuestConnection> _snapshot = []; // NextWork's and ExpireClosing's copy of the connections (data thread only)
    private uint _nextHostPort = 1024;
    private int _roundRobin;

    internal VsockDevice(ulong guestCid, Action<string>? log)
    {
        GuestCid = guestCid;
        _log = log;
        Queues = [new VirtQueue(RxQueue), new VirtQueue(TxQueue)];
        _wakeFd = Libc.EventFd(0, Libc.EFD_CLOEXEC | Libc.EFD_NONBLOCK);
        if (_wakeFd < 0)
            throw new IOException($"eventfd failed: {Marshal.GetPInvokeErrorMessage(Marshal.GetLastPInvokeError())}");
        Host = new HostSide(this);
        _thread = new Thread(Run) { IsBackground = true, Name = $"vsock device (CID {guestCid})" };
        _thread.Start();
    }

    /// <summary>The guest's CID (<c>virtio_vsock_config.guest_cid</c>).</summary>
    internal ulong GuestCid { get; }

    /// <summary>The two queues the back end serves (rx, tx); the event queue stays in QEMU.</summary>
    internal VirtQueue[] Queues { get; }

    /// <summary>The host's side of the guest's vsock.</summary>
    internal IVsockTransport Host { get; }

    /// <summary>Open connections (for tests and describe).</summary>
    internal int ConnectionCount
    {
        get
        {
            lock (_gate)
                return _connections.Count;
        }
    }

    /// <summary>Runs <paramref name="change"/> on the device state (queues, memory) under its lock, then wakes the data thread.</summary>
    internal T Configure<T>(Func<T> change)
    {
        T result;
        lock (_gate)
            result = change();
        Wake();
        return result;
    }

    /// <summary>Replaces the guest memory (the previous table is unmapped); started rings are re-resolved.</summary>
    internal void SetMemory(GuestMemory memory)
    {
        lock (_gate)
        {
            GuestMemory? old = _memory;
            _memory = memory;
            foreach (VirtQueue queue in Queues.Where(q => q.Started))
            {
                queue.Stop();
                TryStart(queue);
            }

            old?.Dispose();
        }

        Wake();
    }

    /// <summary>Starts <paramref name="queue"/> when it has what it needs (memory, addresses, a kick fd).</summary>
    internal void TryStart(VirtQueue queue)
    {
        lock (_gate)
        {
            if (!queue.Started && _memory is not null && queue.KickFd >= 0 && queue.Addresses is not null && !queue.Start(_memory))
                _log?.Invoke($"vsock: queue {queue.Index}'s ring addresses are outside guest memory");
        }

        Wake();
    }

    /// <summary>Stops a queue (GET_VRING_BASE): the device resets, every connection is reset.</summary>
    internal ushort StopQueue(int index)
    {
        lock (_gate)
        {
            VirtQueue queue = Queues[index];
            queue.Stop();
            ResetAll("the enclave's vsock device was stopped");
            return queue.LastAvail;
        }
    }

    /// <summary>Resets every connection (the guest or its device went away).</summary>
    internal void ResetAll(string why)
    {
        lock (_gate)
        {
            foreach (GuestConnection connection in _connections.Values)
                connection.MarkReset(why);
            _connections.Clear();
            _control.Clear();
        }
    }

    /// <summary>Wakes the data thread.</summary>
    internal void Wake()
    {
        ulong one = 1;
        Libc.WriteU64(_wakeFd, in one, 8);
    }

    public void Dispose()
    {
        _stopping = true;
        Wake();
        _thread.Join(TimeSpan.FromSeconds(5));
        lock (_gate)
        {
            ResetAll("the enclave stopped");
            foreach (Listener listener in _listeners.Values.ToList())
                listener.Close();
            foreach (VirtQueue queue in Queues)
            {
                queue.Stop();
                queue.CloseFds();
            }

            _memory?.Dispose();
            _memory = null;
        }

        Libc.Close(_wakeFd);
    }

    // The data thread: wait for a kick (guest added packets or buffers), a wake (host side has work) or a tick
    // (close timeouts), then move everything that can move.
    private void Run()
    {
        var fds = new Libc.PollFd[3];
        while (!_stopping)
        {
            int count = 0;
            fds[count++] = new Libc.PollFd { Fd = _wakeFd, Events = Libc.POLLIN };
            lock (_gate)
            {
                foreach (VirtQueue queue in Queues)
                {
                    if (queue.KickFd >= 0)
                        fds[count++] = new Libc.PollFd { Fd = queue.KickFd, Events = Libc.POLLIN };
                }
            }

            Libc.PollMany(fds, (nuint)count, 200);
            for (int i = 0; i < count; i++)
            {
                if ((fds[i].Revents & Libc.POLLIN) != 0)
                {
                    ulong value = 0;
                    Libc.ReadU64(fds[i].Fd, ref value, 8); // eventfds: reading resets the counter
                }
            }

            try
            {
                lock (_gate)
                {
                    ReceiveFromGuest();
                    SendToGuest();
                    ExpireClosing();
                }
            }
            catch (Exception ex) when (ex is IOException or InvalidOperationException or ArgumentException)
            {
                _log?.Invoke($"vsock: {ex.Message}");
            }
            catch (Exception ex)
            {
                // A bug here must not take the keeper down (and QEMU with it, through its parent-death signal): the
                // device stops, every connection is reset, and the log says why; the enclave keeps running.
                _log?.Invoke($"vsock: internal error, the enclave's vsock device stops: {ex}");
                lock (_gate)
                {
                    ResetAll("the vsock device failed");
                    foreach (VirtQueue queue in Queues)
                        queue.Stop();
                }

                return;
            }
        }
    }

    private void Fault(string message) => _log?.Invoke($"vsock: {message}");

    // Guest → host: every packet on the tx queue.
    private void ReceiveFromGuest()
    {
        VirtQueue tx = Queues[TxQueue];
        if (_memory is null || !tx.Ready)
            return;
        byte[] buffer = _receiveBuffer;
        bool any = false;
        while (tx.Pop(_memory, Fault) is { } chain)
        {
            any = true;
            int length = VirtQueue.Gather(chain, buffer);
            tx.PushUsed(chain.Head, 0);
            if (length < VsockHeader.Size)
            {
                Fault($"a packet of {length} bytes, shorter than its header");
                continue;
            }

            VsockHeader header = VsockHeader.Read(buffer);
            int payload = (int)Math.Min(header.Length, (uint)(length - VsockHeader.Size));
            Handle(header, buffer.AsSpan(VsockHeader.Size, payload));
        }

        if (any)
            tx.Notify();
    }

    private void Handle(VsockHeader header, ReadOnlySpan<byte> payload)
    {
        if (header.SourceCid != GuestCid)
        {
            Fault($"dropped a packet claiming to come from CID {header.SourceCid} (the guest is {GuestCid})");
            return;
        }

        var key = (header.SourcePort, header.DestinationPort);
        _connections.TryGetValue(key, out GuestConnection? connection);
        if (header.Type != VsockHeader.TypeStream)
        {
            if (header.Op != VsockOp.Reset)
                ReplyReset(header);
            return;
        }

        if (connection is null)
        {
            if (header.Op == VsockOp.Request)
                Accept(header);
            else if (header.Op != VsockOp.Reset)
                ReplyReset(header);
            return;
        }

        connection.UpdatePeerCredit(header.BufferAllocation, header.ForwardCount);
        switch (header.Op)
        {
            case VsockOp.Response:
                if (!connection.Established(out _))
                    connection.MarkEstablished();
                break;
            case VsockOp.ReadWrite:
                if (connection.HostClosed)
                    Remove(connection, sendReset: true); // data for a socket this side closed: reset, as Linux does
                else if (!connection.Deliver(payload))
                {
                    Fault($"the guest (port {header.SourcePort}) sent more than its credit; connection reset");
                    Remove(connection, sendReset: true);
                }

                break;
            case VsockOp.CreditRequest:
                connection.NeedsCreditUpdate = true;
                break;
            case VsockOp.Shutdown:
                connection.PeerShutdown(header.Flags);
                if (connection.FullyClosed)
                    Remove(connection, sendReset: true);
                break;
            case VsockOp.Reset:
                connection.MarkReset("the enclave reset the connection");
                _connections.Remove(key);
                break;
            case VsockOp.Request:
                Remove(connection, sendReset: true); // a second REQUEST on a live connection: reset it
                break;
        }
    }

    private void Accept(VsockHeader request)
    {
        bool toHost = request.DestinationCid is NitroEnclaves.HostCid or NitroEnclaves.ParentCid;
        if (!toHost || !_listeners.TryGetValue(request.DestinationPort, out Listener? listener) || !listener.HasRoom)
        {
            ReplyReset(request);
            return;
        }

        var connection = new GuestConnection(this, (uint)request.DestinationCid, request.DestinationPort, request.SourcePort);
        connection.UpdatePeerCredit(request.BufferAllocation, request.ForwardCount);
        _connections[(request.SourcePort, request.DestinationPort)] = connection;
        if (!listener.DeferResponse)
        {
            connection.MarkEstablished();
            _control.Enqueue(connection.Header(VsockOp.Response));
        }

        listener.Enqueue(connection);
    }

    private void ReplyReset(VsockHeader to) =>
        _control.Enqueue(new VsockHeader(to.DestinationCid, to.SourceCid, to.DestinationPort, to.SourcePort, 0, VsockHeader.TypeStream, VsockOp.Reset, 0, 0, 0));

    private void Remove(GuestConnection connection, bool sendReset)
    {
        if (sendReset)
            _control.Enqueue(connection.Header(VsockOp.Reset));
        connection.MarkReset("the connection was reset");
        _connections.Remove((connection.GuestPort, connection.HostPort));
    }

    // Host → guest: control packets first, then data, credit updates and shutdowns, while the guest has rx buffers.
    private void SendToGuest()
    {
        VirtQueue rx = Queues[RxQueue];
        if (_memory is null || !rx.Ready)
            return;
        byte[] packet = _sendBuffer;
        bool any = false;
        while (true)
        {
            GuestConnection? dataSource = null;
            VsockHeader header;
            if (_control.Count > 0)
            {
                header = _control.Peek();
            }
            else if (NextWork(out dataSource) is { } work)
            {
                header = work;
            }
            else
            {
                break;
            }

            DescriptorChain? chain = rx.Pop(_memory, Fault);
            if (chain is null)
                break; // no buffer: the guest kicks the rx queue when it adds some
            int room = chain.WritableLength - VsockHeader.Size;
            if (room < 0)
            {
                Fault($"an rx buffer of {chain.WritableLength} bytes, smaller than a packet header");
                rx.PushUsed(chain.Head, 0);
                any = true;
                continue;
            }

            int payload = 0;
            if (dataSource is not null && header.Op == VsockOp.ReadWrite)
            {
                payload = dataSource.TakeOutgoing(packet.AsSpan(VsockHeader.Size, Math.Min(room, VsockHeader.MaxPayload)));
                header = payload > 0 ? dataSource.Header(VsockOp.ReadWrite) with { Length = (uint)payload } : dataSource.Header(VsockOp.CreditUpdate);
            }
            else if (dataSource is null)
            {
                _control.Dequeue();
            }

            header.Write(packet);
            int written = VirtQueue.Scatter(chain, packet.AsSpan(0, VsockHeader.Size + payload));
            rx.PushUsed(chain.Head, (uint)written);
            any = true;
        }

        if (any)
            rx.Notify();
    }

    // The next packet a connection wants to send (round robin, so one busy connection does not starve the others):
    // data when it has credit, else a credit update, else its shutdown once its data is out.
    private VsockHeader? NextWork(out GuestConnection? connection)
    {
        // A snapshot in a list kept across calls: this runs once per packet, and a fresh list each time was garbage.
        List<GuestConnection> all = _snapshot;
        all.Clear();
        all.AddRange(_connections.Values);
        for (int i = 0; i < all.Count; i++)
        {
            GuestConnection candidate = all[(_roundRobin + i) % all.Count];
            VsockHeader? work = candidate.NextPacket(out bool close);
            if (close)
            {
                Remove(candidate, sendReset: true);
                connection = null;
                return _control.Count > 0 ? _control.Peek() : null;
            }

            if (work is { } header)
            {
                _roundRobin = (_roundRobin + i + 1) % Math.Max(1, all.Count);
                connection = candidate;
                if (header.Op != VsockOp.ReadWrite)
                {
                    // Not data: queue it as a control packet so the send loop treats it the same way.
                    _control.Enqueue(header);
                    connection = null;
                }

                return header;
            }
        }

        connection = null;
        return null;
    }

    private void ExpireClosing()
    {
        List<GuestConnection> all = _snapshot;
        all.Clear();
        all.AddRange(_connections.Values);
        foreach (GuestConnection connection in all)
        {
            if (connection.CloseExpired)
                Remove(connection, sendReset: true);
        }
    }

    private uint AllocateHostPort()
    {
        for (int attempts = 0; attempts < 64_512; attempts++)
        {
            uint port = _nextHostPort;
            _nextHostPort = _nextHostPort >= 65535 ? 1024 : _nextHostPort + 1;
            if (!_connections.Keys.Any(k => k.HostPort == port) && !_listeners.ContainsKey(port))
                return port;
        }

        throw new EnclaveException(LaunchError.SocketError, "no free vsock port on the host side");
    }

    /// <summary>The host's end of the guest's vsock: listen for the guest's connections, connect to the guest.</summary>
    internal sealed class HostSide(VsockDevice device) : IVsockTransport
    {
        public IVsockListener Listen(VsockAddress address, int backlog = 16) => Listen(address, backlog, deferResponse: false);

        /// <summary>
        /// Listens; with <paramref name="deferResponse"/> a guest's connection request is handed to Accept without an
        /// answer, and the guest's connect() waits until the host calls <see cref="GuestStream.Confirm"/> (RESPONSE) or
        /// <see cref="GuestStream.Abort"/> (RST: the guest's connect() fails), so that a forward whose target cannot be
        /// reached fails the enclave's connect instead of accepting it and resetting it later.
        /// </summary>
        internal IVsockListener Listen(VsockAddress address, int backlog, bool deferResponse)
        {
            if (address.Cid is not (NitroEnclaves.HostCid or NitroEnclaves.ParentCid or VmSockets.CidAny))
                throw KernelVsock.Failure($"bind to {address}", Libc.EADDRNOTAVAIL);
            lock (device._gate)
            {
                uint port = address.Port == VmSockets.PortAny ? device.AllocateHostPort() : address.Port;
                if (device._listeners.ContainsKey(port))
                    throw KernelVsock.Failure($"bind to {address}", Libc.EADDRINUSE);
                var listener = new Listener(device, new VsockAddress(address.Cid == VmSockets.CidAny ? NitroEnclaves.ParentCid : address.Cid, port), backlog) { DeferResponse = deferResponse };
                device._listeners[port] = listener;
                return listener;
            }
        }

        public VsockConnection Connect(VsockAddress address, TimeSpan timeout)
        {
            if (address.Cid != device.GuestCid)
                throw KernelVsock.Failure($"connect to {address}", Libc.ENETUNREACH);
            GuestConnection connection;
            lock (device._gate)
            {
                if (device._memory is null || !device.Queues[RxQueue].Ready || !device.Queues[TxQueue].Ready)
                    throw KernelVsock.Failure($"connect to {address} (the enclave's vsock driver is not up yet)", Libc.ECONNREFUSED);
                uint hostPort = device.AllocateHostPort();
                connection = new GuestConnection(device, NitroEnclaves.ParentCid, hostPort, address.Port);
                device._connections[(address.Port, hostPort)] = connection;
                device._control.Enqueue(connection.Header(VsockOp.Request));
            }

            device.Wake();
            if (!connection.WaitEstablished(timeout, out string? why))
            {
                lock (device._gate)
                {
                    if (device._connections.Remove((connection.GuestPort, connection.HostPort)))
                        device._control.Enqueue(connection.Header(VsockOp.Reset));
                }

                device.Wake();
                throw KernelVsock.Failure($"connect to {address}{(why is null ? string.Empty : $" ({why})")}", why is null ? Libc.ETIMEDOUT : Libc.ECONNREFUSED);
            }

            return new VsockConnection(new GuestStream(connection), address);
        }
    }

    /// <summary>A listening port on the host side.</summary>
    private sealed class Listener(VsockDevice device, VsockAddress local, int backlog) : IVsockListener
    {
        private readonly Queue<GuestConnection> _pending = new();
        private bool _closed;

        public VsockAddress LocalAddress { get; } = local;

        /// <summary>Connection requests are answered by the host (<see cref="GuestStream.Confirm"/>), not at once.</summary>
        internal bool DeferResponse { get; init; }

        internal bool HasRoom
        {
            get
            {
                lock (_pending)
                    return !_closed && _pending.Count < Math.Max(1, backlog);
            }
        }

        internal void Enqueue(GuestConnection connection)
        {
            lock (_pending)
            {
                _pending.Enqueue(connection);
                Monitor.PulseAll(_pending);
            }
        }

        public VsockConnection? Accept(TimeSpan timeout)
        {
            long deadline = timeout == Timeout.InfiniteTimeSpan ? long.MaxValue : Environment.TickCount64 + (long)timeout.TotalMilliseconds;
            lock (_pending)
            {
                while (_pending.Count == 0 && !_closed)
                {
                    long left = deadline - Environment.TickCount64;
                    if (left <= 0)
                        return null;
                    Monitor.Wait(_pending, (int)Math.Min(left, int.MaxValue));
                }

                if (_pending.Count == 0)
                    throw new EnclaveException(LaunchError.SocketError, $"{LocalAddress} is closed");
                GuestConnection connection = _pending.Dequeue();
                return new VsockConnection(new GuestStream(connection), new VsockAddress((uint)device.GuestCid, connection.GuestPort));
            }
        }

        internal void Close()
        {
            lock (_pending)
            {
                _closed = true;
                foreach (GuestConnection connection in _pending)
                    connection.Close();
                _pending.Clear();
                Monitor.PulseAll(_pending);
            }
        }

        public void Dispose()
        {
            lock (device._gate)
            {
                if (device._listeners.TryGetValue(LocalAddress.Port, out Listener? registered) && registered == this)
                    device._listeners.Remove(LocalAddress.Port);
            }

            Close();
            device.Wake();
        }
    }

    /// <summary>
    /// One stream connection between the host and the guest, with a bounded buffer each way and the credit counters
    /// of virtio 1.2 §5.10.6.3. Host threads block on it; the data thread moves its bytes.
    /// </summary>
    internal sealed class GuestConnection(VsockDevice device, uint hostCid, uint hostPort, uint guestPort)
    {
        private readonly ByteRing _incoming = new(BufferSize);
        private readonly ByteRing _outgoing = new(BufferSize);
        private bool _established;
        private string? _reset;
        private bool _peerSendShutdown;
        private bool _peerReceiveShutdown;
        private bool _hostWriteClosed;
        private bool _hostClosed;
        private bool _shutdownSent;
        private bool _closeShutdownSent; // the SHUTDOWN with both flags (the close's) went out
        private long _closeDeadline = long.MaxValue;
        private uint _forwardCount;
        private uint _advertisedForwardCount;
        private uint _sent;
        private uint _peerBufferAllocation;
        private uint _peerForwardCount;

        internal uint HostCid { get; } = hostCid;

        internal uint HostPort { get; } = hostPort;

        internal uint GuestPort { get; } = guestPort;

        /// <summary>The host side closed its stream.</summary>
        internal bool HostClosed
        {
            get
            {
                lock (this)
                    return _hostClosed;
            }
        }

        /// <summary>Why the guest's side reset the connection (RST, or its device went away), or null; not set by this side's own close.</summary>
        internal string? ResetReason
        {
            get
            {
                lock (this)
                    return _hostClosed ? null : _reset;
            }
        }

        /// <summary>Set when the guest asked for our credit (CREDIT_REQUEST).</summary>
        internal bool NeedsCreditUpdate { get; set; }

        /// <summary>Both sides are done: the host closed and the guest shut down both directions.</summary>
        internal bool FullyClosed
        {
            get
            {
                lock (this)
                    return _hostClosed && _peerSendShutdown && _peerReceiveShutdown;
            }
        }

        /// <summary>The host closed, its shutdown went out and the guest never answered in time.</summary>
        internal bool CloseExpired
        {
            get
            {
                lock (this)
                    return _shutdownSent && Environment.TickCount64 > _closeDeadline;
            }
        }

        internal VsockHeader Header(VsockOp op)
        {
            lock (this)
            {
                _advertisedForwardCount = _forwardCount;
                uint flags = op == VsockOp.Shutdown ? VsockHeader.ShutdownReceive | VsockHeader.ShutdownSend : 0;
                return new VsockHeader(HostCid, device.GuestCid, HostPort, GuestPort, 0, VsockHeader.TypeStream, op, flags, BufferSize, _forwardCount);
            }
        }

        internal void UpdatePeerCredit(uint bufferAllocation, uint forwardCount)
        {
            lock (this)
            {
                _peerBufferAllocation = bufferAllocation;
                _peerForwardCount = forwardCount;
                Monitor.PulseAll(this);
            }
        }

        internal bool Established(out string? reset)
        {
            lock (this)
            {
                reset = _reset;
                return _established;
            }
        }

        internal void MarkEstablished()
        {
            lock (this)
            {
                _established = true;
                Monitor.PulseAll(this);
            }
        }

        internal void MarkReset(string why)
        {
            lock (this)
            {
                _reset ??= why;
                Monitor.PulseAll(this);
            }
        }

        internal bool WaitEstablished(TimeSpan timeout, out string? why)
        {
            long deadline = Environment.TickCount64 + (long)timeout.TotalMilliseconds;
            lock (this)
            {
                while (!_established && _reset is null)
                {
                    long left = deadline - Environment.TickCount64;
                    if (left <= 0)
                        break;
                    Monitor.Wait(this, (int)Math.Min(left, int.MaxValue));
                }

                why = _reset is null ? null : "refused by the enclave";
                return _established && _reset is null;
            }
        }

        /// <summary>Data from the guest; false when it exceeds the credit this side gave.</summary>
        internal bool Deliver(ReadOnlySpan<byte> data)
        {
            lock (this)
            {
                if (data.Length > _incoming.Free)
                    return false;
                _incoming.Write(data);
                Monitor.PulseAll(this);
                return true;
            }
        }

        internal void PeerShutdown(uint flags)
        {
            lock (this)
            {
                _peerSendShutdown |= (flags & VsockHeader.ShutdownSend) != 0;
                _peerReceiveShutdown |= (flags & VsockHeader.ShutdownReceive) != 0;
                Monitor.PulseAll(this);
            }
        }

        /// <summary>The next packet for the data thread (a data packet's payload is taken later), and whether to drop the connection now.</summary>
        internal VsockHeader? NextPacket(out bool close)
        {
            lock (this)
            {
                close = _hostClosed && _peerSendShutdown && _peerReceiveShutdown;
                if (close || _reset is not null || !_established)
                    return null;
                if (_outgoing.Count > 0 && !_peerReceiveShutdown && Credit > 0)
                    return Header(VsockOp.ReadWrite);
                if (NeedsCreditUpdate || unchecked(_forwardCount - _advertisedForwardCount) >= BufferSize / 4)
                {
                    NeedsCreditUpdate = false;
                    return Header(VsockOp.CreditUpdate);
                }

                // A close after a half-close (ShutdownWrite sent SHUTDOWN with SEND only) still owes the guest a
                // SHUTDOWN with both flags and starts the close timeout, as Linux's virtio_transport_close does unless
                // both were sent already (virtio 1.2 §5.10.6.5: clean disconnect is SHUTDOWN for both directions, then
                // RST). Without it the connection stayed open until the guest happened to close.
                if (_hostWriteClosed && (!_shutdownSent || (_hostClosed && !_closeShutdownSent)) && (_outgoing.Count == 0 || _peerReceiveShutdown))
                {
                    _shutdownSent = true;
                    if (_hostClosed)
                    {
                        _closeShutdownSent = true;
                        _closeDeadline = Environment.TickCount64 + (long)CloseTimeout.TotalMilliseconds;
                    }

                    return _hostClosed ? Header(VsockOp.Shutdown) : Header(VsockOp.Shutdown) with { Flags = VsockHeader.ShutdownSend };
                }

                return null;
            }
        }

        // What the guest can still take: its buffer less what is in flight (wrapping u32 counters, §5.10.6.3).
        private uint Credit
        {
            get
            {
                uint inFlight = unchecked(_sent - _peerForwardCount); // free-running u32 counters (§5.10.6.3)
                return inFlight > _peerBufferAllocation ? 0 : _peerBufferAllocation - inFlight;
            }
        }

        internal int TakeOutgoing(Span<byte> destination)
        {
            lock (this)
            {
                int count = (int)Math.Min((uint)Math.Min(destination.Length, _outgoing.Count), Credit);
                _outgoing.Read(destination[..count]);
                _sent = unchecked(_sent + (uint)count);
                Monitor.PulseAll(this); // writers waiting for room
                return count;
            }
        }

        internal int Read(Span<byte> destination, int timeoutMilliseconds)
        {
            long deadline = timeoutMilliseconds < 0 ? long.MaxValue : Environment.TickCount64 + timeoutMilliseconds;
            int count;
            lock (this)
            {
                while (_incoming.Count == 0 && !_peerSendShutdown && _reset is null && !_hostClosed)
                {
                    long left = deadline - Environment.TickCount64;
                    if (left <= 0)
                        throw new TimeoutException($"no data from the enclave within {timeoutMilliseconds} ms");
                    Monitor.Wait(this, (int)Math.Min(left, int.MaxValue));
                }

                if (_incoming.Count == 0)
                    return 0; // end of stream: the guest shut down its sending side, reset, or we closed
                count = _incoming.Read(destination);
                _forwardCount = unchecked(_forwardCount + (uint)count);
            }

            device.Wake(); // a credit update may be due
            return count;
        }

        internal void Write(ReadOnlySpan<byte> source)
        {
            while (!source.IsEmpty)
            {
                int count;
                lock (this)
                {
                    while (_outgoing.Free == 0 && _reset is null && !_peerReceiveShutdown && !_hostClosed)
                        Monitor.Wait(this);
                    if (_reset is not null)
                        throw new IOException($"vsock connection to the enclave port {GuestPort}: {_reset}");
                    if (_peerReceiveShutdown)
                        throw new IOException($"vsock connection to the enclave port {GuestPort}: the enclave closed its receiving side");
                    if (_hostClosed || _hostWriteClosed)
                        throw new ObjectDisposedException(nameof(GuestStream));
                    count = Math.Min(source.Length, _outgoing.Free);
                    _outgoing.Write(source[..count]);
                }

                source = source[count..];
                device.Wake();
            }
        }

        internal void ShutdownWrite()
        {
            lock (this)
                _hostWriteClosed = true;
            device.Wake();
        }

        internal void Close()
        {
            lock (this)
            {
                _hostClosed = true;
                _hostWriteClosed = true;
                Monitor.PulseAll(this);
            }

            device.Wake();
        }

        /// <summary>Answers a deferred connection request (RESPONSE); false when the guest gave up or reset it meanwhile.</summary>
        internal bool Confirm()
        {
            lock (device._gate)
            {
                if (!device._connections.TryGetValue((GuestPort, HostPort), out GuestConnection? registered) || registered != this || Established(out _))
                    return false;
                MarkEstablished();
                device._control.Enqueue(Header(VsockOp.Response));
            }

            device.Wake();
            return true;
        }

        /// <summary>
        /// Ends the connection at once with a RST to the guest, dropping what is buffered either way (the host peer of
        /// a forwarded connection reset its TCP connection: the enclave sees ECONNRESET, not an orderly end).
        /// </summary>
        internal void Abort(string why)
        {
            lock (device._gate)
            {
                if (device._connections.Remove((GuestPort, HostPort)))
                    device._control.Enqueue(Header(VsockOp.Reset));
            }

            lock (this)
            {
                _hostClosed = true;
                _hostWriteClosed = true;
                _reset ??= why;
                Monitor.PulseAll(this);
            }

            device.Wake();
        }
    }

    /// <summary>The host's stream over a <see cref="GuestConnection"/>.</summary>
    internal sealed class GuestStream(GuestConnection connection) : Stream
    {
        private int _readTimeout = Timeout.Infinite;
        private bool _disposed;

        public override bool CanRead => !_disposed;

        public override bool CanWrite => !_disposed;

        public override bool CanSeek => false;

        public override bool CanTimeout => true;

        public override int ReadTimeout
        {
            get => _readTimeout;
            set => _readTimeout = value;
        }

        public override long Length => throw new NotSupportedException();

        public override long Position
        {
            get => throw new NotSupportedException();
            set => throw new NotSupportedException();
        }

        public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

        public override int Read(Span<byte> buffer) => buffer.IsEmpty ? 0 : connection.Read(buffer, _readTimeout);

        public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));

        public override void Write(ReadOnlySpan<byte> buffer) => connection.Write(buffer);

        /// <summary>Half-close: the enclave reads end of stream, this side can still read.</summary>
        public void ShutdownWrite() => connection.ShutdownWrite();

        /// <summary>Answers a connection request accepted from a deferring listener; false when the guest has given up on it.</summary>
        public bool Confirm() => connection.Confirm();

        /// <summary>After a read returned 0: why the enclave's side reset the connection, or null for an orderly end of stream.</summary>
        public string? ResetReason => connection.ResetReason;

        /// <summary>Resets the connection (the enclave's socket gets ECONNRESET); the stream is closed.</summary>
        public void Abort(string why)
        {
            _disposed = true;
            connection.Abort(why);
        }

        public override void Flush()
        {
        }

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();

        protected override void Dispose(bool disposing)
        {
            if (disposing && !_disposed)
            {
                _disposed = true;
                connection.Close();
            }

            base.Dispose(disposing);
        }
    }
}

/// <summary>A fixed-capacity byte ring (not thread-safe; its owner locks).</summary>
internal sealed class ByteRing(int capacity)
{
    private readonly byte[] _buffer = new byte[capacity];
    private int _start;

    internal int Count { get; private set; }

    internal int Free => _buffer.Length - Count;

    internal void Write(ReadOnlySpan<byte> data)
    {
        if (data.Length > Free)
            throw new InvalidOperationException("ring overflow");
        int end = (_start + Count) % _buffer.Length;
        int first = Math.Min(data.Length, _buffer.Length - end);
        data[..first].CopyTo(_buffer.AsSpan(end));
        data[first..].CopyTo(_buffer);
        Count += data.Length;
    }

    internal int Read(Span<byte> destination)
    {
        int count = Math.Min(destination.Length, Count);
        int first = Math.Min(count, _buffer.Length - _start);
        _buffer.AsSpan(_start, first).CopyTo(destination);
        _buffer.AsSpan(0, count - first).CopyTo(destination[first..]);
        _start = (_start + count) % _buffer.Length;
        Count -= count;
        return count;
    }
}

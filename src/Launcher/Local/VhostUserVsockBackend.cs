using System.Buffers.Binary;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using Launcher.Interop;
using Launcher.Vsock;

namespace Launcher.Local;

/// <summary>
/// A vhost-user back end for QEMU's <c>vhost-user-vsock</c> device, in this process (QEMU's nitro-enclave machine
/// requires one, local-boot.md §5; none is packaged in Debian). It listens on a Unix socket before QEMU starts (QEMU
/// is the client), answers the control plane (QEMU docs/interop/vhost-user.rst: features, protocol features, memory
/// table with shared-memory fds, vring number/address/base/kick/call/enable, config with the guest CID) and runs the
/// virtio-vsock data path (<see cref="VsockDevice"/>). The host's side of the guest's vsock is <see cref="Vsock"/>.
/// </summary>
public sealed class VhostUserVsockBackend : IDisposable
{
    // vhost-user.rst "Front-end message types" (VHOST_USER_*).
    private const uint GetFeatures = 1;
    private const uint SetFeatures = 2;
    private const uint SetOwner = 3;
    private const uint ResetOwner = 4;
    private const uint SetMemTable = 5;
    private const uint SetLogBase = 6;
    private const uint SetLogFd = 7;
    private const uint SetVringNum = 8;
    private const uint SetVringAddr = 9;
    private const uint SetVringBase = 10;
    private const uint GetVringBase = 11;
    private const uint SetVringKick = 12;
    private const uint SetVringCall = 13;
    private const uint SetVringErr = 14;
    private const uint GetProtocolFeatures = 15;
    private const uint SetProtocolFeatures = 16;
    private const uint GetQueueNum = 17;
    private const uint SetVringEnable = 18;
    private const uint GetConfig = 24;
    private const uint SetConfig = 25;
    private const uint GetMaxMemSlots = 36;

    private const uint FlagVersion = 0x1;       // bits 0-1: protocol version 1
    private const uint FlagReply = 0x4;         // bit 2: a reply
    private const uint FlagNeedReply = 0x8;     // bit 3: REPLY_ACK requested
    private const int HeaderSize = 12;          // u32 request, u32 flags, u32 size
    private const int MaxPayload = 4096;        // every message we accept is far smaller
    private const int MaxFds = 8;               // VHOST_MEMORY_BASELINE_NREGIONS
    private const ulong VringFdInvalid = 0x100; // SET_VRING_KICK/CALL: bit 8 set = no fd (polling)

    // Features offered: VIRTIO_F_VERSION_1 (bit 32) and VHOST_USER_F_PROTOCOL_FEATURES (bit 30); no indirect
    // descriptors, no event index, stream sockets only. Protocol features: CONFIG (bit 9), for the guest CID.
    private const ulong OfferedFeatures = (1UL << 32) | (1UL << 30);
    private const ulong ProtocolFeaturesFlag = 1UL << 30;
    private const ulong OfferedProtocolFeatures = 1UL << 9;

    private readonly string _socketPath;
    private readonly Action<string>? _log;
    private readonly VsockDevice _device;
    private Socket? _listener;
    private Socket? _frontEnd;
    private Thread? _thread;
    private ulong _features;
    private volatile bool _disposed;

    /// <summary>Creates a back end for a guest with CID <paramref name="guestCid"/> that will listen on <paramref name="socketPath"/>.</summary>
    public VhostUserVsockBackend(string socketPath, ulong guestCid, Action<string>? log = null)
    {
        _socketPath = socketPath;
        _log = log;
        _device = new VsockDevice(guestCid, log);
    }

    /// <summary>The socket QEMU connects to (<c>-chardev socket,path=…</c>).</summary>
    public string SocketPath => _socketPath;

    /// <summary>The guest's CID.</summary>
    public ulong GuestCid => _device.GuestCid;

    /// <summary>The host's side of the guest's vsock: listen for its connections (the heartbeat), connect into it.</summary>
    public IVsockTransport Vsock => _device.Host;

    /// <summary>True once QEMU has connected.</summary>
    public bool FrontEndConnected => _frontEnd is not null;

    /// <summary>True while both data rings run (the guest's vsock driver is up).</summary>
    public bool DataPathReady => _device.Queues.All(q => q.Ready);

    /// <summary>Open vsock connections.</summary>
    public int Connections => _device.ConnectionCount;

    /// <summary>Listens (so that QEMU can be started) and serves the front end on a thread.</summary>
    /// <exception cref="EnclaveException">E11 when the socket cannot be bound.</exception>
    public void Start()
    {
        if (File.Exists(_socketPath))
            File.Delete(_socketPath);
        var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            listener.Bind(new UnixDomainSocketEndPoint(_socketPath));
            File.SetUnixFileMode(_socketPath, UnixFileMode.UserRead | UnixFileMode.UserWrite);
            listener.Listen(1);
        }
        catch (SocketException ex)
        {
            listener.Dispose();
            throw new EnclaveException(LaunchError.SocketError, $"vhost-user: cannot listen on {_socketPath}: {ex.Message}", (int)ex.SocketErrorCode, ex);
        }

        _listener = listener;
        _thread = new Thread(Serve) { IsBackground = true, Name = "vhost-user front end" };
        _thread.Start();
    }

    /// <summary>Stops serving, resets every connection and releases guest memory and eventfds.</summary>
    public void Dispose()
    {
        _disposed = true;
        _frontEnd?.Dispose();
        _listener?.Dispose();
        _thread?.Join(TimeSpan.FromSeconds(5));
        _device.Dispose();
        try
        {
            File.Delete(_socketPath);
        }
        catch (IOException)
        {
        }
    }

    private void Serve()
    {
        Socket? frontEnd = null;
        try
        {
            frontEnd = _listener!.Accept();
            _frontEnd = frontEnd;
            _log?.Invoke("vhost-user: QEMU connected");
            byte[] payload = new byte[MaxPayload];
            var fds = new List<int>();
            while (!_disposed)
            {
                if (!Receive(frontEnd, payload, fds, out uint request, out uint flags, out int size))
                    break;
                try
                {
                    HandleMessage(frontEnd, request, flags, payload.AsSpan(0, size), fds);
                }
                finally
                {
                    foreach (int fd in fds)
                        Libc.Close(fd); // whatever the handler did not take
                    fds.Clear();
                }
            }
        }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException or IOException)
        {
            if (!_disposed)
                _log?.Invoke($"vhost-user: {ex.Message}");
        }

        // Close this end as well: after a malformed message nothing reads the socket any more, and a front end
        // waiting for a reply (QEMU blocks on them) must see the disconnect instead of waiting forever.
        frontEnd?.Dispose();
        _device.ResetAll("QEMU disconnected");

        // The guest went with QEMU: stop the rings (as GET_VRING_BASE would have), so that nothing more is written to
        // its memory and DataPathReady turns false. Otherwise a host connect queued a REQUEST no driver would answer
        // and failed only when its timeout ran out (ETIMEDOUT) instead of being refused at once.
        foreach (VirtQueue queue in _device.Queues)
            _device.StopQueue(queue.Index);
        if (!_disposed)
            _log?.Invoke("vhost-user: QEMU disconnected");
    }

    private void HandleMessage(Socket frontEnd, uint request, uint flags, ReadOnlySpan<byte> payload, List<int> fds)
    {
        switch (request)
        {
            case GetFeatures:
                ReplyU64(frontEnd, request, OfferedFeatures);
                break;
            case SetFeatures:
                _features = U64(payload, "SET_FEATURES");
                break;
            case GetProtocolFeatures:
                ReplyU64(frontEnd, request, OfferedProtocolFeatures);
                break;
            case SetProtocolFeatures:
            case SetOwner:
            case ResetOwner:
            case SetConfig:
            case SetLogBase:
            case SetLogFd:
                break;
            case GetQueueNum:
                ReplyU64(frontEnd, request, 2);
                break;
            case GetMaxMemSlots:
                ReplyU64(frontEnd, request, MaxFds);
                break;
            case SetMemTable:
                SetMemoryTable(payload, fds);
                break;
            case SetVringNum:
            {
                (VirtQueue queue, uint num) = VringState(payload, "SET_VRING_NUM");
                if (!_device.Configure(() => queue.SetSize(num)))
                    throw new IOException($"vhost-user: queue {queue.Index} size {num} is not a power of two up to {VirtQueue.MaxSize}");
                break;
            }

            case SetVringAddr:
            {
                if (payload.Length < 40)
                    throw new IOException($"vhost-user: SET_VRING_ADDR payload of {payload.Length} bytes");
                VirtQueue queue = Queue(BinaryPrimitives.ReadUInt32LittleEndian(payload));
                ulong desc = BinaryPrimitives.ReadUInt64LittleEndian(payload[8..]);
                ulong used = BinaryPrimitives.ReadUInt64LittleEndian(payload[16..]);
                ulong avail = BinaryPrimitives.ReadUInt64LittleEndian(payload[24..]);
                _device.Configure(() => queue.Addresses = (desc, avail, used));
                _device.TryStart(queue);
                break;
            }

            case SetVringBase:
            {
                (VirtQueue queue, uint num) = VringState(payload, "SET_VRING_BASE");

                // A split ring's index is a u16 (virtio 1.2 §2.7.6; packed rings, whose base also carries a wrap
                // counter, are not offered), and Linux's vhost refuses more with EINVAL (drivers/vhost/vhost.c,
                // VHOST_SET_VRING_BASE). Checked here: the (ushort) cast below would throw OverflowException.
                if (num > ushort.MaxValue)
                    throw new IOException($"vhost-user: SET_VRING_BASE of {num} for queue {queue.Index}, more than a split ring's 16-bit index");
                _device.Configure(() => queue.LastAvail = (ushort)num);
                break;
            }

            case GetVringBase:
            {
                (VirtQueue queue, _) = VringState(payload, "GET_VRING_BASE");
                ushort last = _device.StopQueue(queue.Index);
                Span<byte> state = stackalloc byte[8];
                BinaryPrimitives.WriteUInt32LittleEndian(state, (uint)queue.Index);
                BinaryPrimitives.WriteUInt32LittleEndian(state[4..], last);
                Reply(frontEnd, request, state);
                break;
            }

            case SetVringKick:
            case SetVringCall:
            case SetVringErr:
            {
                ulong value = U64(payload, "SET_VRING_KICK/CALL/ERR");
                VirtQueue queue = Queue((uint)(value & 0xFF));
                int fd = -1;
                if ((value & VringFdInvalid) == 0)
                {
                    if (fds.Count == 0)
                        throw new IOException("vhost-user: a vring kick/call/err message without its eventfd");
                    fd = fds[0];
                    fds.RemoveAt(0);
                }

                if (request == SetVringErr)
                {
                    if (fd >= 0)
                        Libc.Close(fd); // errors are not reported back
                    break;
                }

                _device.Configure(() =>
                {
                    if (request == SetVringKick)
                    {
                        if (queue.KickFd >= 0)
                            Libc.Close(queue.KickFd);
                        queue.KickFd = fd;

                        // Without protocol features the ring is enabled as soon as it is kicked (vhost-user.rst "Ring states").
                        if ((_features & ProtocolFeaturesFlag) == 0)
                            queue.Enabled = true;
                    }
                    else
                    {
                        if (queue.CallFd >= 0)
                            Libc.Close(queue.CallFd);
                        queue.CallFd = fd;
                    }

                    return 0;
                });
                _device.TryStart(queue);
                break;
            }

            case SetVringEnable:
            {
                (VirtQueue queue, uint num) = VringState(payload, "SET_VRING_ENABLE");
                _device.Configure(() => queue.Enabled = num != 0);
                _device.TryStart(queue);
                break;
            }

            case GetConfig:
                ReplyConfig(frontEnd, request, payload);
                break;
            default:
                // Not negotiated, so not expected; without REPLY_ACK nothing is answered (vhost-user.rst).
                _log?.Invoke($"vhost-user: ignored request {request}");
                break;
        }

        if ((flags & FlagNeedReply) != 0 && request is not (GetFeatures or GetProtocolFeatures or GetQueueNum or GetMaxMemSlots or GetVringBase or GetConfig))
            ReplyU64(frontEnd, request, 0); // REPLY_ACK success, should a front end ask for it
    }

    private void SetMemoryTable(ReadOnlySpan<byte> payload, List<int> fds)
    {
        // struct VhostUserMemory { u32 nregions; u32 padding; VhostUserMemoryRegion regions[8]; }, each region
        // { u64 guest_phys_addr, memory_size, userspace_addr, mmap_offset } with one fd per region.
        if (payload.Length < 8)
            throw new IOException($"vhost-user: SET_MEM_TABLE payload of {payload.Length} bytes");
        uint count = BinaryPrimitives.ReadUInt32LittleEndian(payload);
        if (count == 0 || count > MaxFds || payload.Length < 8 + (32 * (int)count) || fds.Count < count)
            throw new IOException($"vhost-user: SET_MEM_TABLE with {count} regions, {payload.Length} bytes and {fds.Count} fds");
        var regions = new List<GuestMemory.RegionInfo>();
        for (int i = 0; i < count; i++)
        {
            ReadOnlySpan<byte> r = payload.Slice(8 + (32 * i), 32);
            regions.Add(new GuestMemory.RegionInfo(
                BinaryPrimitives.ReadUInt64LittleEndian(r),
                BinaryPrimitives.ReadUInt64LittleEndian(r[8..]),
                BinaryPrimitives.ReadUInt64LittleEndian(r[16..]),
                BinaryPrimitives.ReadUInt64LittleEndian(r[24..])));
        }

        List<int> taken = fds.GetRange(0, (int)count);
        fds.RemoveRange(0, (int)count);
        _device.SetMemory(GuestMemory.Map(regions, taken));
    }

    private void ReplyConfig(Socket frontEnd, uint request, ReadOnlySpan<byte> payload)
    {
        // struct VhostUserConfig { u32 offset; u32 size; u32 flags; u8 payload[size]; }; the vsock config space is
        // struct virtio_vsock_config { le64 guest_cid; } (virtio 1.2 §5.10.4).
        if (payload.Length < 12)
            throw new IOException($"vhost-user: GET_CONFIG payload of {payload.Length} bytes");
        uint offset = BinaryPrimitives.ReadUInt32LittleEndian(payload);
        uint size = BinaryPrimitives.ReadUInt32LittleEndian(payload[4..]);
        if (size > 256)
            throw new IOException($"vhost-user: GET_CONFIG of {size} bytes");
        byte[] answer = new byte[12 + size];
        payload[..12].CopyTo(answer);
        Span<byte> config = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(config, _device.GuestCid);
        // offset comes from the front end: add in 64 bits, so that an offset near 4 GiB reads zeros past the config
        // space instead of overflowing (checked build: OverflowException on this thread).
        for (uint i = 0; i < size; i++)
            answer[12 + i] = (ulong)offset + i < 8 ? config[(int)(offset + i)] : (byte)0;
        Reply(frontEnd, request, answer);
    }

    private (VirtQueue Queue, uint Num) VringState(ReadOnlySpan<byte> payload, string what)
    {
        // struct vhost_vring_state { unsigned int index; unsigned int num; }
        if (payload.Length < 8)
            throw new IOException($"vhost-user: {what} payload of {payload.Length} bytes");
        return (Queue(BinaryPrimitives.ReadUInt32LittleEndian(payload)), BinaryPrimitives.ReadUInt32LittleEndian(payload[4..]));
    }

    private VirtQueue Queue(uint index) =>
        index < _device.Queues.Length ? _device.Queues[index] : throw new IOException($"vhost-user: queue {index} does not exist (vsock has 2 data queues)");

    private static ulong U64(ReadOnlySpan<byte> payload, string what) =>
        payload.Length >= 8 ? BinaryPrimitives.ReadUInt64LittleEndian(payload) : throw new IOException($"vhost-user: {what} payload of {payload.Length} bytes");

    private static void ReplyU64(Socket frontEnd, uint request, ulong value)
    {
        Span<byte> payload = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(payload, value);
        Reply(frontEnd, request, payload);
    }

    private static void Reply(Socket frontEnd, uint request, ReadOnlySpan<byte> payload)
    {
        byte[] message = new byte[HeaderSize + payload.Length];
        BinaryPrimitives.WriteUInt32LittleEndian(message, request);
        BinaryPrimitives.WriteUInt32LittleEndian(message.AsSpan(4), FlagVersion | FlagReply);
        BinaryPrimitives.WriteUInt32LittleEndian(message.AsSpan(8), (uint)payload.Length);
        payload.CopyTo(message.AsSpan(HeaderSize));
        frontEnd.Send(message);
    }

    // Reads one message: the header, then its payload; file descriptors (SCM_RIGHTS) may come with either part.
    private static bool Receive(Socket frontEnd, byte[] payload, List<int> fds, out uint request, out uint flags, out int size)
    {
        Span<byte> header = stackalloc byte[HeaderSize];
        request = flags = 0;
        size = 0;
        if (!ReceiveExactly(frontEnd, header, fds))
            return false;
        request = BinaryPrimitives.ReadUInt32LittleEndian(header);
        flags = BinaryPrimitives.ReadUInt32LittleEndian(header[4..]);
        uint length = BinaryPrimitives.ReadUInt32LittleEndian(header[8..]);
        if ((flags & 0x3) != FlagVersion)
            throw new IOException($"vhost-user: request {request} with protocol version {flags & 0x3}");
        if (length > MaxPayload)
            throw new IOException($"vhost-user: request {request} with a {length}-byte payload");
        size = (int)length;
        return size == 0 || ReceiveExactly(frontEnd, payload.AsSpan(0, size), fds);
    }

    private static unsafe bool ReceiveExactly(Socket frontEnd, Span<byte> destination, List<int> fds)
    {
        const int ControlSize = 16 + (4 * MaxFds); // CMSG_SPACE(8 ints) on 64-bit: 16-byte header + data, 8-aligned
        byte* control = stackalloc byte[ControlSize];
        int done = 0;
        while (done < destination.Length)
        {
            fixed (byte* data = destination)
            {
                var iov = new Libc.IoVec { Base = (nint)(data + done), Length = (nuint)(destination.Length - done) };
                var message = new Libc.MsgHdr { Iov = (nint)(&iov), IovLength = 1, Control = (nint)control, ControlLength = ControlSize };
                nint n = Libc.RecvMsg(frontEnd.SafeHandle, ref message, Libc.MSG_CMSG_CLOEXEC);
                if (n < 0)
                {
                    int errno = Marshal.GetLastPInvokeError();
                    if (errno == Libc.EINTR)
                        continue;
                    throw new IOException($"vhost-user: recvmsg failed: {Marshal.GetPInvokeErrorMessage(errno)} (errno {errno})");
                }

                CollectFds(control, message.ControlLength, fds);
                if (n == 0)
                    return false; // QEMU closed the connection
                done += (int)n;
            }
        }

        return true;
    }

    // struct cmsghdr { size_t cmsg_len; int cmsg_level; int cmsg_type; unsigned char data[]; } (64-bit: 16-byte header).
    private static unsafe void CollectFds(byte* control, nuint length, List<int> fds)
    {
        nuint offset = 0;
        while (offset + 16 <= length)
        {
            ulong cmsgLength = *(ulong*)(control + offset);
            int level = *(int*)(control + offset + 8);
            int type = *(int*)(control + offset + 12);
            if (cmsgLength < 16 || offset + (nuint)cmsgLength > length)
                return;
            if (level == Libc.SOL_SOCKET && type == Libc.SCM_RIGHTS)
            {
                for (ulong at = 16; at + 4 <= cmsgLength; at += 4)
                    fds.Add(*(int*)(control + offset + (nuint)at));
            }

            offset += (nuint)((cmsgLength + 7) & ~7UL);
        }
    }
}

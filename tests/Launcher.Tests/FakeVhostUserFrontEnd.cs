using System.Buffers.Binary;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using Launcher.Interop;

namespace Launcher.Tests;

/// <summary>
/// A vhost-user front end that plays QEMU's part for <c>vhost-user-vsock</c> (QEMU docs/interop/vhost-user.rst,
/// hw/virtio/vhost-user-vsock.c): it connects to the back end's Unix socket, negotiates features and protocol features,
/// shares the guest's RAM as a memfd (SCM_RIGHTS), sets up the two data rings the back end serves and reads the guest
/// CID from the config space. The guest's RAM and its split virtqueues (virtio 1.2 §2.7) live in this process, so a
/// <see cref="FakeVsockGuest"/> can drive them as a guest's virtio-vsock driver would.
/// </summary>
/// <remarks>
/// Everything on the wire is encoded here from the documents, not with the product's types, so that a layout mistake in
/// the product is not repeated by the test. Only the two data queues are handed over, as QEMU does: its
/// <c>VHostVSockCommon</c> has <c>vhost_vqs[2]</c> (include/hw/virtio/vhost-vsock-common.h) and keeps the event queue
/// (queue 2) to itself.
/// </remarks>
internal sealed unsafe partial class FakeVhostUserFrontEnd : IDisposable
{
    // vhost-user.rst "Front-end message types".
    internal const uint GetFeatures = 1;
    internal const uint SetFeatures = 2;
    internal const uint SetOwner = 3;
    internal const uint SetMemTable = 5;
    internal const uint SetVringNum = 8;
    internal const uint SetVringAddr = 9;
    internal const uint SetVringBase = 10;
    internal const uint GetVringBase = 11;
    internal const uint SetVringKick = 12;
    internal const uint SetVringCall = 13;
    internal const uint GetProtocolFeatures = 15;
    internal const uint SetProtocolFeatures = 16;
    internal const uint SetVringEnable = 18;
    internal const uint GetConfig = 24;

    // vhost-user.rst "Message specification": flags bits 0-1 version (1), bit 2 reply, bit 3 need_reply.
    internal const uint FlagVersion = 0x1;
    internal const uint FlagReply = 0x4;
    internal const uint FlagNeedReply = 0x8;
    internal const int HeaderSize = sizeof(uint) + sizeof(uint) + sizeof(uint); // request, flags, size → 12

    // Feature bits: VIRTIO_F_VERSION_1 (virtio 1.2 §6), VHOST_USER_F_PROTOCOL_FEATURES (vhost-user.rst),
    // VIRTIO_RING_F_INDIRECT_DESC / VIRTIO_RING_F_EVENT_IDX (virtio 1.2 §6), VHOST_USER_PROTOCOL_F_CONFIG (vhost-user.rst).
    internal const ulong VirtioFVersion1 = 1UL << 32;
    internal const ulong ProtocolFeaturesFeature = 1UL << 30;
    internal const ulong RingFIndirectDesc = 1UL << 28;
    internal const ulong RingFEventIdx = 1UL << 29;
    internal const ulong ProtocolFConfig = 1UL << 9;

    /// <summary>QEMU's ring size for vhost vsock (VHOST_VSOCK_QUEUE_SIZE, include/hw/virtio/vhost-vsock-common.h).</summary>
    internal const int QueueSize = 128;

    internal const int RxQueueIndex = 0; // virtio 1.2 §5.10.2: 0 rx, 1 tx, 2 event
    internal const int TxQueueIndex = 1;

    // Guest RAM: one memfd shared as two regions, like QEMU's RAM below and above 4 GiB, so that guest-physical
    // addresses (descriptors), QEMU-virtual addresses (rings) and the offset into the fd (mmap_offset) all differ.
    internal const int Regions = 2;
    internal const long RegionSize = 4L << 20;
    internal const ulong LowGuestPhysical = 0x4000_0000;
    internal const ulong HighGuestPhysical = 0x1_0000_0000;

    // Where things sit in the memfd: both rings and the rx buffers in the low region, the tx buffers in the high one.
    private const long RxRingOffset = 0x0000;
    private const long TxRingOffset = 0x2000;
    internal const long RxBuffersOffset = 0x10000;
    internal const long TxBuffersOffset = RegionSize + 0x10000;

    private readonly Socket _socket;
    private readonly int _memfd;
    private readonly nint _ram;
    private readonly long _highRegionSize;
    private bool _disposed;

    private FakeVhostUserFrontEnd(Socket socket, int memfd, nint ram, long highRegionSize, string memfdName)
    {
        _socket = socket;
        _memfd = memfd;
        _ram = ram;
        _highRegionSize = highRegionSize;
        MemfdName = memfdName;
        Rx = new DriverQueue(RxQueueIndex, ram + (nint)RxRingOffset, QueueSize);
        Tx = new DriverQueue(TxQueueIndex, ram + (nint)TxRingOffset, QueueSize);
    }

    /// <summary>The memfd's name (it shows in /proc/self/maps and /proc/self/fd while anything maps or holds it).</summary>
    internal string MemfdName { get; }

    /// <summary>Queue 0, device to driver.</summary>
    internal DriverQueue Rx { get; }

    /// <summary>Queue 1, driver to device.</summary>
    internal DriverQueue Tx { get; }

    /// <summary>The features the back end offered (GET_FEATURES), once <see cref="Negotiate"/> ran.</summary>
    internal ulong OfferedFeatures { get; private set; }

    /// <summary>The protocol features the back end offered (GET_PROTOCOL_FEATURES).</summary>
    internal ulong OfferedProtocolFeatures { get; private set; }

    /// <summary>
    /// Connects to the back end's socket and allocates the guest's RAM (a zeroed memfd mapped shared): the low region
    /// of <see cref="RegionSize"/>, then a high one of <paramref name="highRegionSize"/> (sparse: only what is touched
    /// takes memory, so a test can have gigabytes of guest RAM).
    /// </summary>
    internal static FakeVhostUserFrontEnd Connect(string socketPath, long highRegionSize = RegionSize)
    {
        long ramSize = RegionSize + highRegionSize;
        string name = $"fake-guest-ram-{Guid.NewGuid():N}";
        int memfd = Native.MemfdCreate(name, Native.MFD_CLOEXEC);
        if (memfd < 0)
            throw new IOException($"memfd_create failed: {Marshal.GetPInvokeErrorMessage(Marshal.GetLastPInvokeError())}");
        nint ram = Libc.MAP_FAILED;
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            if (Native.Ftruncate(memfd, ramSize) != 0)
                throw new IOException($"ftruncate of the memfd failed: {Marshal.GetPInvokeErrorMessage(Marshal.GetLastPInvokeError())}");
            ram = Libc.Mmap(0, (nuint)ramSize, Libc.PROT_READ | Libc.PROT_WRITE, Libc.MAP_SHARED, memfd, 0);
            if (ram == Libc.MAP_FAILED)
                throw new IOException($"mmap of the memfd failed: {Marshal.GetPInvokeErrorMessage(Marshal.GetLastPInvokeError())}");
            socket.Connect(new UnixDomainSocketEndPoint(socketPath));
            return new FakeVhostUserFrontEnd(socket, memfd, ram, highRegionSize, name);
        }
        catch
        {
            socket.Dispose();
            if (ram != Libc.MAP_FAILED)
                Libc.Munmap(ram, (nuint)ramSize);
            Libc.Close(memfd);
            throw;
        }
    }

    /// <summary>A pointer into guest RAM at memfd offset <paramref name="offset"/>.</summary>
    internal nint Pointer(long offset) => _ram + (nint)offset;

    /// <summary>The guest-physical address of memfd offset <paramref name="offset"/> (what descriptors carry).</summary>
    internal static ulong GuestPhysical(long offset) =>
        offset < RegionSize ? LowGuestPhysical + (ulong)offset : HighGuestPhysical + (ulong)(offset - RegionSize);

    // --- Control plane --------------------------------------------------------------------------------------------

    /// <summary>
    /// QEMU's initialisation (vhost_user_backend_init, then vhost_dev_init): GET_FEATURES, GET_PROTOCOL_FEATURES,
    /// SET_PROTOCOL_FEATURES with the ones both sides know (only CONFIG here), SET_OWNER.
    /// </summary>
    internal void Negotiate()
    {
        OfferedFeatures = RequestU64(GetFeatures);
        if ((OfferedFeatures & ProtocolFeaturesFeature) == 0)
            throw new InvalidOperationException($"the back end does not offer VHOST_USER_F_PROTOCOL_FEATURES (features 0x{OfferedFeatures:x})");
        OfferedProtocolFeatures = RequestU64(GetProtocolFeatures);
        SendU64(SetProtocolFeatures, OfferedProtocolFeatures & ProtocolFConfig);
        Send(SetOwner, []);
    }

    /// <summary>
    /// QEMU's vhost_dev_start for vsock: SET_FEATURES (VERSION_1 and PROTOCOL_FEATURES, which QEMU keeps set),
    /// SET_MEM_TABLE, then per data ring SET_VRING_NUM, SET_VRING_BASE, SET_VRING_ADDR, SET_VRING_KICK,
    /// SET_VRING_CALL, and finally SET_VRING_ENABLE for both. <paramref name="ringBase"/> is the index both rings
    /// start from (QEMU passes the saved last_avail_idx, 0 on a fresh boot). Returns once the back end handled all of it;
    /// with <paramref name="enable"/> false the rings are left disabled.
    /// </summary>
    internal void StartDevice(ushort ringBase = 0, bool enable = true)
    {
        SendU64(SetFeatures, OfferedFeatures & (VirtioFVersion1 | ProtocolFeaturesFeature));
        SendMemTable();
        foreach (DriverQueue queue in new[] { Rx, Tx })
        {
            queue.Reset(ringBase);
            SendVringState(SetVringNum, queue.Index, QueueSize);
            SendVringState(SetVringBase, queue.Index, ringBase);
            SendVringAddr(queue);
            SendVringFd(SetVringKick, queue.Index, queue.KickFd);
            SendVringFd(SetVringCall, queue.Index, queue.CallFd);
        }

        if (enable)
            EnableRings();
        Sync();
    }

    /// <summary>
    /// Starts the rings again after GET_VRING_BASE stopped them, as QEMU's vhost_virtqueue_start does on a device
    /// restart: SET_VRING_NUM, SET_VRING_BASE with the index the back end reported, SET_VRING_ADDR, SET_VRING_KICK,
    /// SET_VRING_CALL, then SET_VRING_ENABLE. The driver's own indices and buffers stay as they were.
    /// </summary>
    internal void RestartRings(uint rxBase, uint txBase)
    {
        foreach ((DriverQueue queue, uint ringBase) in new[] { (Rx, rxBase), (Tx, txBase) })
        {
            SendVringState(SetVringNum, queue.Index, QueueSize);
            SendVringState(SetVringBase, queue.Index, ringBase);
            SendVringAddr(queue);
            SendVringFd(SetVringKick, queue.Index, queue.KickFd);
            SendVringFd(SetVringCall, queue.Index, queue.CallFd);
        }

        EnableRings();
        Sync();
    }

    /// <summary>SET_VRING_ENABLE 1 for both data rings (with protocol features, rings start disabled: vhost-user.rst "Ring states").</summary>
    internal void EnableRings()
    {
        foreach (DriverQueue queue in new[] { Rx, Tx })
            SendVringState(SetVringEnable, queue.Index, 1);
    }

    /// <summary>
    /// A barrier: GET_FEATURES needs a reply, and the back end handles messages in order on one socket, so once the
    /// reply is here every message sent before it has been handled.
    /// </summary>
    internal void Sync() => RequestU64(GetFeatures);

    /// <summary>GET_CONFIG of <paramref name="size"/> bytes at <paramref name="offset"/>; returns the reply's whole payload.</summary>
    internal byte[] GetConfigReply(uint offset, uint size)
    {
        // struct VhostUserConfig { u32 offset; u32 size; u32 flags; u8 payload[size]; } (vhost-user.rst)
        byte[] payload = new byte[12 + size];
        BinaryPrimitives.WriteUInt32LittleEndian(payload, offset);
        BinaryPrimitives.WriteUInt32LittleEndian(payload.AsSpan(4), size);
        Send(GetConfig, payload);
        return ReceiveReply(GetConfig, TimeSpan.FromSeconds(5));
    }

    /// <summary>GET_VRING_BASE (QEMU sends it when it stops the device): the ring's next available index.</summary>
    internal uint RequestVringBase(int index)
    {
        SendVringState(GetVringBase, index, 0);
        byte[] reply = ReceiveReply(GetVringBase, TimeSpan.FromSeconds(5));
        if (reply.Length != 8 || BinaryPrimitives.ReadUInt32LittleEndian(reply) != (uint)index)
            throw new InvalidDataException($"GET_VRING_BASE reply of {reply.Length} bytes for queue {(reply.Length >= 4 ? BinaryPrimitives.ReadUInt32LittleEndian(reply) : -1)}, expected 8 bytes for queue {index}");
        return BinaryPrimitives.ReadUInt32LittleEndian(reply.AsSpan(4));
    }

    /// <summary>Sends a request that needs a u64 reply and returns it.</summary>
    internal ulong RequestU64(uint request)
    {
        Send(request, []);
        byte[] reply = ReceiveReply(request, TimeSpan.FromSeconds(5));
        if (reply.Length != 8)
            throw new InvalidDataException($"reply to request {request} has {reply.Length} payload bytes, expected 8 (a u64)");
        return BinaryPrimitives.ReadUInt64LittleEndian(reply);
    }

    internal void SendU64(uint request, ulong value, uint flags = FlagVersion)
    {
        Span<byte> payload = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(payload, value);
        Send(request, payload, flags);
    }

    internal void SendVringState(uint request, int index, uint num)
    {
        // struct vhost_vring_state { unsigned int index; unsigned int num; }
        Span<byte> payload = stackalloc byte[8];
        BinaryPrimitives.WriteUInt32LittleEndian(payload, (uint)index);
        BinaryPrimitives.WriteUInt32LittleEndian(payload[4..], num);
        Send(request, payload);
    }

    private void SendVringAddr(DriverQueue queue)
    {
        // struct vhost_vring_addr { unsigned int index, flags; u64 desc_user_addr, used_user_addr, avail_user_addr,
        // log_guest_addr; }: ring addresses are QEMU-virtual (here: this process's), not guest-physical.
        Span<byte> payload = stackalloc byte[40];
        BinaryPrimitives.WriteUInt32LittleEndian(payload, (uint)queue.Index);
        BinaryPrimitives.WriteUInt64LittleEndian(payload[8..], (ulong)queue.Desc);
        BinaryPrimitives.WriteUInt64LittleEndian(payload[16..], (ulong)queue.Used);
        BinaryPrimitives.WriteUInt64LittleEndian(payload[24..], (ulong)queue.Avail);
        Send(SetVringAddr, payload);
    }

    private void SendVringFd(uint request, int index, int fd)
    {
        // u64: bits 0-7 the ring index, bit 8 set when no fd comes with it; the eventfd travels as SCM_RIGHTS.
        Span<byte> payload = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(payload, (ulong)index);
        Send(request, payload, FlagVersion, fd);
    }

    private void SendMemTable()
    {
        // struct VhostUserMemory { u32 nregions; u32 padding; VhostUserMemoryRegion regions[nregions]; }, each
        // { u64 guest_phys_addr, memory_size, userspace_addr, mmap_offset }, one fd per region (QEMU sends the same
        // memfd once per region when they share a RAM block; each arrives as its own descriptor).
        byte[] payload = new byte[8 + (32 * Regions)];
        BinaryPrimitives.WriteUInt32LittleEndian(payload, Regions);
        for (int i = 0; i < Regions; i++)
        {
            Span<byte> r = payload.AsSpan(8 + (32 * i), 32);
            long offset = i * RegionSize;
            BinaryPrimitives.WriteUInt64LittleEndian(r, GuestPhysical(offset));
            BinaryPrimitives.WriteUInt64LittleEndian(r[8..], (ulong)(i == 0 ? RegionSize : _highRegionSize));
            BinaryPrimitives.WriteUInt64LittleEndian(r[16..], (ulong)(_ram + (nint)offset));
            BinaryPrimitives.WriteUInt64LittleEndian(r[24..], (ulong)offset);
        }

        Send(SetMemTable, payload, FlagVersion, _memfd, _memfd);
    }

    /// <summary>Sends one message: the 12-byte header, the payload and, when given, fds as one SCM_RIGHTS message.</summary>
    internal void Send(uint request, ReadOnlySpan<byte> payload, uint flags = FlagVersion, params ReadOnlySpan<int> fds) =>
        SendRaw(request, flags, (uint)payload.Length, payload, fds);

    /// <summary>Sends a header whose size field says <paramref name="declaredSize"/>, whatever follows (malformed-message tests).</summary>
    internal void SendRaw(uint request, uint flags, uint declaredSize, ReadOnlySpan<byte> payload, ReadOnlySpan<int> fds = default)
    {
        byte[] message = new byte[HeaderSize + payload.Length];
        BinaryPrimitives.WriteUInt32LittleEndian(message, request);
        BinaryPrimitives.WriteUInt32LittleEndian(message.AsSpan(4), flags);
        BinaryPrimitives.WriteUInt32LittleEndian(message.AsSpan(8), declaredSize);
        payload.CopyTo(message.AsSpan(HeaderSize));
        if (fds.IsEmpty)
        {
            _socket.Send(message);
            return;
        }

        // struct cmsghdr { size_t cmsg_len; int cmsg_level; int cmsg_type; int fds[]; }: CMSG_LEN(4n) = 16 + 4n on
        // 64-bit, CMSG_SPACE rounds it up to 8 (bits/socket.h).
        int length = 16 + (4 * fds.Length);
        byte* control = stackalloc byte[(length + 7) & ~7];
        new Span<byte>(control, (length + 7) & ~7).Clear();
        *(ulong*)control = (ulong)length;
        *(int*)(control + 8) = Libc.SOL_SOCKET;
        *(int*)(control + 12) = Libc.SCM_RIGHTS;
        for (int i = 0; i < fds.Length; i++)
            *(int*)(control + 16 + (4 * i)) = fds[i];
        fixed (byte* data = message)
        {
            var iov = new Libc.IoVec { Base = (nint)data, Length = (nuint)message.Length };
            var header = new Libc.MsgHdr { Iov = (nint)(&iov), IovLength = 1, Control = (nint)control, ControlLength = (nuint)((length + 7) & ~7) };
            nint sent = Native.SendMsg(_socket.SafeHandle, &header, Native.MSG_NOSIGNAL);
            if (sent < 0)
                throw new IOException($"sendmsg of request {request} failed: {Marshal.GetPInvokeErrorMessage(Marshal.GetLastPInvokeError())}");
            if (sent != message.Length)
                _socket.Send(message.AsSpan((int)sent)); // the fds went with the first byte
        }
    }

    /// <summary>
    /// Reads one reply: checks that it answers <paramref name="request"/> with the version and reply flags, and that
    /// its size is a plausible payload before reading it.
    /// </summary>
    /// <exception cref="TimeoutException">Nothing arrived within <paramref name="timeout"/>.</exception>
    internal byte[] ReceiveReply(uint request, TimeSpan timeout)
    {
        Span<byte> header = stackalloc byte[HeaderSize];
        ReceiveExactly(header, timeout, $"the reply to request {request}");
        uint replyRequest = BinaryPrimitives.ReadUInt32LittleEndian(header);
        uint flags = BinaryPrimitives.ReadUInt32LittleEndian(header[4..]);
        uint size = BinaryPrimitives.ReadUInt32LittleEndian(header[8..]);
        if (replyRequest != request || flags != (FlagVersion | FlagReply))
            throw new InvalidDataException($"expected a reply to request {request} with flags 0x5, got request {replyRequest} with flags 0x{flags:x}");
        if (size > 4096)
            throw new InvalidDataException($"reply to request {request} claims a {size}-byte payload");
        byte[] payload = new byte[size];
        ReceiveExactly(payload, timeout, $"the payload of the reply to request {request}");
        return payload;
    }

    /// <summary>True when the back end closes the socket within <paramref name="timeout"/> (anything it sends first is discarded).</summary>
    internal bool WaitForBackEndToClose(TimeSpan timeout)
    {
        long deadline = Environment.TickCount64 + (long)timeout.TotalMilliseconds;
        byte[] sink = new byte[256];
        while (true)
        {
            long left = deadline - Environment.TickCount64;
            if (left <= 0 || !_socket.Poll(TimeSpan.FromMilliseconds(left), SelectMode.SelectRead))
                return false;
            try
            {
                if (_socket.Receive(sink) == 0)
                    return true;
            }
            catch (SocketException ex) when (ex.SocketErrorCode == SocketError.ConnectionReset)
            {
                return true;
            }
        }
    }

    private void ReceiveExactly(Span<byte> destination, TimeSpan timeout, string what)
    {
        long deadline = Environment.TickCount64 + (long)timeout.TotalMilliseconds;
        int done = 0;
        while (done < destination.Length)
        {
            long left = deadline - Environment.TickCount64;
            if (left <= 0 || !_socket.Poll(TimeSpan.FromMilliseconds(left), SelectMode.SelectRead))
                throw new TimeoutException($"fake front end: no {what} within {timeout.TotalSeconds:0.#} s");
            int n = _socket.Receive(destination[done..]);
            if (n == 0)
                throw new EndOfStreamException($"fake front end: the back end closed the socket before {what} ({done} of {destination.Length} bytes)");
            done += n;
        }
    }

    public void Dispose()
    {
        if (_disposed)
            return;
        _disposed = true;
        _socket.Dispose();
        Rx.Dispose();
        Tx.Dispose();
        Libc.Munmap(_ram, (nuint)(RegionSize + _highRegionSize));
        Libc.Close(_memfd);
    }

    /// <summary>The C library calls the fake needs beyond <see cref="Libc"/>.</summary>
    internal static unsafe partial class Native
    {
        internal const uint MFD_CLOEXEC = 0x1;       // linux/memfd.h
        internal const int MSG_NOSIGNAL = 0x4000;    // bits/socket.h: no SIGPIPE when the back end is gone
        internal const int EFD_CLOEXEC = 0x80000;    // sys/eventfd.h
        internal const int EFD_NONBLOCK = 0x800;

        // int memfd_create(const char *name, unsigned int flags);
        [LibraryImport("libc", EntryPoint = "memfd_create", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
        internal static partial int MemfdCreate(string name, uint flags);

        // int ftruncate(int fd, off_t length);
        [LibraryImport("libc", EntryPoint = "ftruncate", SetLastError = true)]
        internal static partial int Ftruncate(int fd, long length);

        // ssize_t sendmsg(int sockfd, const struct msghdr *msg, int flags);
        [LibraryImport("libc", EntryPoint = "sendmsg", SetLastError = true)]
        internal static partial nint SendMsg(SafeHandle fd, Libc.MsgHdr* message, int flags);
    }
}

/// <summary>
/// The driver's side of one split virtqueue (virtio 1.2 §2.7) in the fake guest's RAM: a descriptor table, the
/// available ring it writes and the used ring the device writes, plus the kick eventfd it signals (KVM's ioeventfd in
/// QEMU) and the call eventfd the device signals (the interrupt). Not thread-safe: its owner locks.
/// </summary>
internal sealed unsafe class DriverQueue : IDisposable
{
    // virtio 1.2 §2.7.5 struct virtq_desc { le64 addr; le32 len; le16 flags; le16 next; }; §2.7.6 virtq_avail
    // { le16 flags; le16 idx; le16 ring[]; }; §2.7.8 virtq_used { le16 flags; le16 idx; virtq_used_elem ring[]; }
    // with virtq_used_elem { le32 id; le32 len; }. Alignment: desc 16, avail 2, used 4 (§2.7); here each part
    // starts on its own boundary well past those.
    internal const int DescriptorSize = 16;
    internal const ushort DescNext = 1;   // VIRTQ_DESC_F_NEXT
    internal const ushort DescWrite = 2;  // VIRTQ_DESC_F_WRITE

    private ushort _availIndex;
    private ushort _lastUsed;

    internal DriverQueue(int index, nint ring, int size)
    {
        Index = index;
        Size = size;
        Desc = ring;
        Avail = ring + (DescriptorSize * size);             // 2048 bytes for 128 entries
        Used = ring + 0x1000;                               // avail needs 4 + 2·128 + 2 = 262 bytes
        KickFd = NewEventFd(0);
        CallFd = NewEventFd(FakeVhostUserFrontEnd.Native.EFD_NONBLOCK);
    }

    internal int Index { get; }

    internal int Size { get; }

    internal nint Desc { get; }

    internal nint Avail { get; }

    internal nint Used { get; }

    internal int KickFd { get; private set; }

    internal int CallFd { get; private set; }

    /// <summary>The driver's next available index (what GET_VRING_BASE should report once the device consumed all).</summary>
    internal ushort AvailIndex => _availIndex;

    /// <summary>Starts both indices at <paramref name="ringBase"/>, in memory and here (before SET_VRING_BASE).</summary>
    internal void Reset(ushort ringBase)
    {
        _availIndex = _lastUsed = ringBase;
        *(ushort*)Avail = 0;                              // flags: interrupts wanted
        Volatile.Write(ref *(ushort*)(Avail + 2), ringBase);
        *(ushort*)Used = 0;
        Volatile.Write(ref *(ushort*)(Used + 2), ringBase);
    }

    internal void WriteDescriptor(int index, ulong address, uint length, ushort flags, ushort next)
    {
        nint d = Desc + (index * DescriptorSize);
        *(ulong*)d = address;
        *(uint*)(d + 8) = length;
        *(ushort*)(d + 12) = flags;
        *(ushort*)(d + 14) = next;
    }

    /// <summary>Publishes chain <paramref name="head"/>: the ring entry first, then the index (§2.7.13.2).</summary>
    internal void MakeAvailable(ushort head)
    {
        *(ushort*)(Avail + 4 + (2 * (_availIndex % Size))) = head;
        Interlocked.MemoryBarrier();
        _availIndex = unchecked((ushort)(_availIndex + 1)); // ring indices wrap at 2^16 (§2.7.6)
        Volatile.Write(ref *(ushort*)(Avail + 2), _availIndex);
    }

    /// <summary>Notifies the device (the guest's MMIO/PIO write that KVM turns into an eventfd signal).</summary>
    internal void Kick()
    {
        ulong one = 1;
        Libc.WriteU64(KickFd, in one, 8);
    }

    /// <summary>The next used element, if the device returned one.</summary>
    internal bool TryTakeUsed(out uint id, out uint length)
    {
        ushort usedIndex = Volatile.Read(ref *(ushort*)(Used + 2));
        if (usedIndex == _lastUsed)
        {
            id = length = 0;
            return false;
        }

        Interlocked.MemoryBarrier(); // the element is read only after the index that published it (§2.7.14)
        nint element = Used + 4 + (8 * (_lastUsed % Size));
        id = *(uint*)element;
        length = *(uint*)(element + 4);
        _lastUsed = unchecked((ushort)(_lastUsed + 1));
        return true;
    }

    /// <summary>Clears the call eventfd (non-blocking); returns whether it was signalled.</summary>
    internal bool DrainCall()
    {
        ulong value = 0;
        return Libc.ReadU64(CallFd, ref value, 8) == 8;
    }

    public void Dispose()
    {
        if (KickFd >= 0)
            Libc.Close(KickFd);
        if (CallFd >= 0)
            Libc.Close(CallFd);
        KickFd = CallFd = -1;
    }

    private static int NewEventFd(int flags)
    {
        int fd = Libc.EventFd(0, FakeVhostUserFrontEnd.Native.EFD_CLOEXEC | flags);
        if (fd < 0)
            throw new IOException($"eventfd failed: {Marshal.GetPInvokeErrorMessage(Marshal.GetLastPInvokeError())}");
        return fd;
    }
}

/// <summary>virtio-vsock operations (virtio 1.2 §5.10.6, VIRTIO_VSOCK_OP_*), spelled out again for the fake.</summary>
internal static class WireOp
{
    internal const ushort Request = 1;
    internal const ushort Response = 2;
    internal const ushort Rst = 3;
    internal const ushort Shutdown = 4;
    internal const ushort Rw = 5;
    internal const ushort CreditUpdate = 6;
    internal const ushort CreditRequest = 7;

    internal static string Name(ushort op) => op switch
    {
        Request => "REQUEST",
        Response => "RESPONSE",
        Rst => "RST",
        Shutdown => "SHUTDOWN",
        Rw => "RW",
        CreditUpdate => "CREDIT_UPDATE",
        CreditRequest => "CREDIT_REQUEST",
        _ => $"op {op}",
    };
}

/// <summary>
/// struct virtio_vsock_hdr (virtio 1.2 §5.10.6, include/uapi/linux/virtio_vsock.h): 44 bytes, packed, little-endian,
/// encoded here independently of the product's <c>VsockHeader</c>.
/// </summary>
internal readonly record struct WireHeader(
    ulong SrcCid, ulong DstCid, uint SrcPort, uint DstPort, uint Len, ushort Type, ushort Op, uint Flags, uint BufAlloc, uint FwdCnt)
{
    internal const int Size = 44;
    internal const ushort TypeStream = 1;        // VIRTIO_VSOCK_TYPE_STREAM
    internal const uint ShutdownRcv = 1;         // VIRTIO_VSOCK_SHUTDOWN_RCV
    internal const uint ShutdownSend = 2;        // VIRTIO_VSOCK_SHUTDOWN_SEND

    internal static WireHeader Decode(ReadOnlySpan<byte> b) => new(
        BinaryPrimitives.ReadUInt64LittleEndian(b),             // src_cid @0
        BinaryPrimitives.ReadUInt64LittleEndian(b[8..]),        // dst_cid @8
        BinaryPrimitives.ReadUInt32LittleEndian(b[16..]),       // src_port @16
        BinaryPrimitives.ReadUInt32LittleEndian(b[20..]),       // dst_port @20
        BinaryPrimitives.ReadUInt32LittleEndian(b[24..]),       // len @24
        BinaryPrimitives.ReadUInt16LittleEndian(b[28..]),       // type @28
        BinaryPrimitives.ReadUInt16LittleEndian(b[30..]),       // op @30
        BinaryPrimitives.ReadUInt32LittleEndian(b[32..]),       // flags @32
        BinaryPrimitives.ReadUInt32LittleEndian(b[36..]),       // buf_alloc @36
        BinaryPrimitives.ReadUInt32LittleEndian(b[40..]));      // fwd_cnt @40

    internal void Encode(Span<byte> b)
    {
        BinaryPrimitives.WriteUInt64LittleEndian(b, SrcCid);
        BinaryPrimitives.WriteUInt64LittleEndian(b[8..], DstCid);
        BinaryPrimitives.WriteUInt32LittleEndian(b[16..], SrcPort);
        BinaryPrimitives.WriteUInt32LittleEndian(b[20..], DstPort);
        BinaryPrimitives.WriteUInt32LittleEndian(b[24..], Len);
        BinaryPrimitives.WriteUInt16LittleEndian(b[28..], Type);
        BinaryPrimitives.WriteUInt16LittleEndian(b[30..], Op);
        BinaryPrimitives.WriteUInt32LittleEndian(b[32..], Flags);
        BinaryPrimitives.WriteUInt32LittleEndian(b[36..], BufAlloc);
        BinaryPrimitives.WriteUInt32LittleEndian(b[40..], FwdCnt);
    }

    public override string ToString() =>
        $"{WireOp.Name(Op)} {SrcCid}:{SrcPort} → {DstCid}:{DstPort} len {Len} flags {Flags} buf_alloc {BufAlloc} fwd_cnt {FwdCnt}";
}

/// <summary>
/// A small virtio-vsock guest driver (virtio 1.2 §5.10.6) on a <see cref="FakeVhostUserFrontEnd"/>'s rings, modelled on
/// Linux's net/vmw_vsock/virtio_transport{,_common}.c: it keeps the rx ring full of buffers, sends packets on the tx ring,
/// and runs stream sockets with the spec's credit accounting. One pump thread takes used rx buffers (waking on the
/// call eventfd) and answers what a guest kernel answers on its own (RESPONSE to a REQUEST on a listening port, RST to
/// anything for no socket, CREDIT_UPDATE to a CREDIT_REQUEST, RST once the peer shut both directions). Anything the
/// device does that a driver must not accept (data beyond the credit it was given, a used length larger than the
/// buffer, a packet for another CID) is recorded in <see cref="Violations"/>.
/// </summary>
internal sealed unsafe class FakeVsockGuest : IDisposable
{
    /// <summary>Payload bytes per rx buffer (Linux posts 4 KiB ones; bigger here keeps 1 MiB transfers short).</summary>
    internal const int RxPayloadSize = 8192;

    /// <summary>The largest payload this driver puts in one tx packet (at most VIRTIO_VSOCK_MAX_PKT_BUF_SIZE, 64 KiB).</summary>
    internal const int TxMaxPayload = 16384;

    // Buffers: slot i of a ring uses descriptors 3i, 3i+1, 3i+2 and its own area of guest RAM.
    private const int Slots = FakeVhostUserFrontEnd.QueueSize / 3;   // 42
    private const long RxSlotArea = 0x4000;
    private const long TxSlotArea = 0x8000;

    private readonly FakeVhostUserFrontEnd _frontEnd;
    private readonly object _lock = new();
    private readonly Dictionary<(uint Local, uint Peer), GuestSocket> _sockets = [];
    private readonly Dictionary<uint, GuestListener> _listeners = [];
    private readonly Stack<int> _freeTx = new();
    private readonly List<string> _violations = [];
    private readonly List<WireHeader> _unmatched = [];
    private readonly int _stopFd;
    private readonly Thread _pump;
    private uint _nextPort = 50_000;
    private Exception? _pumpError;
    private bool _disposed;

    internal FakeVsockGuest(FakeVhostUserFrontEnd frontEnd, ulong cid)
    {
        _frontEnd = frontEnd;
        Cid = cid;
        _stopFd = Libc.EventFd(0, FakeVhostUserFrontEnd.Native.EFD_CLOEXEC | FakeVhostUserFrontEnd.Native.EFD_NONBLOCK);
        if (_stopFd < 0)
            throw new IOException("eventfd failed");
        for (int slot = Slots - 1; slot >= 0; slot--)
            _freeTx.Push(slot);
        lock (_lock)
        {
            for (int slot = 0; slot < Slots; slot++)
                PostRx(slot);
            _frontEnd.Rx.Kick();
        }

        _pump = new Thread(Pump) { IsBackground = true, Name = "fake vsock guest" };
        _pump.Start();
    }

    /// <summary>This guest's CID (what GET_CONFIG reported).</summary>
    internal ulong Cid { get; }

    /// <summary>Packets the device put on the rx ring.</summary>
    internal int RxPackets { get; private set; }

    /// <summary>Packets this driver put on the tx ring.</summary>
    internal int TxPackets { get; private set; }

    /// <summary>Protocol errors the device made, as this driver saw them.</summary>
    internal IReadOnlyList<string> Violations
    {
        get
        {
            lock (_lock)
                return _violations.ToList();
        }
    }

    /// <summary>Packets that matched no socket (and were answered with RST unless they were one).</summary>
    internal IReadOnlyList<WireHeader> Unmatched
    {
        get
        {
            lock (_lock)
                return _unmatched.ToList();
        }
    }

    /// <summary>Fails the test when the device broke a rule.</summary>
    internal void AssertNoViolations()
    {
        IReadOnlyList<string> violations = Violations;
        Assert.True(violations.Count == 0, "the device broke the virtio-vsock rules:\n" + string.Join("\n", violations));
    }

    // --- Sockets ------------------------------------------------------------------------------------------------

    /// <summary>Sends REQUEST to <paramref name="cid"/>:<paramref name="port"/> and waits for RESPONSE or RST; returns the socket either way.</summary>
    internal GuestSocket Connect(ulong cid, uint port, uint bufAlloc = 256 * 1024, TimeSpan? timeout = null)
    {
        long deadline = Deadline(timeout ?? TimeSpan.FromSeconds(5));
        lock (_lock)
        {
            GuestSocket socket = BeginConnect(cid, port, bufAlloc);
            WaitUntil(() => socket.Established || socket.ResetReceived, deadline, $"RESPONSE or RST to the REQUEST for {cid}:{port}");
            return socket;
        }
    }

    /// <summary>Sends REQUEST and returns the socket at once (its answer comes later, or never).</summary>
    internal GuestSocket BeginConnect(ulong cid, uint port, uint bufAlloc = 256 * 1024)
    {
        lock (_lock)
        {
            var socket = new GuestSocket(this, _nextPort++, cid, port, bufAlloc);
            _sockets[(socket.LocalPort, port)] = socket;
            Transmit(socket.Header(WireOp.Request), [], Deadline(TimeSpan.FromSeconds(5)));
            return socket;
        }
    }

    /// <summary>Listens on <paramref name="port"/>: REQUESTs get RESPONSE and a socket with <paramref name="bufAlloc"/> of credit.</summary>
    internal void Listen(uint port, uint bufAlloc = 256 * 1024)
    {
        lock (_lock)
            _listeners[port] = new GuestListener(bufAlloc);
    }

    /// <summary>The next connection the host made to <paramref name="port"/>.</summary>
    internal GuestSocket Accept(uint port, TimeSpan timeout)
    {
        lock (_lock)
        {
            GuestListener listener = _listeners[port];
            WaitUntil(() => listener.Pending.Count > 0, Deadline(timeout), $"a host connection to guest port {port}");
            return listener.Pending.Dequeue();
        }
    }

    /// <summary>Evaluates <paramref name="read"/> under the driver's lock (a consistent snapshot of socket state).</summary>
    internal T Inspect<T>(Func<T> read)
    {
        lock (_lock)
            return read();
    }

    /// <summary>True when the device has returned every tx buffer (it has read every packet this driver sent).</summary>
    internal bool TxIdle
    {
        get
        {
            lock (_lock)
            {
                ReclaimTx();
                return _freeTx.Count == Slots;
            }
        }
    }

    /// <summary>Puts any packet on the tx ring, as a misbehaving guest could.</summary>
    internal void TransmitRaw(WireHeader header, ReadOnlySpan<byte> payload)
    {
        lock (_lock)
            Transmit(header, payload, Deadline(TimeSpan.FromSeconds(5)));
    }

    /// <summary>Waits, under the driver's lock, until <paramref name="condition"/> holds; the pump pulses after every batch.</summary>
    internal void WaitFor(Func<bool> condition, TimeSpan timeout, string what)
    {
        lock (_lock)
            WaitUntil(condition, Deadline(timeout), what);
    }

    internal static long Deadline(TimeSpan timeout) => Environment.TickCount64 + (long)timeout.TotalMilliseconds;

    private void WaitUntil(Func<bool> condition, long deadline, string what)
    {
        while (!condition())
        {
            if (_pumpError is not null)
                throw new InvalidOperationException($"fake guest: the pump failed while waiting for {what}", _pumpError);
            long left = deadline - Environment.TickCount64;
            if (left <= 0)
                throw new TimeoutException($"fake guest: timed out waiting for {what}");
            Monitor.Wait(_lock, (int)Math.Min(left, 100));
        }
    }

    // --- Rings --------------------------------------------------------------------------------------------------

    // Rx slot i: even slots are one writable buffer for header and payload (as current Linux posts them, one
    // descriptor per sk_buff); odd slots are a chain of three whose memory is out of order (header at +0x3000, then
    // payload at +0 and +0x1000), so a device that scatters in the wrong order or past a buffer's end produces wrong
    // bytes.
    private void PostRx(int slot)
    {
        long area = FakeVhostUserFrontEnd.RxBuffersOffset + (slot * RxSlotArea);
        DriverQueue rx = _frontEnd.Rx;
        int d = 3 * slot;
        if (slot % 2 == 0)
        {
            rx.WriteDescriptor(d, FakeVhostUserFrontEnd.GuestPhysical(area), WireHeader.Size + RxPayloadSize, DriverQueue.DescWrite, 0);
        }
        else
        {
            rx.WriteDescriptor(d, FakeVhostUserFrontEnd.GuestPhysical(area + 0x3000), WireHeader.Size, DriverQueue.DescWrite | DriverQueue.DescNext, (ushort)(d + 1));
            rx.WriteDescriptor(d + 1, FakeVhostUserFrontEnd.GuestPhysical(area), RxPayloadSize / 2, DriverQueue.DescWrite | DriverQueue.DescNext, (ushort)(d + 2));
            rx.WriteDescriptor(d + 2, FakeVhostUserFrontEnd.GuestPhysical(area + 0x1000), RxPayloadSize / 2, DriverQueue.DescWrite, 0);
        }

        rx.MakeAvailable((ushort)d);
    }

    // Copies what the device wrote into rx slot i, following the chain's order.
    private byte[] ReadRx(int slot, int length)
    {
        long area = FakeVhostUserFrontEnd.RxBuffersOffset + (slot * RxSlotArea);
        byte[] bytes = new byte[length];
        if (slot % 2 == 0)
        {
            new ReadOnlySpan<byte>((void*)_frontEnd.Pointer(area), length).CopyTo(bytes);
            return bytes;
        }

        (long Offset, int Length)[] pieces = [(area + 0x3000, WireHeader.Size), (area, RxPayloadSize / 2), (area + 0x1000, RxPayloadSize / 2)];
        int done = 0;
        foreach ((long offset, int size) in pieces)
        {
            int count = Math.Min(size, length - done);
            new ReadOnlySpan<byte>((void*)_frontEnd.Pointer(offset), count).CopyTo(bytes.AsSpan(done));
            done += count;
        }

        return bytes;
    }

    // Tx slot i: header and payload cut into up to three descriptors at different places in its area; odd slots
    // even split the 44-byte header across two descriptors, which a device must gather.
    private void Transmit(WireHeader header, ReadOnlySpan<byte> payload, long deadline)
    {
        if (payload.Length > TxMaxPayload)
            throw new ArgumentOutOfRangeException(nameof(payload), $"at most {TxMaxPayload} bytes per packet");
        while (_freeTx.Count == 0)
        {
            ReclaimTx();
            if (_freeTx.Count > 0)
                break;
            if (Environment.TickCount64 > deadline)
                throw new TimeoutException("fake guest: timed out waiting for the device to return a tx buffer");
            Monitor.Wait(_lock, 2); // the device returns tx buffers as soon as it has read them
        }

        int slot = _freeTx.Pop();
        byte[] packet = new byte[WireHeader.Size + payload.Length];
        header.Encode(packet);
        payload.CopyTo(packet.AsSpan(WireHeader.Size));
        int first = slot % 2 == 0 ? WireHeader.Size : 20;
        int second = payload.Length == 0 ? packet.Length - first : WireHeader.Size - first + ((payload.Length + 1) / 2);
        int third = packet.Length - first - second;
        long area = FakeVhostUserFrontEnd.TxBuffersOffset + (slot * TxSlotArea);
        (long Offset, int Length)[] pieces = [(area + 0x6000, first), (area + 0x2100, second), (area, third)];
        int d = 3 * slot;
        int used = pieces.Count(p => p.Length > 0);
        int at = 0;
        for (int i = 0; i < used; i++)
        {
            (long offset, int length) = pieces[i];
            packet.AsSpan(at, length).CopyTo(new Span<byte>((void*)_frontEnd.Pointer(offset), length));
            at += length;
            bool more = i + 1 < used;
            _frontEnd.Tx.WriteDescriptor(d + i, FakeVhostUserFrontEnd.GuestPhysical(offset), (uint)length, more ? DriverQueue.DescNext : (ushort)0, more ? (ushort)(d + i + 1) : (ushort)0);
        }

        _frontEnd.Tx.MakeAvailable((ushort)d);
        _frontEnd.Tx.Kick();
        TxPackets++;
    }

    private void ReclaimTx()
    {
        while (_frontEnd.Tx.TryTakeUsed(out uint id, out _))
        {
            if (id % 3 != 0 || id / 3 >= Slots || _freeTx.Contains((int)(id / 3)))
            {
                _violations.Add($"the device returned tx descriptor {id}, which is not an outstanding chain head");
                continue;
            }

            _freeTx.Push((int)(id / 3));
        }
    }

    private void DrainRx()
    {
        bool posted = false;
        while (_frontEnd.Rx.TryTakeUsed(out uint id, out uint length))
        {
            int slot = (int)(id / 3);
            if (id % 3 != 0 || slot >= Slots)
            {
                _violations.Add($"the device returned rx descriptor {id}, which is not a chain head");
                continue;
            }

            if (length > WireHeader.Size + RxPayloadSize || length < WireHeader.Size)
            {
                _violations.Add($"the device says it wrote {length} bytes into a {WireHeader.Size + RxPayloadSize}-byte rx buffer");
                PostRx(slot);
                posted = true;
                continue;
            }

            byte[] bytes = ReadRx(slot, (int)length);
            PostRx(slot); // Linux refills as it goes; the bytes are copied out first
            posted = true;
            RxPackets++;
            WireHeader header = WireHeader.Decode(bytes);
            if (header.Len != length - WireHeader.Size)
                _violations.Add($"{header}: len {header.Len} but {length - WireHeader.Size} payload bytes were written");
            Dispatch(header, bytes.AsSpan(WireHeader.Size, (int)Math.Min(header.Len, length - WireHeader.Size)));
        }

        if (posted)
            _frontEnd.Rx.Kick();
    }

    private void Dispatch(WireHeader h, ReadOnlySpan<byte> payload)
    {
        long deadline = Deadline(TimeSpan.FromSeconds(5));
        if (h.DstCid != Cid)
            _violations.Add($"{h}: addressed to CID {h.DstCid}, this guest is {Cid}");
        if (h.Type != WireHeader.TypeStream)
            _violations.Add($"{h}: type {h.Type}, only stream sockets exist");
        if (_sockets.TryGetValue((h.DstPort, h.SrcPort), out GuestSocket? socket) && socket.PeerCid == h.SrcCid)
        {
            socket.OnPacket(h, payload, deadline);
            return;
        }

        if (h.Op == WireOp.Request && _listeners.TryGetValue(h.DstPort, out GuestListener? listener))
        {
            var accepted = new GuestSocket(this, h.DstPort, h.SrcCid, h.SrcPort, listener.BufAlloc) { Established = true };
            accepted.Packets.Add(h);
            accepted.PeerBufAlloc = h.BufAlloc;
            accepted.PeerFwdCnt = h.FwdCnt;
            _sockets[(h.DstPort, h.SrcPort)] = accepted;
            Transmit(accepted.Header(WireOp.Response), [], deadline);
            listener.Pending.Enqueue(accepted);
            return;
        }

        _unmatched.Add(h);
        if (h.Op != WireOp.Rst) // virtio_transport_reset_no_sock
            Transmit(new WireHeader(h.DstCid, h.SrcCid, h.DstPort, h.SrcPort, 0, WireHeader.TypeStream, WireOp.Rst, 0, 0, 0), [], deadline);
    }

    private void Pump()
    {
        var fds = new Libc.PollFd[3];
        try
        {
            while (true)
            {
                fds[0] = new Libc.PollFd { Fd = _frontEnd.Rx.CallFd, Events = Libc.POLLIN };
                fds[1] = new Libc.PollFd { Fd = _frontEnd.Tx.CallFd, Events = Libc.POLLIN };
                fds[2] = new Libc.PollFd { Fd = _stopFd, Events = Libc.POLLIN };
                Libc.PollMany(fds, 3, 1000);
                if ((fds[2].Revents & Libc.POLLIN) != 0)
                    return;
                _frontEnd.Rx.DrainCall(); // reset the interrupts before looking, so none is lost
                _frontEnd.Tx.DrainCall();
                lock (_lock)
                {
                    ReclaimTx();
                    DrainRx();
                    Monitor.PulseAll(_lock);
                }
            }
        }
        catch (Exception ex)
        {
            lock (_lock)
            {
                _pumpError = ex;
                _violations.Add($"the fake guest's pump failed: {ex}");
                Monitor.PulseAll(_lock);
            }
        }
    }

    internal void Forget(GuestSocket socket) => _sockets.Remove((socket.LocalPort, socket.PeerPort));

    internal void AddViolation(string violation) => _violations.Add(violation);

    internal object Lock => _lock;

    internal void TransmitLocked(WireHeader header, ReadOnlySpan<byte> payload, long deadline) => Transmit(header, payload, deadline);

    internal void WaitLocked(Func<bool> condition, long deadline, string what) => WaitUntil(condition, deadline, what);

    /// <summary>Stops the pump; the rings stay in the front end's RAM.</summary>
    public void Dispose()
    {
        if (_disposed)
            return;
        _disposed = true;
        ulong one = 1;
        Libc.WriteU64(_stopFd, in one, 8);
        if (!_pump.Join(TimeSpan.FromSeconds(5)))
            throw new InvalidOperationException("the fake guest's pump did not stop within 5 s");
        Libc.Close(_stopFd);
    }

    private sealed class GuestListener(uint bufAlloc)
    {
        internal uint BufAlloc { get; } = bufAlloc;

        internal Queue<GuestSocket> Pending { get; } = new();
    }
}

/// <summary>
/// One stream socket of the fake guest, with the credit counters of virtio 1.2 §5.10.6.3: this side advertises
/// <see cref="BufAlloc"/> and <see cref="FwdCnt"/> (bytes the application consumed) in every packet, and sends at most
/// <c>peer_buf_alloc − (tx_cnt − peer_fwd_cnt)</c> bytes ahead. All state is guarded by the guest's lock.
/// </summary>
internal sealed class GuestSocket
{
    private readonly FakeVsockGuest _guest;
    private readonly Queue<byte[]> _incoming = new();
    private int _incomingOffset;
    private uint _advertisedFwdCnt;

    internal GuestSocket(FakeVsockGuest guest, uint localPort, ulong peerCid, uint peerPort, uint bufAlloc)
    {
        _guest = guest;
        LocalPort = localPort;
        PeerCid = peerCid;
        PeerPort = peerPort;
        BufAlloc = bufAlloc;
    }

    internal uint LocalPort { get; }

    internal ulong PeerCid { get; }

    internal uint PeerPort { get; }

    /// <summary>The receive buffer this side advertises.</summary>
    internal uint BufAlloc { get; set; }

    /// <summary>When true, reading sends CREDIT_UPDATE once a quarter of <see cref="BufAlloc"/> was consumed.</summary>
    internal bool AutoCredit { get; set; } = true;

    internal bool Established { get; set; }

    internal bool ResetReceived { get; private set; }

    /// <summary>This side sent RST (or answered the peer's full shutdown with one).</summary>
    internal bool Closed { get; private set; }

    /// <summary>VIRTIO_VSOCK_SHUTDOWN_* flags the peer sent, accumulated.</summary>
    internal uint PeerShutdown { get; private set; }

    internal uint FwdCnt { get; private set; }

    internal uint RxCnt { get; private set; }

    internal uint TxCnt { get; private set; }

    internal uint PeerBufAlloc { get; set; }

    internal uint PeerFwdCnt { get; set; }

    /// <summary>Received bytes the application has not read.</summary>
    internal int Unread { get; private set; }

    /// <summary>Every packet the device sent to this socket, in order.</summary>
    internal List<WireHeader> Packets { get; } = [];

    /// <summary>What this side may still send (wrapping u32 arithmetic, §5.10.6.3).</summary>
    internal uint Credit
    {
        get
        {
            uint inFlight = unchecked(TxCnt - PeerFwdCnt);
            return inFlight > PeerBufAlloc ? 0 : PeerBufAlloc - inFlight;
        }
    }

    private bool EndOfStream => (PeerShutdown & WireHeader.ShutdownSend) != 0 || ResetReceived || Closed;

    internal WireHeader Header(ushort op, uint length = 0, uint flags = 0) =>
        new(_guest.Cid, PeerCid, LocalPort, PeerPort, length, WireHeader.TypeStream, op, flags, BufAlloc, FwdCnt);

    /// <summary>Sends all of <paramref name="data"/>, waiting for credit as needed.</summary>
    internal void Send(ReadOnlySpan<byte> data, TimeSpan timeout)
    {
        long deadline = FakeVsockGuest.Deadline(timeout);
        lock (_guest.Lock)
        {
            while (!data.IsEmpty)
            {
                _guest.WaitLocked(() => Credit > 0 || ResetReceived || (PeerShutdown & WireHeader.ShutdownRcv) != 0, deadline, $"credit to send on guest port {LocalPort} ({TxCnt} bytes sent, peer buf_alloc {PeerBufAlloc}, fwd_cnt {PeerFwdCnt})");
                if (ResetReceived || (PeerShutdown & WireHeader.ShutdownRcv) != 0)
                    throw new IOException($"guest port {LocalPort}: the peer reset or stopped receiving after {TxCnt} bytes");
                data = data[SendSome(data, deadline)..];
            }
        }
    }

    /// <summary>Sends what the current credit allows, without waiting for more; returns how many bytes went.</summary>
    internal int SendAvailable(ReadOnlySpan<byte> data)
    {
        lock (_guest.Lock)
        {
            int total = 0;
            while (total < data.Length && Credit > 0)
                total += SendSome(data[total..], FakeVsockGuest.Deadline(TimeSpan.FromSeconds(5)));
            return total;
        }
    }

    private int SendSome(ReadOnlySpan<byte> data, long deadline)
    {
        int count = (int)Math.Min(Math.Min(Credit, (uint)data.Length), FakeVsockGuest.TxMaxPayload);
        _guest.TransmitLocked(Header(WireOp.Rw, (uint)count), data[..count], deadline);
        TxCnt = unchecked(TxCnt + (uint)count);
        return count;
    }

    /// <summary>Reads what has arrived (waiting for something); 0 at end of stream.</summary>
    internal int Receive(Span<byte> destination, TimeSpan timeout)
    {
        lock (_guest.Lock)
        {
            _guest.WaitLocked(() => Unread > 0 || EndOfStream, FakeVsockGuest.Deadline(timeout), $"data on guest port {LocalPort} ({RxCnt} bytes so far)");
            int done = 0;
            while (done < destination.Length && _incoming.Count > 0)
            {
                byte[] chunk = _incoming.Peek();
                int count = Math.Min(destination.Length - done, chunk.Length - _incomingOffset);
                chunk.AsSpan(_incomingOffset, count).CopyTo(destination[done..]);
                done += count;
                _incomingOffset += count;
                if (_incomingOffset == chunk.Length)
                {
                    _incoming.Dequeue();
                    _incomingOffset = 0;
                }
            }

            Unread -= done;
            FwdCnt = unchecked(FwdCnt + (uint)done);
            if (AutoCredit && !Closed && !ResetReceived && unchecked(FwdCnt - _advertisedFwdCnt) >= Math.Max(1, BufAlloc / 4))
                SendControl(WireOp.CreditUpdate);
            return done;
        }
    }

    /// <summary>Reads until end of stream.</summary>
    internal byte[] ReadToEnd(TimeSpan timeout)
    {
        long deadline = FakeVsockGuest.Deadline(timeout);
        var all = new MemoryStream();
        byte[] buffer = new byte[64 * 1024];
        while (true)
        {
            long left = deadline - Environment.TickCount64;
            if (left <= 0)
                throw new TimeoutException($"guest port {LocalPort}: no end of stream within {timeout.TotalSeconds:0.#} s ({all.Length} bytes read)");
            int n = Receive(buffer, TimeSpan.FromMilliseconds(left));
            if (n == 0)
                return all.ToArray();
            all.Write(buffer, 0, n);
        }
    }

    /// <summary>Reads exactly <paramref name="count"/> bytes.</summary>
    internal byte[] ReadExactly(int count, TimeSpan timeout)
    {
        long deadline = FakeVsockGuest.Deadline(timeout);
        byte[] data = new byte[count];
        int done = 0;
        while (done < count)
        {
            long left = deadline - Environment.TickCount64;
            if (left <= 0)
                throw new TimeoutException($"guest port {LocalPort}: {done} of {count} bytes within {timeout.TotalSeconds:0.#} s");
            int n = Receive(data.AsSpan(done), TimeSpan.FromMilliseconds(left));
            if (n == 0)
                throw new EndOfStreamException($"guest port {LocalPort}: end of stream after {done} of {count} bytes");
            done += n;
        }

        return data;
    }

    /// <summary>Sends a packet without payload (CREDIT_UPDATE, CREDIT_REQUEST, SHUTDOWN, RST) carrying this side's credit.</summary>
    internal void SendControl(ushort op, uint flags = 0)
    {
        lock (_guest.Lock)
        {
            _advertisedFwdCnt = FwdCnt;
            _guest.TransmitLocked(Header(op, 0, flags), [], FakeVsockGuest.Deadline(TimeSpan.FromSeconds(5)));
            if (op == WireOp.Rst)
            {
                Closed = true;
                _guest.Forget(this);
            }
        }
    }

    /// <summary>Half or full shutdown (VIRTIO_VSOCK_SHUTDOWN_RCV / _SEND).</summary>
    internal void Shutdown(uint flags) => SendControl(WireOp.Shutdown, flags);

    /// <summary>Resets the connection.</summary>
    internal void Reset() => SendControl(WireOp.Rst);

    /// <summary>Waits until the peer's packets satisfy <paramref name="condition"/> (e.g. a SHUTDOWN arrived).</summary>
    internal void WaitFor(Func<GuestSocket, bool> condition, TimeSpan timeout, string what) =>
        _guest.WaitFor(() => condition(this), timeout, $"{what} on guest port {LocalPort}");

    // Called by the pump, under the lock, for every packet addressed to this socket.
    internal void OnPacket(WireHeader h, ReadOnlySpan<byte> payload, long deadline)
    {
        Packets.Add(h);
        PeerBufAlloc = h.BufAlloc; // every packet carries the sender's credit (virtio_transport_space_update)
        PeerFwdCnt = h.FwdCnt;
        switch (h.Op)
        {
            case WireOp.Response:
                if (Established)
                    _guest.AddViolation($"{h}: RESPONSE on an established connection");
                Established = true;
                break;
            case WireOp.Rw:
                if (!Established)
                    _guest.AddViolation($"{h}: data before the connection was established");
                if ((long)Unread + payload.Length > BufAlloc)
                    _guest.AddViolation($"{h}: {payload.Length} bytes with {Unread} unread exceed the {BufAlloc}-byte buf_alloc this side advertised (fwd_cnt {FwdCnt})");
                _incoming.Enqueue(payload.ToArray());
                Unread += payload.Length;
                RxCnt = unchecked(RxCnt + (uint)payload.Length);
                break;
            case WireOp.CreditRequest:
                _advertisedFwdCnt = FwdCnt;
                _guest.TransmitLocked(Header(WireOp.CreditUpdate), [], deadline);

                break;
            case WireOp.Shutdown:
                PeerShutdown |= h.Flags;
                if (PeerShutdown == (WireHeader.ShutdownRcv | WireHeader.ShutdownSend))
                {
                    // Linux answers a full shutdown with RST and closes (virtio_transport_recv_connected).
                    _guest.TransmitLocked(Header(WireOp.Rst), [], deadline);
                    Closed = true;
                    _guest.Forget(this);
                }

                break;
            case WireOp.Rst:
                ResetReceived = true;
                _guest.Forget(this);
                break;
            case WireOp.CreditUpdate:
                break;
            default:
                _guest.AddViolation($"{h}: unexpected on an open connection");
                break;
        }
    }
}

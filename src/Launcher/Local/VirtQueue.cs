using Launcher.Interop;

namespace Launcher.Local;

/// <summary>One buffer of a descriptor chain: a pointer into guest memory, its length, and whether the device writes it.</summary>
internal readonly record struct ChainSegment(nint Pointer, int Length, bool Writable);

/// <summary>A descriptor chain popped from the available ring: its head index and its buffers, in order.</summary>
internal sealed record DescriptorChain(ushort Head, IReadOnlyList<ChainSegment> Segments)
{
    // A chain may total up to 2^32 bytes (virtio 1.2 §2.7.5: "Drivers MUST NOT add a descriptor chain longer than
    // 2^32 bytes in total"), more than an int: the lengths are summed in 64 bits and capped at int.MaxValue, far above
    // any packet. An int sum threw OverflowException on the data thread for a chain over 2 GiB.

    /// <summary>Bytes the device may write (the writable buffers), at most int.MaxValue.</summary>
    internal int WritableLength => (int)Math.Min(int.MaxValue, Segments.Where(s => s.Writable).Sum(s => (long)s.Length));

    /// <summary>Bytes the driver gave to read (the readable buffers), at most int.MaxValue.</summary>
    internal int ReadableLength => (int)Math.Min(int.MaxValue, Segments.Where(s => !s.Writable).Sum(s => (long)s.Length));
}

/// <summary>
/// A split virtqueue (virtio 1.2 §2.7) as a vhost-user backend sees it: the descriptor table, available and used rings
/// in guest memory (addresses from <c>VHOST_USER_SET_VRING_ADDR</c>, QEMU-virtual), a kick eventfd the driver's
/// notifications arrive on and a call eventfd to interrupt the driver. Without VIRTIO_RING_F_EVENT_IDX and
/// VIRTIO_RING_F_INDIRECT_DESC (not offered), so notifications follow the avail ring's NO_INTERRUPT flag and every
/// descriptor is direct. Rings are little-endian, as is every host this runs on (x86_64, arm64).
/// </summary>
internal sealed unsafe class VirtQueue(int index)
{
    // virtio 1.2 §2.7.5: struct virtq_desc { le64 addr; le32 len; le16 flags; le16 next; }
    private const int DescriptorSize = 16;
    private const ushort DescNext = 1;      // VIRTQ_DESC_F_NEXT
    private const ushort DescWrite = 2;     // VIRTQ_DESC_F_WRITE
    private const ushort DescIndirect = 4;  // VIRTQ_DESC_F_INDIRECT
    private const ushort AvailNoInterrupt = 1; // VIRTQ_AVAIL_F_NO_INTERRUPT

    /// <summary>The largest queue the virtio spec allows (§2.7: Queue Size ≤ 32768).</summary>
    internal const int MaxSize = 32768;

    private nint _desc;
    private nint _avail;
    private nint _used;

    /// <summary>The queue's index in the device (vsock: 0 rx, 1 tx).</summary>
    internal int Index { get; } = index;

    /// <summary>Queue size (<c>VHOST_USER_SET_VRING_NUM</c>).</summary>
    internal ushort Size { get; private set; }

    /// <summary>The next available-ring entry to consume (<c>VHOST_USER_SET_VRING_BASE</c> / <c>GET_VRING_BASE</c>).</summary>
    internal ushort LastAvail { get; set; }

    /// <summary>The used ring's next index.</summary>
    internal ushort UsedIndex { get; private set; }

    /// <summary>Addresses as QEMU gave them (QEMU-virtual), kept until memory is known.</summary>
    internal (ulong Desc, ulong Avail, ulong Used)? Addresses { get; set; }

    /// <summary>The kick eventfd (owned), or -1.</summary>
    internal int KickFd { get; set; } = -1;

    /// <summary>The call eventfd (owned), or -1.</summary>
    internal int CallFd { get; set; } = -1;

    /// <summary>Enabled by <c>VHOST_USER_SET_VRING_ENABLE</c> (rings start disabled once protocol features are negotiated).</summary>
    internal bool Enabled { get; set; }

    /// <summary>True once the ring is started (it has a kick fd and resolved addresses) and until it is stopped.</summary>
    internal bool Started { get; private set; }

    /// <summary>Ready to process: started and enabled.</summary>
    internal bool Ready => Started && Enabled;

    /// <summary>Sets the size; false when it is not a valid split-ring size.</summary>
    internal bool SetSize(uint size)
    {
        if (size == 0 || size > MaxSize || (size & (size - 1)) != 0)
            return false;
        Size = (ushort)size;
        return true;
    }

    /// <summary>Resolves the ring addresses in <paramref name="memory"/> and starts the ring; false when they are outside it.</summary>
    internal bool Start(GuestMemory memory)
    {
        if (Addresses is not { } a || Size == 0)
            return false;
        _desc = memory.FromUser(a.Desc, (ulong)Size * DescriptorSize);
        _avail = memory.FromUser(a.Avail, 4 + (2UL * Size) + 2);
        _used = memory.FromUser(a.Used, 4 + (8UL * Size) + 2);
        if (_desc == 0 || _avail == 0 || _used == 0)
            return false;
        UsedIndex = Volatile.Read(ref *(ushort*)(_used + 2));
        Started = true;
        return true;
    }

    /// <summary>Stops the ring (<c>GET_VRING_BASE</c>); its memory may go away after this.</summary>
    internal void Stop()
    {
        Started = false;
        _desc = _avail = _used = 0;
    }

    /// <summary>
    /// The next chain the driver made available, or null. A malformed chain (a loop, an address outside guest memory,
    /// an indirect descriptor that was never negotiated) is returned used with length 0 and skipped, as a device must not
    /// trust the driver; <paramref name="fault"/> hears why.
    /// </summary>
    internal DescriptorChain? Pop(GuestMemory memory, Action<string> fault)
    {
        while (Ready)
        {
            ushort availIndex = Volatile.Read(ref *(ushort*)(_avail + 2));
            if (availIndex == LastAvail)
                return null;
            // The ring indices are free-running u16s that wrap (virtio 1.2 §2.7.6): their differences are taken
            // modulo 2^16, outside the project's checked arithmetic.
            ushort moved = unchecked((ushort)(availIndex - LastAvail));
            if (moved > Size)
            {
                fault($"queue {Index}: the available index moved by {moved}, more than the queue size {Size}; the ring is stopped");
                Stop();
                return null;
            }

            // Read the entry only after the index (virtio 1.2 §2.7.13.2: the driver publishes the entry first).
            Interlocked.MemoryBarrier();
            ushort head = *(ushort*)(_avail + 4 + (2 * (LastAvail % Size)));
            LastAvail = unchecked((ushort)(LastAvail + 1));
            if (Walk(head, memory, out var segments, out string? why))
                return new DescriptorChain(head, segments);
            fault($"queue {Index}: descriptor chain {head} skipped: {why}");
            PushUsed(head, 0);
        }

        return null;
    }

    /// <summary>Returns a chain to the driver with <paramref name="written"/> bytes written into it.</summary>
    internal void PushUsed(ushort head, uint written)
    {
        if (!Started)
            return;
        nint element = _used + 4 + (8 * (UsedIndex % Size));
        *(uint*)element = head;
        *(uint*)(element + 4) = written;
        UsedIndex = unchecked((ushort)(UsedIndex + 1));
        // The element must be visible before the index that publishes it (§2.7.14).
        Interlocked.MemoryBarrier();
        Volatile.Write(ref *(ushort*)(_used + 2), UsedIndex);
    }

    /// <summary>Interrupts the driver unless it asked not to be (VIRTQ_AVAIL_F_NO_INTERRUPT).</summary>
    internal void Notify()
    {
        if (!Started || CallFd < 0)
            return;
        Interlocked.MemoryBarrier();
        ushort flags = Volatile.Read(ref *(ushort*)_avail);
        if ((flags & AvailNoInterrupt) != 0)
            return;
        ulong one = 1;
        Libc.WriteU64(CallFd, in one, 8);
    }

    /// <summary>Closes the eventfds it owns.</summary>
    internal void CloseFds()
    {
        if (KickFd >= 0)
            Libc.Close(KickFd);
        if (CallFd >= 0)
            Libc.Close(CallFd);
        KickFd = CallFd = -1;
    }

    private bool Walk(ushort head, GuestMemory memory, out List<ChainSegment> segments, out string? why)
    {
        segments = [];
        why = null;
        if (head >= Size)
        {
            why = $"head {head} is outside the table of {Size}";
            return false;
        }

        ushort i = head;
        for (int steps = 0; steps < Size; steps++)
        {
            nint d = _desc + (i * DescriptorSize);
            ulong address = *(ulong*)d;
            uint length = *(uint*)(d + 8);
            ushort flags = *(ushort*)(d + 12);
            ushort next = *(ushort*)(d + 14);
            if ((flags & DescIndirect) != 0)
            {
                why = "an indirect descriptor (VIRTIO_RING_F_INDIRECT_DESC was not negotiated)";
                return false;
            }

            nint pointer = length == 0 ? 0 : memory.FromGuest(address, length);
            if (length != 0 && pointer == 0)
            {
                why = $"buffer 0x{address:x} ({length} bytes) is outside guest memory";
                return false;
            }

            if (length > int.MaxValue)
            {
                why = $"buffer of {length} bytes";
                return false;
            }

            segments.Add(new ChainSegment(pointer, (int)length, (flags & DescWrite) != 0));
            if ((flags & DescNext) == 0)
                return true;
            if (next >= Size)
            {
                why = $"next {next} is outside the table of {Size}";
                return false;
            }

            i = next;
        }

        why = "the chain loops";
        return false;
    }

    /// <summary>Copies the chain's readable bytes into <paramref name="destination"/>; returns how many (at most its length).</summary>
    internal static int Gather(DescriptorChain chain, Span<byte> destination)
    {
        int done = 0;
        foreach (ChainSegment segment in chain.Segments)
        {
            if (segment.Writable || done == destination.Length)
                continue;
            int count = Math.Min(segment.Length, destination.Length - done);
            new ReadOnlySpan<byte>((void*)segment.Pointer, count).CopyTo(destination[done..]);
            done += count;
        }

        return done;
    }

    /// <summary>Writes <paramref name="source"/> into the chain's writable buffers; returns how many bytes fit.</summary>
    internal static int Scatter(DescriptorChain chain, ReadOnlySpan<byte> source)
    {
        int done = 0;
        foreach (ChainSegment segment in chain.Segments)
        {
            if (!segment.Writable || done == source.Length)
                continue;
            int count = Math.Min(segment.Length, source.Length - done);
            source.Slice(done, count).CopyTo(new Span<byte>((void*)segment.Pointer, count));
            done += count;
        }

        return done;
    }
}

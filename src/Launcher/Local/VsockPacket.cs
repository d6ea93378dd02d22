using System.Buffers.Binary;

namespace Launcher.Local;

/// <summary>virtio-vsock operations (virtio 1.2 §5.10.6, <c>VIRTIO_VSOCK_OP_*</c>).</summary>
internal enum VsockOp : ushort
{
    Invalid = 0,
    Request = 1,
    Response = 2,
    Reset = 3,
    Shutdown = 4,
    ReadWrite = 5,
    CreditUpdate = 6,
    CreditRequest = 7,
}

/// <summary>
/// <c>struct virtio_vsock_hdr</c> (virtio 1.2 §5.10.6; include/uapi/linux/virtio_vsock.h), 44 bytes, packed,
/// little-endian: src_cid @0, dst_cid @8, src_port @16, dst_port @20, len @24, type @28, op @30, flags @32,
/// buf_alloc @36, fwd_cnt @40.
/// </summary>
internal readonly record struct VsockHeader(
    ulong SourceCid, ulong DestinationCid, uint SourcePort, uint DestinationPort, uint Length,
    ushort Type, VsockOp Op, uint Flags, uint BufferAllocation, uint ForwardCount)
{
    /// <summary>The encoded size.</summary>
    internal const int Size =
        sizeof(ulong) +   // src_cid
        sizeof(ulong) +   // dst_cid
        sizeof(uint) +    // src_port
        sizeof(uint) +    // dst_port
        sizeof(uint) +    // len
        sizeof(ushort) +  // type
        sizeof(ushort) +  // op
        sizeof(uint) +    // flags
        sizeof(uint) +    // buf_alloc
        sizeof(uint);     // fwd_cnt → 44

    /// <summary><c>VIRTIO_VSOCK_TYPE_STREAM</c>.</summary>
    internal const ushort TypeStream = 1;

    /// <summary><c>VIRTIO_VSOCK_SHUTDOWN_RCV</c>: the sender will receive no more.</summary>
    internal const uint ShutdownReceive = 1;

    /// <summary><c>VIRTIO_VSOCK_SHUTDOWN_SEND</c>: the sender will send no more.</summary>
    internal const uint ShutdownSend = 2;

    /// <summary>The largest payload of one packet (<c>VIRTIO_VSOCK_MAX_PKT_BUF_SIZE</c>, 64 KiB).</summary>
    internal const int MaxPayload = 64 * 1024;

    private static class Offsets
    {
        internal const int SourceCid = 0;
        internal const int DestinationCid = SourceCid + sizeof(ulong);
        internal const int SourcePort = DestinationCid + sizeof(ulong);
        internal const int DestinationPort = SourcePort + sizeof(uint);
        internal const int Length = DestinationPort + sizeof(uint);
        internal const int Type = Length + sizeof(uint);
        internal const int Op = Type + sizeof(ushort);
        internal const int Flags = Op + sizeof(ushort);
        internal const int BufferAllocation = Flags + sizeof(uint);
        internal const int ForwardCount = BufferAllocation + sizeof(uint);
    }

    internal static VsockHeader Read(ReadOnlySpan<byte> source) => new(
        BinaryPrimitives.ReadUInt64LittleEndian(source[Offsets.SourceCid..]),
        BinaryPrimitives.ReadUInt64LittleEndian(source[Offsets.DestinationCid..]),
        BinaryPrimitives.ReadUInt32LittleEndian(source[Offsets.SourcePort..]),
        BinaryPrimitives.ReadUInt32LittleEndian(source[Offsets.DestinationPort..]),
        BinaryPrimitives.ReadUInt32LittleEndian(source[Offsets.Length..]),
        BinaryPrimitives.ReadUInt16LittleEndian(source[Offsets.Type..]),
        (VsockOp)BinaryPrimitives.ReadUInt16LittleEndian(source[Offsets.Op..]),
        BinaryPrimitives.ReadUInt32LittleEndian(source[Offsets.Flags..]),
        BinaryPrimitives.ReadUInt32LittleEndian(source[Offsets.BufferAllocation..]),
        BinaryPrimitives.ReadUInt32LittleEndian(source[Offsets.ForwardCount..]));

    internal void Write(Span<byte> destination)
    {
        BinaryPrimitives.WriteUInt64LittleEndian(destination[Offsets.SourceCid..], SourceCid);
        BinaryPrimitives.WriteUInt64LittleEndian(destination[Offsets.DestinationCid..], DestinationCid);
        BinaryPrimitives.WriteUInt32LittleEndian(destination[Offsets.SourcePort..], SourcePort);
        BinaryPrimitives.WriteUInt32LittleEndian(destination[Offsets.DestinationPort..], DestinationPort);
        BinaryPrimitives.WriteUInt32LittleEndian(destination[Offsets.Length..], Length);
        BinaryPrimitives.WriteUInt16LittleEndian(destination[Offsets.Type..], Type);
        BinaryPrimitives.WriteUInt16LittleEndian(destination[Offsets.Op..], (ushort)Op);
        BinaryPrimitives.WriteUInt32LittleEndian(destination[Offsets.Flags..], Flags);
        BinaryPrimitives.WriteUInt32LittleEndian(destination[Offsets.BufferAllocation..], BufferAllocation);
        BinaryPrimitives.WriteUInt32LittleEndian(destination[Offsets.ForwardCount..], ForwardCount);
    }
}

using EifBuilder.Cpio;
using System.Security.Cryptography;

namespace EifBuilder.Layers;

/// <summary>A read-through stream that hashes and counts what passes through it.</summary>
internal sealed class HashingStream(Stream inner, IncrementalHash? hash) : Stream
{
    internal long BytesRead { get; private set; }

    public override bool CanRead => true;

    public override bool CanSeek => false;

    public override bool CanWrite => false;

    public override long Length => throw new NotSupportedException();

    public override long Position
    {
        get => BytesRead;
        set => throw new NotSupportedException();
    }

    public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

    public override int Read(Span<byte> buffer)
    {
        int read = inner.Read(buffer);
        hash?.AppendData(buffer[..read]);
        BytesRead += read;
        return read;
    }

    /// <summary>Reads to the end (e.g. padding after the tar's end marker), so the hash covers every byte.</summary>
    internal void Drain()
    {
        byte[] buffer = new byte[1 << 16];
        while (Read(buffer) > 0)
        {
        }
    }

    public override void Flush()
    {
    }

    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

    public override void SetLength(long value) => throw new NotSupportedException();

    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
}

/// <summary>A read-through stream that also writes what it reads to another stream (a temporary file).</summary>
internal sealed class TeeStream(Stream inner, Stream copy) : Stream
{
    public override bool CanRead => true;

    public override bool CanSeek => false;

    public override bool CanWrite => false;

    public override long Length => throw new NotSupportedException();

    public override long Position
    {
        get => throw new NotSupportedException();
        set => throw new NotSupportedException();
    }

    public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

    public override int Read(Span<byte> buffer)
    {
        int read = inner.Read(buffer);
        copy.Write(buffer[..read]);
        return read;
    }

    public override void Flush()
    {
    }

    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

    public override void SetLength(long value) => throw new NotSupportedException();

    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
}

/// <summary>
/// A stream whose first bytes can be looked at before it is read (to recognise a compression format), optionally with
/// bytes already read from <paramref name="inner"/> put back in front of it.
/// </summary>
internal sealed class PeekableStream(Stream inner, byte[]? pushedBack = null, bool leaveOpen = false) : Stream
{
    private byte[] _head = pushedBack ?? [];
    private int _headOffset;

    /// <summary>How the stream's first bytes say it is compressed (by their magic numbers).</summary>
    internal RamdiskCompression Compression
    {
        get
        {
            ReadOnlySpan<byte> head = Peek(4);
            return head.StartsWith((ReadOnlySpan<byte>)[0x1F, 0x8B]) ? RamdiskCompression.Gzip // RFC 1952 §2.3.1 ID1 ID2
                : head.StartsWith((ReadOnlySpan<byte>)[0x28, 0xB5, 0x2F, 0xFD]) ? RamdiskCompression.Zstd // RFC 8878 §3.1.1 magic
                : RamdiskCompression.None;
        }
    }

    /// <summary>Up to <paramref name="count"/> first bytes, without consuming them.</summary>
    internal ReadOnlySpan<byte> Peek(int count)
    {
        if (_head.Length - _headOffset < count)
        {
            byte[] head = new byte[count];
            int have = _head.Length - _headOffset;
            _head.AsSpan(_headOffset).CopyTo(head);
            _headOffset = 0;
            while (have < count)
            {
                int read = inner.Read(head, have, count - have);
                if (read == 0)
                    break;
                have += read;
            }

            _head = head[..have];
        }

        return _head.AsSpan(_headOffset, Math.Min(count, _head.Length - _headOffset));
    }

    public override bool CanRead => true;

    public override bool CanSeek => false;

    public override bool CanWrite => false;

    public override long Length => throw new NotSupportedException();

    public override long Position
    {
        get => throw new NotSupportedException();
        set => throw new NotSupportedException();
    }

    public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

    public override int Read(Span<byte> buffer)
    {
        if (_headOffset < _head.Length)
        {
            int n = Math.Min(buffer.Length, _head.Length - _headOffset);
            _head.AsSpan(_headOffset, n).CopyTo(buffer);
            _headOffset += n;
            return n;
        }

        return inner.Read(buffer);
    }

    public override void Flush()
    {
    }

    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

    public override void SetLength(long value) => throw new NotSupportedException();

    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();

    protected override void Dispose(bool disposing)
    {
        if (disposing && !leaveOpen)
            inner.Dispose();
        base.Dispose(disposing);
    }
}

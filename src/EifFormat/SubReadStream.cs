namespace EifFormat;

/// <summary>
/// A read-only, seekable window <c>[start, start + length)</c> over a seekable stream, the way section payloads
/// are exposed (System.Formats.Tar's SubReadStream is the model). Reading past the window returns 0; the
/// underlying stream ending early inside the window is an <see cref="EifFormatError.Truncated"/> error.
/// </summary>
internal sealed class SubReadStream : Stream
{
    private readonly Stream _inner;
    private readonly long _start;
    private readonly long _length;
    private readonly string _what;
    private long _position;

    internal SubReadStream(Stream inner, long start, long length, string what)
    {
        _inner = inner;
        _start = start;
        _length = length;
        _what = what;
    }

    public override bool CanRead => true;

    public override bool CanSeek => true;

    public override bool CanWrite => false;

    public override long Length => _length;

    public override long Position
    {
        get => _position;
        set
        {
            ArgumentOutOfRangeException.ThrowIfNegative(value);
            _position = value;
        }
    }

    public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

    public override int Read(Span<byte> buffer)
    {
        long remaining = _length - _position;
        if (remaining <= 0 || buffer.IsEmpty)
            return 0;
        if (buffer.Length > remaining)
            buffer = buffer[..(int)remaining];
        if (_inner.Position != _start + _position)
            _inner.Position = _start + _position;
        int read = _inner.Read(buffer);
        if (read == 0)
            Throw.Truncated(_what, _length, _position);
        _position += read;
        return read;
    }

    public override long Seek(long offset, SeekOrigin origin)
    {
        long target = origin switch
        {
            SeekOrigin.Begin => offset,
            SeekOrigin.Current => _position + offset,
            SeekOrigin.End => _length + offset,
            _ => throw new ArgumentOutOfRangeException(nameof(origin)),
        };
        Position = target;
        return target;
    }

    public override void Flush()
    {
    }

    public override void SetLength(long value) => throw new NotSupportedException();

    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
}

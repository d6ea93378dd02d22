namespace Launcher.Supervision;

/// <summary>
/// An enclave's console output as the supervisor captured it from the first moment it could connect (nitro-cli
/// connects only after the heartbeat, so early boot output is lost, #343): the last <see cref="Capacity"/> bytes in
/// memory for any number of readers, each starting at the oldest byte kept, and optionally every byte in a log file
/// that outlives the enclave (#405: an exited debug enclave's console could not be recovered).
/// </summary>
internal sealed class ConsoleBuffer : IDisposable
{
    /// <summary>Bytes kept in memory.</summary>
    internal const int Capacity = 1 << 20;

    /// <summary>The most a log file grows (then a last line says it was cut).</summary>
    internal const long LogLimit = 16L << 20;

    private readonly byte[] _ring = new byte[Capacity];
    private readonly FileStream? _log;
    private long _written;
    private long _logged;
    private bool _completed;

    internal ConsoleBuffer(string? logPath)
    {
        if (logPath is not null)
        {
            _log = new FileStream(logPath, new FileStreamOptions
            {
                Mode = FileMode.Create,
                Access = FileAccess.Write,
                Share = FileShare.Read,
                UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite,
            });
        }
    }

    /// <summary>True once the console stream ended.</summary>
    internal bool Completed
    {
        get
        {
            lock (_ring)
                return _completed;
        }
    }

    /// <summary>Adds output.</summary>
    internal void Append(ReadOnlySpan<byte> data)
    {
        lock (_ring)
        {
            foreach (byte b in data)
            {
                _ring[_written % Capacity] = b;
                _written++;
            }

            if (_log is not null && _logged < LogLimit)
            {
                int take = (int)Math.Min(data.Length, LogLimit - _logged);
                _log.Write(data[..take]);
                _logged += take;
                if (_logged == LogLimit)
                    _log.Write("\n[eif: console log cut at 16 MiB]\n"u8);
                _log.Flush();
            }

            Monitor.PulseAll(_ring);
        }
    }

    /// <summary>Marks the end of the console stream; readers get end of stream once they caught up.</summary>
    internal void Complete()
    {
        lock (_ring)
        {
            _completed = true;
            Monitor.PulseAll(_ring);
        }
    }

    /// <summary>The position of the oldest byte kept (where a new reader starts).</summary>
    internal long Oldest
    {
        get
        {
            lock (_ring)
                return Math.Max(0, _written - Capacity);
        }
    }

    /// <summary>
    /// Copies output from <paramref name="position"/> (moved forward; past data a slow reader lost is skipped),
    /// waiting up to <paramref name="wait"/> for some. Returns 0 on timeout; -1 at the end of the stream.
    /// </summary>
    internal int Read(ref long position, Span<byte> destination, TimeSpan wait)
    {
        lock (_ring)
        {
            if (position >= _written && !_completed)
                Monitor.Wait(_ring, wait);
            position = Math.Max(position, _written - Capacity);
            if (position >= _written)
                return _completed ? -1 : 0;
            int count = (int)Math.Min(destination.Length, _written - position);
            for (int i = 0; i < count; i++)
                destination[i] = _ring[(position + i) % Capacity];
            position += count;
            return count;
        }
    }

    /// <summary>A stream of the output from the oldest byte kept, then live output until <see cref="Complete"/>.</summary>
    internal Stream OpenReader() => new Reader(this);

    public void Dispose()
    {
        lock (_ring)
            _log?.Dispose();
    }

    private sealed class Reader(ConsoleBuffer buffer) : Stream
    {
        private long _position = buffer.Oldest;
        private volatile bool _closed;

        public override bool CanRead => true;

        public override bool CanSeek => false;

        public override bool CanWrite => false;

        public override long Length => throw new NotSupportedException();

        public override long Position
        {
            get => throw new NotSupportedException();
            set => throw new NotSupportedException();
        }

        public override int Read(byte[] destination, int offset, int count) => Read(destination.AsSpan(offset, count));

        public override int Read(Span<byte> destination)
        {
            while (!_closed)
            {
                int n = buffer.Read(ref _position, destination, TimeSpan.FromMilliseconds(250));
                if (n != 0)
                    return Math.Max(n, 0);
            }

            return 0;
        }

        public override void Flush()
        {
        }

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();

        public override void Write(byte[] source, int offset, int count) => throw new NotSupportedException();

        protected override void Dispose(bool disposing)
        {
            _closed = true;
            base.Dispose(disposing);
        }
    }
}

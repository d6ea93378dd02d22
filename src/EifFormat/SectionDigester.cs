using System.Buffers;
using System.Collections.Concurrent;
using IoCrc32 = System.IO.Hashing.Crc32;

namespace EifFormat;

/// <summary>Which PCRs besides PCR0 a section's data feeds (spec §6.1).</summary>
internal enum PcrRoute
{
    /// <summary>Not measured: metadata, signature, headers (CRC only).</summary>
    None,

    /// <summary>Kernel, cmdline, first ramdisk: PCR0 and PCR1.</summary>
    Bootstrap,

    /// <summary>Ramdisks after the first: PCR0 and PCR2.</summary>
    Application,
}

/// <summary>
/// Streams section data once, feeding the CRC-32, the three content PCRs and (when writing) the output.
/// </summary>
/// <remarks>
/// PCR0 covers every measured byte and PCR1/PCR2 split the same bytes, so the work is two SHA-384 passes. For
/// large images PCR0 runs on a worker thread while the calling thread reads, computes the CRC and PCR1/PCR2 and
/// writes: both cores hash at once, which is what keeps describe-eif near the cost of one SHA-384 pass
/// (issue 2's benchmark goal). Memory is bounded by <see cref="PoolBuffers"/> chunks of <see cref="ChunkSize"/>,
/// whatever the image size. Small images are hashed inline: a thread costs more than it saves there.
/// </remarks>
internal sealed class SectionDigester : IDisposable
{
    internal const int ChunkSize = 1 << 20;
    internal const long ParallelThreshold = 8L << 20;
    private const int PoolBuffers = 4;

    private readonly PcrAccumulator _image = new();
    private readonly PcrAccumulator _bootstrap = new();
    private readonly PcrAccumulator _application = new();
    private readonly IoCrc32 _crc = new();
    private readonly ImageHashWorker? _worker;
    private readonly byte[]? _inlineBuffer;
    private bool _finished;

    internal SectionDigester(long totalBytes)
    {
        if (totalBytes >= ParallelThreshold)
        {
            _worker = new ImageHashWorker(_image, PoolBuffers, ChunkSize);
        }
        else
        {
            int size = (int)Math.Clamp(totalBytes, 4096, ChunkSize);
            _inlineBuffer = ArrayPool<byte>.Shared.Rent(size);
        }
    }

    /// <summary>
    /// Copies at most <paramref name="maxLength"/> bytes from <paramref name="source"/> (until it ends), measuring
    /// them on <paramref name="route"/> and writing them to <paramref name="output"/> when given.
    /// Returns the CRC-32 of the bytes and how many there were.
    /// </summary>
    internal (uint Crc, long Length) Copy(Stream source, long maxLength, PcrRoute route, Stream? output)
    {
        if (_finished)
            throw new InvalidOperationException("The digester has finished.");
        _crc.Reset();
        long total = 0;
        while (total < maxLength)
        {
            byte[] buffer = _worker is not null ? _worker.TakeBuffer() : _inlineBuffer!;
            bool handedOff = false;
            try
            {
                int want = (int)Math.Min(buffer.Length, maxLength - total);
                int read = FillBuffer(source, buffer.AsSpan(0, want));
                if (read == 0)
                    break;
                var chunk = new ReadOnlySpan<byte>(buffer, 0, read);
                if (route != PcrRoute.None)
                {
                    if (_worker is not null)
                    {
                        // The worker returns the buffer to the pool after hashing it; this thread is done with it
                        // before it takes the next buffer, so a buffer is never refilled while still in use.
                        _worker.Post(buffer, read);
                        handedOff = true;
                    }
                    else
                    {
                        _image.Append(chunk);
                    }

                    (route == PcrRoute.Bootstrap ? _bootstrap : _application).Append(chunk);
                }

                _crc.Append(chunk);
                output?.Write(chunk);
                total += read;
                if (read < want)
                    break;
            }
            finally
            {
                if (_worker is not null && !handedOff)
                    _worker.ReturnBuffer(buffer);
            }
        }

        return (_crc.GetCurrentHashAsUInt32(), total);
    }

    /// <summary>Waits for the worker and returns PCR0, PCR1 and PCR2.</summary>
    internal (byte[] Pcr0, byte[] Pcr1, byte[] Pcr2) Finish()
    {
        if (_finished)
            throw new InvalidOperationException("The digester has finished.");
        _finished = true;
        _worker?.Complete();
        return (_image.Finish(), _bootstrap.Finish(), _application.Finish());
    }

    public void Dispose()
    {
        _worker?.Dispose();
        if (_inlineBuffer is not null)
            ArrayPool<byte>.Shared.Return(_inlineBuffer);
        _image.Dispose();
        _bootstrap.Dispose();
        _application.Dispose();
    }

    // Reads until the span is full or the source ends; a short count means the source ended.
    private static int FillBuffer(Stream source, Span<byte> buffer)
    {
        int filled = 0;
        while (filled < buffer.Length)
        {
            int read = source.Read(buffer[filled..]);
            if (read == 0)
                break;
            filled += read;
        }

        return filled;
    }

    // One thread that feeds PCR0, in chunk order, from a bounded queue; owns the buffer pool.
    private sealed class ImageHashWorker : IDisposable
    {
        private readonly PcrAccumulator _target;
        private readonly BlockingCollection<byte[]> _free;
        private readonly BlockingCollection<(byte[] Buffer, int Length)> _queue;
        private readonly Thread _thread;
        private Exception? _error;
        private bool _joined;

        internal ImageHashWorker(PcrAccumulator target, int buffers, int bufferSize)
        {
            _target = target;
            _free = new BlockingCollection<byte[]>(buffers);
            for (int i = 0; i < buffers; i++)
                _free.Add(new byte[bufferSize]);
            _queue = new BlockingCollection<(byte[], int)>(buffers);
            _thread = new Thread(Run) { IsBackground = true, Name = "eif-pcr0" };
            _thread.Start();
        }

        internal byte[] TakeBuffer()
        {
            if (_error is not null)
                Complete();
            return _free.Take();
        }

        internal void ReturnBuffer(byte[] buffer) => _free.Add(buffer);

        internal void Post(byte[] buffer, int length) => _queue.Add((buffer, length));

        // Stops accepting work, waits for the queue to drain, and rethrows a failure of the worker.
        internal void Complete()
        {
            if (!_joined)
            {
                _queue.CompleteAdding();
                _thread.Join();
                _joined = true;
            }

            if (_error is not null)
                throw new IOException("Hashing PCR0 failed.", _error);
        }

        public void Dispose()
        {
            if (!_joined)
            {
                _queue.CompleteAdding();
                _thread.Join();
                _joined = true;
            }

            _queue.Dispose();
            _free.Dispose();
        }

        private void Run()
        {
            foreach ((byte[] buffer, int length) in _queue.GetConsumingEnumerable())
            {
                try
                {
                    if (_error is null)
                        _target.Append(buffer.AsSpan(0, length));
                }
                catch (Exception ex)
                {
                    _error = ex;
                }
                finally
                {
                    _free.Add(buffer);
                }
            }
        }
    }
}

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

/// <summary>How each section type is measured.</summary>
internal static class PcrRoutes
{
    /// <summary>The route of each section, in order: kernel and cmdline and the first ramdisk feed PCR1, later
    /// ramdisks PCR2, the rest nothing (spec §6.1).</summary>
    internal static PcrRoute[] Of(IEnumerable<EifSectionType> types)
    {
        int ramdisks = 0;
        return types.Select(type => type switch
        {
            EifSectionType.Kernel or EifSectionType.Cmdline => PcrRoute.Bootstrap,
            EifSectionType.Ramdisk => ramdisks++ == 0 ? PcrRoute.Bootstrap : PcrRoute.Application,
            _ => PcrRoute.None,
        }).ToArray();
    }
}

/// <summary>
/// Streams section data once, feeding the CRC-32, the three content PCRs and (when writing) the output.
/// </summary>
/// <remarks>
/// PCR0 covers every measured byte and PCR1/PCR2 split the same bytes, so the work is two SHA-384 passes. For
/// large images a worker thread hashes PCR0 and writes the output (in chunk order) while the calling thread reads,
/// computes the CRC and PCR1/PCR2: both cores hash at once and the copy into the output is off the reading thread,
/// which keeps describe-eif near the cost of one SHA-384 pass (README, Performance; tools/bench).
/// Memory is bounded by <see cref="PoolBuffers"/> chunks of <see cref="ChunkSize"/>, whatever the image size.
/// Small images are hashed inline: a thread costs more than it saves there.
/// </remarks>
internal sealed class SectionDigester : IDisposable
{
    internal const int ChunkSize = 1 << 20;
    internal const long ParallelThreshold = 8L << 20;
    private const int PoolBuffers = 4;

    private readonly PcrAccumulator _image = new();
    private readonly PcrAccumulator _bootstrap = new();
    private readonly bool _bootstrapIsPrefix;
    private bool _applicationStarted;
    private PcrAccumulator? _bootstrapFromImage;
    private readonly PcrAccumulator _application = new();
    private readonly IoCrc32 _crc = new();
    private readonly ImageHashWorker? _worker;
    private readonly byte[]? _inlineBuffer;
    private bool _finished;

    /// <summary>Creates a digester for sections measured along <paramref name="routes"/>, in order.</summary>
    /// <remarks>
    /// When every bootstrap section precedes every application section (always, in files the reference builds),
    /// the PCR1 stream is a prefix of the PCR0 stream: PCR1 is then taken from a copy of PCR0's state where the
    /// application bytes begin, instead of hashing the bootstrap bytes a second time.
    /// </remarks>
    internal SectionDigester(long totalBytes, IReadOnlyList<PcrRoute> routes)
    {
        int lastBootstrap = -1, firstApplication = routes.Count;
        for (int i = 0; i < routes.Count; i++)
        {
            if (routes[i] == PcrRoute.Bootstrap)
                lastBootstrap = i;
            else if (routes[i] == PcrRoute.Application && firstApplication == routes.Count)
                firstApplication = i;
        }

        _bootstrapIsPrefix = lastBootstrap < firstApplication;
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
                bool measured = route != PcrRoute.None;

                // In prefix mode the state of PCR0 just before the first application byte is PCR1's.
                bool snapshot = _bootstrapIsPrefix && route == PcrRoute.Application && !_applicationStarted;
                _applicationStarted |= route == PcrRoute.Application;
                if (_worker is not null && (measured || output is not null))
                {
                    // The worker returns the buffer to the pool when done with it; this thread is done with it before
                    // it takes the next buffer, so a buffer is never refilled while still in use.
                    _worker.Post(buffer, read, measured, snapshot, output);
                    handedOff = true;
                }
                else
                {
                    if (snapshot)
                        _bootstrapFromImage = _image.Clone();
                    if (measured)
                        _image.Append(chunk);
                    output?.Write(chunk);
                }

                if (route == PcrRoute.Application)
                    _application.Append(chunk);
                else if (route == PcrRoute.Bootstrap && !_bootstrapIsPrefix)
                    _bootstrap.Append(chunk);
                _crc.Append(chunk);
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

        // The caller writes the next section header itself: the worker's writes must have landed first.
        if (output is not null)
            _worker?.Drain();
        return (_crc.GetCurrentHashAsUInt32(), total);
    }

    /// <summary>Waits for the worker and returns PCR0, PCR1 and PCR2.</summary>
    internal (byte[] Pcr0, byte[] Pcr1, byte[] Pcr2) Finish()
    {
        if (_finished)
            throw new InvalidOperationException("The digester has finished.");
        _finished = true;
        _worker?.Complete();
        PcrAccumulator? fromImage = _worker is not null ? _worker.Snapshot : _bootstrapFromImage;
        byte[] pcr0 = _image.Finish();
        byte[] pcr1 = !_bootstrapIsPrefix ? _bootstrap.Finish()
            : fromImage is not null ? fromImage.Finish()
            : pcr0; // no application bytes: the bootstrap stream is the whole image stream
        return (pcr0, pcr1, _application.Finish());
    }

    public void Dispose()
    {
        _worker?.Dispose();
        if (_inlineBuffer is not null)
            ArrayPool<byte>.Shared.Return(_inlineBuffer);
        _image.Dispose();
        _bootstrap.Dispose();
        _bootstrapFromImage?.Dispose();
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

    // One thread that feeds PCR0 and writes the output, in chunk order, from a bounded queue; owns the buffer pool.
    private sealed class ImageHashWorker : IDisposable
    {
        private readonly PcrAccumulator _target;
        private readonly BlockingCollection<byte[]> _free;
        private readonly BlockingCollection<Job> _queue;
        private readonly Thread _thread;
        private readonly object _progress = new(); // Monitor.Wait/PulseAll need a monitor, not a Lock
        private long _posted;
        private long _done;
        private Exception? _error;
        private bool _joined;

        internal ImageHashWorker(PcrAccumulator target, int buffers, int bufferSize)
        {
            _target = target;
            _free = new BlockingCollection<byte[]>(buffers);
            for (int i = 0; i < buffers; i++)
                _free.Add(new byte[bufferSize]);
            _queue = new BlockingCollection<Job>(buffers);
            _thread = new Thread(Run) { IsBackground = true, Name = "eif-pcr0" };
            _thread.Start();
        }

        internal byte[] TakeBuffer()
        {
            ThrowIfFailed();
            return _free.Take();
        }

        internal void ReturnBuffer(byte[] buffer) => _free.Add(buffer);

        /// <summary>A copy of PCR0's state taken before the chunk posted with <c>snapshot</c>; read after <see cref="Complete"/>.</summary>
        internal PcrAccumulator? Snapshot { get; private set; }

        internal void Post(byte[] buffer, int length, bool hash, bool snapshot, Stream? output)
        {
            _posted++;
            _queue.Add(new Job(buffer, length, hash, snapshot, output));
        }

        // Waits until every posted chunk has been hashed and written.
        internal void Drain()
        {
            lock (_progress)
            {
                while (_done < _posted)
                    Monitor.Wait(_progress);
            }

            ThrowIfFailed();
        }

        // Stops accepting work, waits for the queue to drain, and rethrows a failure of the worker.
        internal void Complete()
        {
            Join();
            ThrowIfFailed();
        }

        public void Dispose()
        {
            Join();
            Snapshot?.Dispose();
            _queue.Dispose();
            _free.Dispose();
        }

        private void Join()
        {
            if (_joined)
                return;
            _queue.CompleteAdding();
            _thread.Join();
            _joined = true;
        }

        // The worker's exception as it was thrown (a full disk stays an IOException naming the cause).
        private void ThrowIfFailed()
        {
            if (Volatile.Read(ref _error) is { } error)
                System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(error);
        }

        private void Run()
        {
            foreach (Job job in _queue.GetConsumingEnumerable())
            {
                try
                {
                    if (Volatile.Read(ref _error) is null)
                    {
                        var chunk = job.Buffer.AsSpan(0, job.Length);
                        job.Output?.Write(chunk);
                        if (job.Snapshot)
                            Snapshot = _target.Clone();
                        if (job.Hash)
                            _target.Append(chunk);
                    }
                }
                catch (Exception ex)
                {
                    Volatile.Write(ref _error, ex);
                }
                finally
                {
                    _free.Add(job.Buffer);
                    lock (_progress)
                    {
                        _done++;
                        Monitor.PulseAll(_progress);
                    }
                }
            }
        }

        private readonly record struct Job(byte[] Buffer, int Length, bool Hash, bool Snapshot, Stream? Output);
    }
}

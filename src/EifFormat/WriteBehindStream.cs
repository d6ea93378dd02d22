using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace EifFormat;

/// <summary>
/// A file stream that, every <see cref="Interval"/> bytes written, asks Linux to start writing the new pages back
/// (<c>sync_file_range(SYNC_FILE_RANGE_WRITE)</c>, which does not wait). The disk then works while the writer
/// hashes, and the final fsync before the atomic rename has little left to do: measured on a 1 GiB build-eif,
/// the fsync otherwise blocks for about 0.35 s at the end (tools/bench). The call itself can block for
/// milliseconds when the device queue is full (0.13 s in all for 1 GiB, measured with strace), so it is made
/// on a thread-pool thread, one at a time, never on the writing thread. Elsewhere it is a plain pass-through.
/// </summary>
internal sealed partial class WriteBehindStream(FileStream inner) : Stream
{
    internal const long Interval = 32L << 20;

    // SYNC_FILE_RANGE_WRITE, include/uapi/linux/fs.h: start write-out of dirty pages in the range, do not wait.
    private const uint SyncFileRangeWrite = 2;

    private static bool s_supported = OperatingSystem.IsLinux();
    private long _flushedUpTo;
    private Task _pending = Task.CompletedTask;

    public override bool CanRead => inner.CanRead;

    public override bool CanSeek => inner.CanSeek;

    public override bool CanWrite => inner.CanWrite;

    public override long Length => inner.Length;

    public override long Position
    {
        get => inner.Position;
        set => inner.Position = value;
    }

    public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));

    public override void Write(ReadOnlySpan<byte> buffer)
    {
        inner.Write(buffer);
        long position = inner.Position;
        if (position - _flushedUpTo >= Interval && s_supported)
        {
            inner.Flush();
            long start = _flushedUpTo, length = position - start;
            SafeFileHandle handle = inner.SafeFileHandle;

            // sync_file_range takes the range explicitly and does not move the file position, so it is safe next
            // to the writes; the handle is reference-counted by the marshaller for the duration of the call.
            _pending = _pending.ContinueWith(_ => StartWriteOut(handle, start, length), TaskScheduler.Default);
            _flushedUpTo = position;
        }
    }

    /// <summary>Waits for the write-out requests in flight (before the file is fsynced and closed).</summary>
    internal void Complete() => _pending.Wait();

    protected override void Dispose(bool disposing)
    {
        if (disposing)
            _pending.Wait();
        base.Dispose(disposing);
    }

    private static void StartWriteOut(SafeFileHandle handle, long start, long length)
    {
        if (!s_supported || handle.IsClosed)
            return;
        try
        {
            // A failure only loses the overlap; the final fsync still makes the file durable.
            _ = SyncFileRange(handle, start, length, SyncFileRangeWrite);
        }
        catch (Exception ex) when (ex is EntryPointNotFoundException or DllNotFoundException)
        {
            s_supported = false;
        }
    }

    public override int Read(byte[] buffer, int offset, int count) => inner.Read(buffer, offset, count);

    public override int Read(Span<byte> buffer) => inner.Read(buffer);

    public override long Seek(long offset, SeekOrigin origin) => inner.Seek(offset, origin);

    public override void SetLength(long value)
    {
        inner.SetLength(value);
        _flushedUpTo = Math.Min(_flushedUpTo, value);
    }

    public override void Flush() => inner.Flush();

    // int sync_file_range(int fd, off64_t offset, off64_t nbytes, unsigned int flags); glibc, Linux ≥ 2.6.17.
    [LibraryImport("libc", EntryPoint = "sync_file_range", SetLastError = true)]
    private static partial int SyncFileRange(SafeFileHandle fd, long offset, long nbytes, uint flags);
}

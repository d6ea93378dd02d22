using System.Globalization;
using System.Text;

namespace EifBuilder.Cpio;

/// <summary>
/// A read-only stream that produces an SVR4 "newc" cpio archive from entries, on demand, so a ramdisk is never held
/// in memory: header, name and data of one entry at a time. The layout is linuxkit's, which nitro-cli uses
/// (spec builder.md §6.1): c_ino counts up from <see cref="FirstInode"/> (trailer included), c_dev is 3:1, c_nlink
/// is 2 for directories and 1 otherwise (the link count for hard links), names and data are padded to 4 bytes from
/// the start of the archive, and the archive is zero-padded to a multiple of 512 after <c>TRAILER!!!</c>. Every
/// field is checked against its 32 bits (linuxkit's writer is not, and emits broken headers past 4 GiB).
/// </summary>
public sealed class CpioArchiveStream : Stream
{
    /// <summary>linuxkit's first inode number (initrd.go); kept so a bootstrap ramdisk matches nitro-cli's bytes.</summary>
    public const uint FirstInode = 721;

    /// <summary>Archive length granularity after the trailer (linuxkit pads to 512).</summary>
    public const int TailAlignment = 512;

    private const int HeaderSize = 110;

    private readonly IEnumerator<CpioEntry> _entries;
    private readonly Dictionary<object, uint> _inodes = new(ReferenceEqualityComparer.Instance);
    private uint _nextInode = FirstInode;
    private long _position;
    private byte[] _pending = [];
    private int _pendingOffset;
    private Stream? _data;
    private CpioEntry? _dataEntry;
    private long _dataRemaining;
    private int _dataPadding;
    private bool _trailerWritten;
    private bool _finished;

    /// <summary>Creates the stream; entries are enumerated lazily, as the archive is read.</summary>
    public CpioArchiveStream(IEnumerable<CpioEntry> entries) => _entries = entries.GetEnumerator();

    /// <summary>Called after each entry is emitted (for progress).</summary>
    public Action<CpioEntry>? EntryWritten { get; init; }

    /// <inheritdoc/>
    public override bool CanRead => true;

    /// <inheritdoc/>
    public override bool CanSeek => false;

    /// <inheritdoc/>
    public override bool CanWrite => false;

    /// <inheritdoc/>
    public override long Length => throw new NotSupportedException();

    /// <inheritdoc/>
    public override long Position
    {
        get => _position;
        set => throw new NotSupportedException();
    }

    /// <summary>The encoded 110-byte header of an entry (exposed for tests).</summary>
    public static byte[] EncodeHeader(uint inode, int mode, long uid, long gid, uint nlink, long mtime, long size, long rdevMajor, long rdevMinor, int nameSize)
    {
        var sb = new StringBuilder(HeaderSize);
        sb.Append("070701");
        foreach (long field in new[] { inode, mode, uid, gid, nlink, mtime, size, 3L, 1L, rdevMajor, rdevMinor, nameSize, 0L })
            sb.Append(((uint)field).ToString("x8", CultureInfo.InvariantCulture));
        return Encoding.ASCII.GetBytes(sb.ToString());
    }

    /// <inheritdoc/>
    public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

    /// <inheritdoc/>
    public override int Read(Span<byte> buffer)
    {
        int total = 0;
        while (total < buffer.Length)
        {
            if (_pendingOffset < _pending.Length)
            {
                int n = Math.Min(buffer.Length - total, _pending.Length - _pendingOffset);
                _pending.AsSpan(_pendingOffset, n).CopyTo(buffer[total..]);
                _pendingOffset += n;
                total += n;
                _position += n;
                continue;
            }

            if (_data is not null)
            {
                if (_dataRemaining > 0)
                {
                    int want = (int)Math.Min(buffer.Length - total, _dataRemaining);
                    int n = _data.Read(buffer.Slice(total, want));
                    if (n == 0)
                        throw Changed(_dataEntry!, _dataEntry!.Size - _dataRemaining);
                    _dataRemaining -= n;
                    total += n;
                    _position += n;
                    continue;
                }

                if (_data.ReadByte() >= 0)
                    throw Changed(_dataEntry!, _dataEntry!.Size + 1);
                _data.Dispose();
                _data = null;
                SetPending(new byte[_dataPadding]);
                EntryWritten?.Invoke(_dataEntry!);
                continue;
            }

            if (_finished || !Advance())
                break;
        }

        return total;
    }

    /// <inheritdoc/>
    public override void Flush()
    {
    }

    /// <inheritdoc/>
    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

    /// <inheritdoc/>
    public override void SetLength(long value) => throw new NotSupportedException();

    /// <inheritdoc/>
    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();

    /// <inheritdoc/>
    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            _data?.Dispose();
            _entries.Dispose();
        }

        base.Dispose(disposing);
    }

    // Queues the next entry's header and name (and opens its data), or the trailer and final padding.
    private bool Advance()
    {
        if (_entries.MoveNext())
        {
            Emit(_entries.Current);
            return true;
        }

        if (!_trailerWritten)
        {
            _trailerWritten = true;
            byte[] trailer = HeaderAndName("TRAILER!!!", _nextInode++, 0, 0, 0, 1, 0, 0, 0, 0);
            long end = _position + trailer.Length;
            long tail = (TailAlignment - (end % TailAlignment)) % TailAlignment;
            SetPending([.. trailer, .. new byte[tail]]);
            return true;
        }

        _finished = true;
        return false;
    }

    private void Emit(CpioEntry entry)
    {
        Check(entry.Uid, "uid", entry);
        Check(entry.Gid, "gid", entry);
        Check(entry.ModTime, "mtime", entry);
        Check(entry.Size, "size", entry);
        Check(entry.RdevMajor, "device major", entry);
        Check(entry.RdevMinor, "device minor", entry);
        if (entry.Name.Length == 0 || entry.Name.Contains('\0', StringComparison.Ordinal))
            throw new ArgumentException($"A cpio name must be non-empty and hold no NUL: '{entry.Name}'.", nameof(entry));

        uint inode;
        if (entry.Inode is null)
            inode = _nextInode++;
        else if (!_inodes.TryGetValue(entry.Inode, out inode))
            _inodes[entry.Inode] = inode = _nextInode++;
        uint nlink = entry.LinkCount > 0 ? (uint)entry.LinkCount : entry.Kind == CpioKind.Directory ? 2u : 1u;
        int mode = (int)entry.Kind | (entry.Mode & 0xFFF);
        byte[] header = HeaderAndName(entry.Name, inode, mode, entry.Uid, entry.Gid, nlink, entry.ModTime, entry.Size, entry.RdevMajor, entry.RdevMinor);
        int dataPadding = (int)((4 - (entry.Size % 4)) % 4);
        if (entry.Data is { } data)
        {
            if (data.LongLength != entry.Size)
                throw new ArgumentException($"Entry '{entry.Name}' declares {entry.Size} bytes but holds {data.Length}.", nameof(entry));
            SetPending([.. header, .. data, .. new byte[dataPadding]]);
            EntryWritten?.Invoke(entry);
        }
        else if (entry.Size > 0)
        {
            SetPending(header);
            _data = (entry.OpenData ?? throw new ArgumentException($"Entry '{entry.Name}' has {entry.Size} bytes but no data.", nameof(entry)))();
            _dataEntry = entry;
            _dataRemaining = entry.Size;
            _dataPadding = dataPadding;
        }
        else
        {
            SetPending(header);
            EntryWritten?.Invoke(entry);
        }
    }

    // Header, name, NUL and the padding that brings the next byte to a 4-byte boundary of the archive.
    private byte[] HeaderAndName(string name, uint inode, int mode, long uid, long gid, uint nlink, long mtime, long size, long rdevMajor, long rdevMinor)
    {
        byte[] nameBytes = Encoding.Latin1.GetBytes(name); // names are raw bytes held as Latin-1 (see TarStreamReader)
        byte[] header = EncodeHeader(inode, mode, uid, gid, nlink, mtime, size, rdevMajor, rdevMinor, nameBytes.Length + 1);
        long end = _position + HeaderSize + nameBytes.Length + 1;
        int padding = (int)((4 - (end % 4)) % 4);
        return [.. header, .. nameBytes, 0, .. new byte[padding]];
    }

    private void SetPending(byte[] bytes)
    {
        _pending = bytes;
        _pendingOffset = 0;
    }

    private static void Check(long value, string field, CpioEntry entry)
    {
        if (value is < 0 or > uint.MaxValue)
        {
            throw new EnclaveBuildException(BuildError.TooLarge,
                $"'{entry.Name}': {field} {value} does not fit the 32-bit field of a newc cpio archive (0 to {uint.MaxValue})");
        }
    }

    private static EnclaveBuildException Changed(CpioEntry entry, long got) =>
        new(BuildError.InvalidLayer, $"'{entry.Name}': {entry.Size} bytes were expected, {(got > entry.Size ? "more" : got.ToString(CultureInfo.InvariantCulture))} were read (the source changed while the image was built)");
}

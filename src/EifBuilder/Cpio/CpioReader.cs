using System.Globalization;
using System.IO.Compression;
using System.Text;
using EifBuilder.Layers;

namespace EifBuilder.Cpio;

/// <summary>
/// One entry of a newc archive as read: the header's fields and the name. The data is read through
/// <see cref="CpioReader.OpenData"/> while the entry is the reader's current one.
/// </summary>
/// <param name="Name">The name as stored, without its NUL (Latin-1: names are bytes, and this keeps every byte).</param>
/// <param name="Inode">c_ino.</param>
/// <param name="RawMode">c_mode: type bits and permissions.</param>
/// <param name="Uid">c_uid.</param>
/// <param name="Gid">c_gid.</param>
/// <param name="LinkCount">c_nlink.</param>
/// <param name="ModTime">c_mtime, Unix seconds.</param>
/// <param name="Size">c_filesize.</param>
/// <param name="DevMajor">c_devmajor.</param>
/// <param name="DevMinor">c_devminor.</param>
/// <param name="RdevMajor">c_rdevmajor (devices).</param>
/// <param name="RdevMinor">c_rdevminor (devices).</param>
/// <param name="Offset">Where the header starts in the (decompressed) archive.</param>
public sealed record CpioRecord(
    string Name, uint Inode, uint RawMode, uint Uid, uint Gid, uint LinkCount, uint ModTime, uint Size,
    uint DevMajor, uint DevMinor, uint RdevMajor, uint RdevMinor, long Offset)
{
    /// <summary>The file type, or null for type bits that are none of newc's (S_IFSOCK, or garbage).</summary>
    public CpioKind? Kind => Enum.IsDefined(typeof(CpioKind), (int)(RawMode & 0xF000)) ? (CpioKind)(RawMode & 0xF000) : null;

    /// <summary>Permission and special bits (the low 12 bits of c_mode).</summary>
    public int Permissions => (int)(RawMode & 0xFFF);
}

/// <summary>How a ramdisk (or an image layer) is stored: the formats the kernel's initramfs unpacker would see, told apart by their magic numbers.</summary>
public enum RamdiskCompression
{
    /// <summary>Plain newc.</summary>
    None,

    /// <summary>gzip (RFC 1952), magic 1f 8b.</summary>
    Gzip,

    /// <summary>Zstandard (RFC 8878), magic 28 b5 2f fd.</summary>
    Zstd,
}

/// <summary>
/// A streaming reader of SVR4 "newc" cpio archives (070701, and 070702 with its checksum checked), the format of
/// initramfs (kernel Documentation/driver-api/early-userspace/buffer-format.rst) and of every EIF ramdisk. It reads
/// one header at a time and never holds data in memory; an entry's data is a bounded stream valid until the next
/// <see cref="Next"/>. As the kernel does, it reads archives that follow each other (after a trailer, zero padding,
/// then another archive), and gzip or zstd compressed ones (each segment detected by its magic). Every field is
/// checked before it is used: magic, hex digits, name size against PATH_MAX and the NUL, data against what
/// remains; a bad archive is one <see cref="EnclaveBuildException"/> (<see cref="BuildError.InvalidRamdisk"/>) naming
/// the source, the entry, the field, the offset and the numbers.
/// </summary>
public sealed class CpioReader : IDisposable
{
    /// <summary>The longest name accepted, with its NUL (PATH_MAX, linux/limits.h; the kernel's unpacker refuses more).</summary>
    public const int MaxNameSize = 4096;

    /// <summary>The trailer entry's name.</summary>
    public const string TrailerName = "TRAILER!!!";

    private const int HeaderSize = 110;
    private static readonly string[] FieldNames =
        ["c_ino", "c_mode", "c_uid", "c_gid", "c_nlink", "c_mtime", "c_filesize", "c_devmajor", "c_devminor", "c_rdevmajor", "c_rdevminor", "c_namesize", "c_check"];

    private readonly string _source;
    private readonly bool _leaveOpen;
    private readonly Stream _outer;
    private Stream _input;
    private long _position; // in the current segment's (decompressed) bytes
    private long _segmentBase; // where the current segment starts in the overall numbering (for messages)
    private CpioRecord? _current;
    private long _dataLeft;
    private int _dataPadding;
    private uint _checksum;
    private uint _expectedChecksum;
    private bool _checkSum;
    private bool _done;
    private readonly byte[] _header = new byte[HeaderSize];
    private byte[]? _skip; // for data nobody reads, and padding: allocated once, when first needed

    /// <summary>Reads the archive in <paramref name="stream"/>; <paramref name="source"/> names it in messages ("ramdisk 1 of app.eif").</summary>
    public CpioReader(Stream stream, string source, bool leaveOpen = false)
    {
        _outer = stream;
        _source = source;
        _leaveOpen = leaveOpen;
        // A compressed archive may expand to at most this much (a decompression bomb is refused, not read for hours).
        _expansionLimit = stream.CanSeek ? (MaxExpansion * Math.Max(0, stream.Length - stream.Position)) + ExpansionAllowance : long.MaxValue;
        var peek = new PeekableStream(stream, leaveOpen: true);
        Compression = peek.Compression;
        _input = Open(peek, Compression);
    }

    /// <summary>How many times its compressed size a compressed archive may expand to, plus <see cref="ExpansionAllowance"/> (deflate's best ratio is about 1032:1, RFC 1951; real initramfs images expand 3–10 times).</summary>
    public const long MaxExpansion = 1024;

    /// <summary>What any compressed archive may expand to beyond <see cref="MaxExpansion"/> times its size.</summary>
    public const long ExpansionAllowance = 64L << 20;

    private readonly long _expansionLimit;
    private long _decompressed; // bytes read from decompressors

    /// <summary>How the first archive is stored.</summary>
    public RamdiskCompression Compression { get; }

    /// <summary>How many archives have been read so far (1 after the first trailer, …).</summary>
    public int ArchivesRead { get; private set; }

    /// <summary>The next entry (the trailers are not returned), or null at the end of the last archive.</summary>
    /// <exception cref="EnclaveBuildException">A malformed archive (<see cref="BuildError.InvalidRamdisk"/>).</exception>
    public CpioRecord? Next()
    {
        SkipData();
        while (!_done)
        {
            long at = _position;
            int got = ReadFully(_header, 0, 6);
            if (got == 0 && ArchivesRead > 0)
            {
                _done = true;
                break;
            }

            if (got < 6)
                throw Bad(at, "the archive ends inside an entry header", $"{got} of {HeaderSize} bytes");
            string magic = Encoding.ASCII.GetString(_header, 0, 6);
            if (magic is not ("070701" or "070702"))
            {
                string hex = Convert.ToHexString(_header, 0, 6).ToLowerInvariant();
                throw Bad(at, ArchivesRead == 0 && at == 0 ? "not a newc cpio archive" : "no entry header here", $"magic {hex}, expected 070701 (\"newc\") or 070702");
            }

            got = ReadFully(_header, 6, HeaderSize - 6);
            if (got < HeaderSize - 6)
                throw Bad(at, "the archive ends inside an entry header", $"{6 + got} of {HeaderSize} bytes");
            var fields = new uint[13];
            for (int i = 0; i < 13; i++)
                fields[i] = Hex(at, i);
            uint nameSize = fields[11];
            if (nameSize is 0 or > MaxNameSize)
                throw Bad(at, $"c_namesize is {nameSize}", $"a name takes 1 to {MaxNameSize} bytes with its NUL");
            byte[] name = new byte[nameSize];
            got = ReadFully(name, 0, (int)nameSize);
            if (got < nameSize)
                throw Bad(at, "the archive ends inside an entry name", $"{got} of c_namesize {nameSize} bytes");
            if (name[^1] != 0)
                throw Bad(at, "the name does not end with a NUL", $"c_namesize {nameSize}, last byte 0x{name[^1]:x2}");
            int nul = Array.IndexOf(name, (byte)0);
            if (nul != nameSize - 1)
                throw Bad(at, "the name has a NUL inside", $"at byte {nul} of c_namesize {nameSize}");
            SkipPadding(at, "after the name");

            string text = Encoding.Latin1.GetString(name, 0, (int)nameSize - 1);
            var record = new CpioRecord(text, fields[0], fields[1], fields[2], fields[3], fields[4], fields[5], fields[6], fields[7], fields[8], fields[9], fields[10], _segmentBase + at);
            _checkSum = magic == "070702";
            _checksum = 0;
            if (text == TrailerName)
            {
                // The trailer's data (normally none) is skipped; then zero padding, then maybe another archive.
                _current = record;
                _dataLeft = record.Size;
                _dataPadding = Pad(record.Size);
                SkipData();
                ArchivesRead++;
                NextSegment();
                continue;
            }

            _current = record;
            _dataLeft = record.Size;
            _dataPadding = Pad(record.Size);
            if (_checkSum is false && fields[12] != 0)
                throw Bad(at, $"c_check is {fields[12]:x8} in a 070701 entry", "it must be 0 without a checksum");
            _expectedChecksum = fields[12];
            return record;
        }

        return null;
    }

    /// <summary>The current entry's data (exactly <see cref="CpioRecord.Size"/> bytes), valid until the next <see cref="Next"/>.</summary>
    public Stream OpenData()
    {
        if (_current is null)
            throw new InvalidOperationException("no current entry");
        return new DataStream(this);
    }

    /// <summary>Reads the current entry's data as text (symlink targets), at most <paramref name="max"/> bytes.</summary>
    /// <exception cref="EnclaveBuildException">The data is longer than <paramref name="max"/>.</exception>
    public string ReadText(int max = MaxNameSize)
    {
        CpioRecord record = _current ?? throw new InvalidOperationException("no current entry");
        if (record.Size > max)
            throw Bad(record.Offset - _segmentBase, $"a link target of {record.Size} bytes", $"at most {max}");
        byte[] data = new byte[record.Size];
        using Stream stream = OpenData();
        stream.ReadExactly(data);
        return Encoding.Latin1.GetString(data);
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        _input.Dispose(); // wrappers only: they leave the caller's stream open
        if (!_leaveOpen)
            _outer.Dispose();
    }

    private static int Pad(long offset) => (int)((4 - (offset & 3)) & 3);

    private static Stream Open(Stream stream, RamdiskCompression compression) => compression switch
    {
        RamdiskCompression.Gzip => new GZipStream(stream, CompressionMode.Decompress, leaveOpen: true),
        // (bufferSize, checkEndOfStream, leaveOpen) as the builder's layers use it (LayerStore).
        RamdiskCompression.Zstd => new SharpCompress.Compressors.ZStandard.DecompressionStream(stream, 1 << 17, true, true),
        _ => stream,
    };

    // After a trailer: zero padding (any length), then the end, or another archive, maybe compressed (the kernel's
    // unpack_to_rootfs reads a buffer of concatenated, individually compressed archives the same way).
    private void NextSegment()
    {
        byte[] one = _header;
        while (true)
        {
            if (ReadFully(one, 0, 1) == 0)
            {
                // The end. (After a compressed archive this is the end of its decompressed bytes; an archive stored
                // after it in the same ramdisk is not read: the decompressor may have read past the member's end.)
                _done = true;
                return;
            }

            if (one[0] != 0)
                break;
        }

        // A new archive starts with this byte: put it back in front of the rest.
        _segmentBase += _position - 1;
        var peek = new PeekableStream(_input, [one[0]], leaveOpen: true);
        _input = Open(peek, peek.Compression);
        _position = 0;
    }

    private uint Hex(long at, int index)
    {
        uint value = 0;
        for (int i = 0; i < 8; i++)
        {
            byte c = _header[6 + (8 * index) + i];
            int digit = c switch
            {
                >= (byte)'0' and <= (byte)'9' => c - '0',
                >= (byte)'a' and <= (byte)'f' => c - 'a' + 10,
                >= (byte)'A' and <= (byte)'F' => c - 'A' + 10,
                _ => -1,
            };
            if (digit < 0)
            {
                string shown = Encoding.Latin1.GetString(_header, 6 + (8 * index), 8);
                throw Bad(at, $"{FieldNames[index]} is not 8 hex digits", $"'{Printable(shown)}'");
            }

            value = (value << 4) | (uint)digit;
        }

        return value;
    }

    private static string Printable(string text) => new(text.Select(c => c is >= ' ' and < '\x7f' ? c : '?').ToArray());

    private byte[] Scratch => _skip ??= new byte[64 << 10];

    private void SkipPadding(long at, string where)
    {
        int pad = Pad(_position);
        if (pad == 0)
            return;
        if (ReadFully(_header, 0, pad) < pad)
            throw Bad(at, $"the archive ends in the padding {where}", $"{pad} bytes expected");
    }

    private void SkipData()
    {
        if (_current is null)
            return;
        byte[] buffer = Scratch;
        while (_dataLeft > 0)
        {
            int n = ReadData(buffer, 0, (int)Math.Min(buffer.Length, _dataLeft));
            if (n == 0)
                break;
        }

        FinishData();
    }

    // Reads up to count bytes of the current entry's data.
    private int ReadData(byte[] buffer, int offset, int count)
    {
        CpioRecord record = _current!;
        count = (int)Math.Min(count, _dataLeft);
        if (count == 0)
            return 0;
        int n = ReadFully(buffer, offset, count);
        if (n < count)
        {
            long dataStart = record.Offset - _segmentBase + HeaderSize + Encoding.Latin1.GetByteCount(record.Name) + 1;
            throw Bad(record.Offset - _segmentBase, $"the archive ends inside the data of '{Printable(record.Name)}'",
                $"c_filesize {record.Size}, {record.Size - _dataLeft + n} bytes present from offset about {_segmentBase + dataStart}");
        }

        if (_checkSum)
        {
            for (int i = 0; i < n; i++)
                _checksum = unchecked(_checksum + buffer[offset + i]);
        }

        _dataLeft -= n;
        return n;
    }

    private void FinishData()
    {
        if (_current is null)
            return;
        CpioRecord record = _current;
        _current = null;
        if (_checkSum && _dataLeft == 0 && _checksum != _expectedChecksum && record.Name != TrailerName)
            throw Bad(record.Offset - _segmentBase, $"the checksum of '{Printable(record.Name)}' is {_checksum:x8}", $"c_check says {_expectedChecksum:x8}");
        if (_dataPadding > 0)
        {
            if (ReadFully(_header, 0, _dataPadding) < _dataPadding && record.Name != TrailerName)
                throw Bad(record.Offset - _segmentBase, $"the archive ends in the padding after the data of '{Printable(record.Name)}'", $"{_dataPadding} bytes expected");
            _dataPadding = 0;
        }
    }

    private int ReadFully(byte[] buffer, int offset, int count)
    {
        int total = 0;
        try
        {
            while (total < count)
            {
                int n = _input.Read(buffer, offset + total, count - total);
                if (n == 0)
                    break;
                total += n;
            }
        }
        catch (Exception ex) when (ex is InvalidDataException or InvalidOperationException || ex.GetType().Namespace?.StartsWith("SharpCompress", StringComparison.Ordinal) == true)
        {
            throw new EnclaveBuildException(BuildError.InvalidRamdisk, $"{_source}: the compressed data is corrupt at about offset {_segmentBase + _position + total}: {ex.Message}", ex);
        }

        _position += total;
        if (_input is not PeekableStream)
        {
            _decompressed += total;
            if (_decompressed > _expansionLimit)
            {
                throw new EnclaveBuildException(BuildError.InvalidRamdisk,
                    $"{_source}: the compressed archive expands to more than {_expansionLimit} bytes ({MaxExpansion} times its size plus {ExpansionAllowance >> 20} MiB); refused as a decompression bomb");
            }
        }

        return total;
    }

    private EnclaveBuildException Bad(long at, string what, string numbers) =>
        new(BuildError.InvalidRamdisk, $"{_source}: {what} ({numbers}; entry header at offset {_segmentBase + at}{(Compression == RamdiskCompression.None ? string.Empty : " of the decompressed archive")})");

    /// <summary>The current entry's data: exactly its size, then end of stream.</summary>
    private sealed class DataStream(CpioReader reader) : Stream
    {
        private readonly CpioRecord? _entry = reader._current;

        public override bool CanRead => true;

        public override bool CanSeek => false;

        public override bool CanWrite => false;

        public override long Length => _entry?.Size ?? 0;

        public override long Position
        {
            get => (_entry?.Size ?? 0) - reader._dataLeft;
            set => throw new NotSupportedException();
        }

        public override int Read(byte[] buffer, int offset, int count)
        {
            if (!ReferenceEquals(reader._current, _entry) || _entry is null)
                return 0; // the reader moved on
            int n = reader.ReadData(buffer, offset, count);
            if (reader._dataLeft == 0)
                reader.FinishData();
            return n;
        }

        public override void Flush()
        {
        }

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();

        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    }
}

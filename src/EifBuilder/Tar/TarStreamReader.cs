using System.Buffers;
using System.Globalization;
using System.Text;

namespace EifBuilder.Tar;

/// <summary>
/// A forward-only tar reader that yields entry headers and skips their data, so that a layer can be indexed in one
/// sequential pass (while its digest is computed) and its files read later by offset. Reads POSIX ustar, GNU
/// (long names 'L'/'K', base-256 numbers) and PAX ('x' records for path, linkpath, size, uid, gid, mtime;
/// 'g' ignored). Every length is checked before it is used; errors name the entry and the offset.
/// </summary>
/// <remarks>
/// System.Formats.Tar and SharpCompress both read tar, but neither exposes where an entry's data starts, which
/// the builder needs to stream files in its own order later. Names and link targets are kept as raw bytes, held
/// as Latin-1 strings (one char per byte), so that a name in any encoding reaches the ramdisk unchanged and sorts
/// by byte value; PAX values, which are UTF-8, are taken as their bytes too.
/// </remarks>
public sealed class TarStreamReader
{
    private const int BlockSize = 512;

    // Caps on metadata blocks read into memory: generous for real archives, small against a hostile size field.
    private const long MaxPaxSize = 1 << 20;
    private const long MaxLongNameSize = 64 << 10;

    private readonly Stream _stream;
    private readonly string _what;
    private readonly bool _seekToSkip;
    private readonly byte[] _block = new byte[BlockSize];
    private long _position;
    private bool _done;

    /// <summary>Creates a reader over <paramref name="stream"/>, whose current position is offset 0 of the tar.</summary>
    /// <param name="stream">The tar bytes.</param>
    /// <param name="what">A name for messages, e.g. "layer 2 (sha256:…)".</param>
    /// <param name="seekToSkip">Skip entry data by seeking (indexing an archive) instead of reading it through (hashing a layer).</param>
    public TarStreamReader(Stream stream, string what, bool seekToSkip = false)
    {
        _stream = stream;
        _what = what;
        _seekToSkip = seekToSkip && stream.CanSeek;
    }

    /// <summary>Bytes consumed so far.</summary>
    public long Position => _position;

    /// <summary>
    /// Reads the next entry's header(s) and skips its data. Returns null at the end of the archive (two zero blocks,
    /// or one zero block then the end of the stream).
    /// </summary>
    /// <exception cref="EnclaveBuildException"><see cref="BuildError.InvalidLayer"/>.</exception>
    public TarEntry? Next()
    {
        if (_done)
            return null;
        string? longName = null, longLink = null;
        Dictionary<string, string>? pax = null;
        while (true)
        {
            long headerOffset = _position;
            if (!ReadBlock(allowEnd: true))
            {
                // The end of the stream without end-of-archive blocks: some writers stop there; accept it.
                _done = true;
                return null;
            }

            if (IsZero(_block))
            {
                // Two zero blocks end the archive; one zero block and the end of the stream is tolerated.
                _done = true;
                if (ReadBlock(allowEnd: true) && !IsZero(_block))
                    throw Invalid(headerOffset, "a zero block is followed by data (a damaged archive or a concatenation)");
                return null;
            }

            VerifyChecksum(headerOffset);
            byte type = _block[156];
            long size = ParseNumber(_block.AsSpan(124, 12), "size", headerOffset);
            switch (type)
            {
                case (byte)'x':
                    pax = ReadPax(ReadMetadataBlock(size, MaxPaxSize, "PAX header", headerOffset), headerOffset);
                    continue;
                case (byte)'g':
                    SkipData(size); // global PAX defaults: nothing this builder uses
                    continue;
                case (byte)'L':
                    longName = CString(ReadMetadataBlock(size, MaxLongNameSize, "GNU long name", headerOffset));
                    continue;
                case (byte)'K':
                    longLink = CString(ReadMetadataBlock(size, MaxLongNameSize, "GNU long link name", headerOffset));
                    continue;
            }

            string name = longName ?? UstarName(_block);
            string link = longLink ?? CString(_block.AsSpan(157, 100));
            long uid = ParseNumber(_block.AsSpan(108, 8), "uid", headerOffset);
            long gid = ParseNumber(_block.AsSpan(116, 8), "gid", headerOffset);
            long mtime = ParseNumber(_block.AsSpan(136, 12), "mtime", headerOffset);
            int mode = (int)(ParseNumber(_block.AsSpan(100, 8), "mode", headerOffset) & 0xFFF);
            long devMajor = 0, devMinor = 0;
            if (pax is not null)
            {
                name = pax.GetValueOrDefault("path", name);
                link = pax.GetValueOrDefault("linkpath", link);
                size = PaxNumber(pax, "size", size, headerOffset);
                uid = PaxNumber(pax, "uid", uid, headerOffset);
                gid = PaxNumber(pax, "gid", gid, headerOffset);
                if (pax.TryGetValue("mtime", out string? m))
                    mtime = ParsePaxTime(m, headerOffset);
            }

            TarEntryKind kind = type switch
            {
                (byte)'0' or 0 or (byte)'7' => TarEntryKind.File,
                (byte)'1' => TarEntryKind.HardLink,
                (byte)'2' => TarEntryKind.Symlink,
                (byte)'3' => TarEntryKind.CharDevice,
                (byte)'4' => TarEntryKind.BlockDevice,
                (byte)'5' => TarEntryKind.Directory,
                (byte)'6' => TarEntryKind.Fifo,
                _ => throw Invalid(headerOffset, $"entry '{Printable(name)}' has tar type '{Printable(((char)type).ToString())}' (0x{type:X2}), which a root filesystem cannot hold (GNU sparse, multi-volume and vendor types are not supported)"),
            };
            if (kind is TarEntryKind.CharDevice or TarEntryKind.BlockDevice)
            {
                devMajor = ParseNumber(_block.AsSpan(329, 8), "devmajor", headerOffset);
                devMinor = ParseNumber(_block.AsSpan(337, 8), "devminor", headerOffset);
            }

            if (name.Length == 0)
                throw Invalid(headerOffset, "an entry has an empty name");
            if (name.Contains('\0', StringComparison.Ordinal) || link.Contains('\0', StringComparison.Ordinal))
                throw Invalid(headerOffset, $"entry '{Printable(name)}' has a NUL in its name or link target");

            // Only regular files carry data; a size on anything else is skipped as a writer would have written it.
            long dataOffset = _position;
            SkipData(size);
            return new TarEntry(name, kind, mode, uid, gid, mtime, kind == TarEntryKind.File ? size : 0, dataOffset, link, devMajor, devMinor);
        }
    }

    /// <summary>Reads the rest of the stream (the end-of-archive padding) so a digest over the stream is complete.</summary>
    public void Drain()
    {
        byte[] buffer = ArrayPool<byte>.Shared.Rent(1 << 16);
        try
        {
            int read;
            while ((read = _stream.Read(buffer)) > 0)
                _position += read;
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    private bool ReadBlock(bool allowEnd)
    {
        int total = 0;
        while (total < BlockSize)
        {
            int read = _stream.Read(_block.AsSpan(total));
            if (read == 0)
            {
                if (total == 0 && allowEnd)
                    return false;
                throw Invalid(_position + total, $"the stream ends inside a 512-byte header ({total} bytes present)");
            }

            total += read;
        }

        _position += BlockSize;
        return true;
    }

    // Skips an entry's data and its padding to the next 512-byte boundary, reading through (the caller may hash).
    private void SkipData(long size)
    {
        long padded = checked(size + (BlockSize - 1)) / BlockSize * BlockSize;
        if (_seekToSkip)
        {
            long left = _stream.Length - _stream.Position;
            if (padded > left)
                throw Invalid(_position, $"an entry's data ({size} bytes) runs past the end of the archive ({left} bytes left)");
            _stream.Seek(padded, SeekOrigin.Current);
            _position += padded;
            return;
        }

        byte[] buffer = ArrayPool<byte>.Shared.Rent(1 << 20);
        try
        {
            long remaining = padded;
            while (remaining > 0)
            {
                int read = _stream.Read(buffer, 0, (int)Math.Min(buffer.Length, remaining));
                if (read == 0)
                    throw Invalid(_position, $"an entry's data ({size} bytes) runs past the end of the stream ({padded - remaining} of {padded} bytes present)");
                remaining -= read;
                _position += read;
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    private byte[] ReadMetadataBlock(long size, long max, string what, long headerOffset)
    {
        if (size > max)
            throw Invalid(headerOffset, $"a {what} of {size} bytes is larger than the {max} allowed");
        byte[] data = new byte[size];
        int total = 0;
        while (total < data.Length)
        {
            int read = _stream.Read(data, total, data.Length - total);
            if (read == 0)
                throw Invalid(_position, $"the stream ends inside a {what} ({total} of {size} bytes present)");
            total += read;
        }

        _position += size;
        SkipPadding((BlockSize - (size % BlockSize)) % BlockSize);
        return data;
    }

    private void SkipPadding(long padding)
    {
        Span<byte> pad = stackalloc byte[BlockSize];
        int total = 0;
        while (total < padding)
        {
            int read = _stream.Read(pad[..(int)(padding - total)]);
            if (read == 0)
                throw Invalid(_position, "the stream ends inside the padding of a metadata block");
            total += read;
        }

        _position += padding;
    }

    private void VerifyChecksum(long headerOffset)
    {
        long stored = ParseNumber(_block.AsSpan(148, 8), "checksum", headerOffset);
        long unsigned = 0, signed = 0;
        for (int i = 0; i < BlockSize; i++)
        {
            byte b = i is >= 148 and < 156 ? (byte)' ' : _block[i];
            unsigned += b;
            signed += unchecked((sbyte)b);
        }

        // Some old writers summed signed bytes; both are accepted, as GNU tar does.
        if (stored != unsigned && stored != signed)
            throw Invalid(headerOffset, $"header checksum is {stored}, the header sums to {unsigned}: not a tar header (or a damaged one)");
    }

    private Dictionary<string, string> ReadPax(byte[] data, long headerOffset)
    {
        // Records are "LEN KEY=VALUE\n" where LEN counts the whole record (POSIX pax format).
        var records = new Dictionary<string, string>(StringComparer.Ordinal);
        int at = 0;
        while (at < data.Length)
        {
            int space = Array.IndexOf(data, (byte)' ', at);
            if (space < 0 || !int.TryParse(data.AsSpan(at, space - at), NumberStyles.None, CultureInfo.InvariantCulture, out int length)
                || length <= space - at || length > data.Length - at || data[at + length - 1] != (byte)'\n')
            {
                throw Invalid(headerOffset, $"PAX record at byte {at} of the extended header has a bad length");
            }

            var record = data.AsSpan(space + 1, at + length - 1 - (space + 1));
            int equals = record.IndexOf((byte)'=');
            if (equals <= 0)
                throw Invalid(headerOffset, $"PAX record at byte {at} has no key");
            records[Encoding.ASCII.GetString(record[..equals])] = Encoding.Latin1.GetString(record[(equals + 1)..]);
            at += length;
        }

        return records;
    }

    private long PaxNumber(Dictionary<string, string> pax, string key, long fallback, long headerOffset)
    {
        if (!pax.TryGetValue(key, out string? text))
            return fallback;
        if (!long.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out long value))
            throw Invalid(headerOffset, $"PAX '{key}' is '{Printable(text)}', not a non-negative integer");
        return value;
    }

    private long ParsePaxTime(string text, long headerOffset)
    {
        // "seconds[.fraction]", possibly negative; fractions are dropped (newc keeps whole seconds).
        string whole = text.Split('.')[0];
        if (!long.TryParse(whole, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out long seconds))
            throw Invalid(headerOffset, $"PAX 'mtime' is '{Printable(text)}', not a time");
        return seconds;
    }

    // Octal ASCII (NUL- or space-terminated), or GNU base-256 when the first byte has its top bit set.
    private long ParseNumber(ReadOnlySpan<byte> field, string name, long headerOffset)
    {
        if ((field[0] & 0x80) != 0)
        {
            if (field[0] == 0xFF)
                throw Invalid(headerOffset, $"header '{name}' is a negative base-256 number");
            long value = field[0] & 0x7F;
            for (int i = 1; i < field.Length; i++)
            {
                if (value > (long.MaxValue >> 8))
                    throw Invalid(headerOffset, $"header '{name}' overflows 63 bits");
                value = (value << 8) | field[i];
            }

            return value;
        }

        long result = 0;
        int at = 0;
        while (at < field.Length && field[at] == (byte)' ')
            at++;
        bool any = false;
        for (; at < field.Length && field[at] is >= (byte)'0' and <= (byte)'7'; at++)
        {
            if (result > (long.MaxValue >> 3))
                throw Invalid(headerOffset, $"header '{name}' overflows 63 bits");
            result = (result << 3) | (long)(field[at] - '0');
            any = true;
        }

        if (at < field.Length && field[at] is not (0 or (byte)' '))
            throw Invalid(headerOffset, $"header '{name}' is not an octal number ('{Printable(Encoding.ASCII.GetString(field))}')");
        return any ? result : 0;
    }

    private static string UstarName(byte[] block)
    {
        string name = CString(block.AsSpan(0, 100));
        bool ustar = block.AsSpan(257, 5).SequenceEqual("ustar"u8);
        string prefix = ustar && block[262] == 0 ? CString(block.AsSpan(345, 155)) : string.Empty; // POSIX, not GNU
        return prefix.Length > 0 ? prefix + "/" + name : name;
    }

    private static string CString(ReadOnlySpan<byte> field)
    {
        int nul = field.IndexOf((byte)0);
        return Encoding.Latin1.GetString(nul >= 0 ? field[..nul] : field);
    }

    private static bool IsZero(ReadOnlySpan<byte> block) => !block.ContainsAnyExcept((byte)0);

    private EnclaveBuildException Invalid(long offset, string detail) =>
        new(BuildError.InvalidLayer, $"{_what}: at byte {offset}: {detail}");

    internal static string Printable(string text) => EifFormat.PrintableText.Of(text, 120);
}

using System.Security.Cryptography;
using EifBuilder.Cpio;
using EifFormat;

namespace EifBuilder.Inspect;

/// <summary>One ramdisk section of an EIF.</summary>
/// <param name="Number">Its place among the EIF's ramdisks, from 0 (0 is the bootstrap ramdisk of nitro-cli's layout).</param>
/// <param name="Section">The EIF section (index in the section table, offset, size).</param>
public sealed record RamdiskSection(int Number, EifSection Section);

/// <summary>One file of a ramdisk, as <c>eif ls</c>, <c>extract</c> and <c>diff</c> see it.</summary>
/// <param name="Name">The name as stored (Latin-1, so that every byte of a name survives).</param>
/// <param name="Kind">The file type, null for a type newc has no name for.</param>
/// <param name="RawMode">c_mode: type and permission bits.</param>
/// <param name="Uid">Owner.</param>
/// <param name="Gid">Group.</param>
/// <param name="Size">c_filesize (for a symlink, the target's length).</param>
/// <param name="ModTime">Unix seconds.</param>
/// <param name="LinkTarget">A symlink's target, else null.</param>
/// <param name="Sha256">The SHA-256 of a regular file's data, when asked for, else null.</param>
/// <param name="Inode">c_ino (hard links share it).</param>
/// <param name="LinkCount">c_nlink.</param>
/// <param name="RdevMajor">Device major (devices).</param>
/// <param name="RdevMinor">Device minor (devices).</param>
public sealed record RamdiskFile(
    string Name, CpioKind? Kind, uint RawMode, uint Uid, uint Gid, long Size, long ModTime, string? LinkTarget, byte[]? Sha256,
    uint Inode, uint LinkCount, uint RdevMajor, uint RdevMinor)
{
    /// <summary>Permission and special bits.</summary>
    public int Permissions => (int)(RawMode & 0xFFF);

    /// <summary>The name's bytes (as stored in the archive).</summary>
    public byte[] NameBytes => System.Text.Encoding.Latin1.GetBytes(Name);

    /// <summary>The name as UTF-8 text when its bytes are valid UTF-8, else null (see <see cref="DisplayName"/>).</summary>
    public string? Utf8Name => Utf8(Name);

    /// <summary>
    /// The name for a terminal: UTF-8 where its bytes are valid UTF-8, with control characters, backslashes and bytes
    /// that are not UTF-8 written as <c>\xNN</c> (as <c>ls -b</c> does), so that no name can move the cursor or hide.
    /// </summary>
    public string DisplayName => Display(Name);

    /// <summary>A symlink target for a terminal, escaped as <see cref="DisplayName"/>.</summary>
    public string? DisplayLinkTarget => LinkTarget is null ? null : Display(LinkTarget);

    /// <summary>The Latin-1-held bytes <paramref name="raw"/> as UTF-8, or null when they are not valid UTF-8.</summary>
    public static string? Utf8(string raw)
    {
        try
        {
            return new System.Text.UTF8Encoding(false, throwOnInvalidBytes: true).GetString(System.Text.Encoding.Latin1.GetBytes(raw));
        }
        catch (System.Text.DecoderFallbackException)
        {
            return null;
        }
    }

    /// <summary>Escapes the Latin-1-held bytes <paramref name="raw"/> for a terminal (see <see cref="DisplayName"/>).</summary>
    public static string Display(string raw)
    {
        string? text = Utf8(raw);
        var sb = new System.Text.StringBuilder(raw.Length);
        if (text is null)
        {
            foreach (char c in raw)
            {
                if (c >= 0x80 || char.IsControl(c) || c == '\\')
                    sb.Append(c == '\\' ? "\\\\" : $"\\x{(int)c:x2}");
                else
                    sb.Append(c);
            }

            return sb.ToString();
        }

        foreach (System.Text.Rune rune in text.EnumerateRunes())
        {
            if (System.Text.Rune.IsControl(rune))
                sb.Append(rune.Value < 0x100 ? $"\\x{rune.Value:x2}" : $"\\u{rune.Value:x4}");
            else if (rune.Value == '\\')
                sb.Append("\\\\");
            else
                sb.Append(rune.ToString());
        }

        return sb.ToString();
    }

    /// <summary><c>ls -l</c>'s mode string: <c>drwxr-xr-x</c>, <c>-rwsr-xr-x</c>, <c>lrwxrwxrwx</c>, …</summary>
    public string ModeString
    {
        get
        {
            char type = Kind switch
            {
                CpioKind.Directory => 'd',
                CpioKind.Symlink => 'l',
                CpioKind.CharDevice => 'c',
                CpioKind.BlockDevice => 'b',
                CpioKind.Fifo => 'p',
                CpioKind.File => '-',
                _ => '?',
            };
            int m = Permissions;
            char Bit(int bit, char set) => (m & bit) != 0 ? set : '-';
            char Special(int exec, int special, char both, char only) =>
                (m & special) != 0 ? ((m & exec) != 0 ? both : only) : Bit(exec, 'x');
            return string.Concat(
                type,
                Bit(0x100, 'r'), Bit(0x80, 'w'), Special(0x40, 0x800, 's', 'S'),
                Bit(0x20, 'r'), Bit(0x10, 'w'), Special(0x8, 0x400, 's', 'S'),
                Bit(0x4, 'r'), Bit(0x2, 'w'), Special(0x1, 0x200, 't', 'T'));
        }
    }
}

/// <summary>The ramdisks of an EIF and the files in them, read as a stream (a ramdisk is never held in memory).</summary>
public static class EifRamdisks
{
    /// <summary>"directory", "file", "symlink", "char-device", "block-device", "fifo" or "unknown": the words of <c>eif ls --json</c>, extract's manifest and diff.</summary>
    public static string TypeName(CpioKind? kind) => kind switch
    {
        CpioKind.Directory => "directory",
        CpioKind.File => "file",
        CpioKind.Symlink => "symlink",
        CpioKind.CharDevice => "char-device",
        CpioKind.BlockDevice => "block-device",
        CpioKind.Fifo => "fifo",
        _ => "unknown",
    };

    /// <summary>The ramdisk sections, in file order.</summary>
    public static IReadOnlyList<RamdiskSection> List(EifReader reader) =>
        reader.Sections.Where(s => s.Type == EifSectionType.Ramdisk).Select((s, i) => new RamdiskSection(i, s)).ToList();

    /// <summary>How the ramdisk is stored (plain, gzip, zstd), from its first bytes.</summary>
    public static RamdiskCompression CompressionOf(EifReader reader, RamdiskSection ramdisk)
    {
        using var reading = new CpioReader(reader.OpenSection(ramdisk.Section.Index), Describe(reader, ramdisk));
        return reading.Compression;
    }

    /// <summary>"ramdisk 1 (section 4) of app.eif": how messages name a ramdisk.</summary>
    public static string Describe(EifReader reader, RamdiskSection ramdisk) =>
        $"ramdisk {ramdisk.Number} (section {ramdisk.Section.Index}) of {reader.Path ?? "the EIF"}";

    /// <summary>
    /// The files of <paramref name="ramdisk"/>, in archive order (every archive of a concatenation). With
    /// <paramref name="hash"/>, regular files carry the SHA-256 of their data.
    /// </summary>
    /// <exception cref="EnclaveBuildException">The ramdisk is not a valid archive (<see cref="BuildError.InvalidRamdisk"/>).</exception>
    public static IEnumerable<RamdiskFile> Files(EifReader reader, RamdiskSection ramdisk, bool hash)
    {
        using var cpio = new CpioReader(reader.OpenSection(ramdisk.Section.Index), Describe(reader, ramdisk));
        foreach (RamdiskFile file in Files(cpio, hash))
            yield return file;
    }

    /// <summary>
    /// The files of <paramref name="ramdisk"/> as a list (metadata only; data is streamed and hashed), with hard-link
    /// groups resolved: newc stores a hard-linked file's data with one of its names only (GNU cpio and linuxkit put it
    /// on the last; the kernel's initramfs.c links the others to it), so the names without data get the size and
    /// SHA-256 of the one that has it, and every name of the group reads as the same file, as <c>ls</c> would show it.
    /// </summary>
    public static List<RamdiskFile> ListFiles(EifReader reader, RamdiskSection ramdisk, bool hash)
    {
        var files = Files(reader, ramdisk, hash).ToList();
        var groups = files.Where(f => f.Kind == CpioKind.File && f.LinkCount > 1).GroupBy(f => f.Inode);
        var carrier = new Dictionary<uint, RamdiskFile>();
        foreach (var group in groups)
        {
            // The member with data, else the first (a group of empty files).
            carrier[group.Key] = group.FirstOrDefault(f => f.Size > 0) ?? group.First();
        }

        for (int i = 0; i < files.Count; i++)
        {
            RamdiskFile file = files[i];
            if (file.Kind == CpioKind.File && file.LinkCount > 1 && carrier.TryGetValue(file.Inode, out RamdiskFile? data) && !ReferenceEquals(data, file) && file.Size == 0)
                files[i] = file with { Size = data.Size, Sha256 = data.Sha256 };
        }

        return files;
    }

    /// <summary>The files of an archive being read, with their data hashed when <paramref name="hash"/>.</summary>
    public static IEnumerable<RamdiskFile> Files(CpioReader cpio, bool hash)
    {
        while (cpio.Next() is { } record)
            yield return Describe(cpio, record, hash);
    }

    /// <summary>The current entry of <paramref name="cpio"/> as a <see cref="RamdiskFile"/> (reads a symlink's target, and hashes a file's data when asked).</summary>
    public static RamdiskFile Describe(CpioReader cpio, CpioRecord record, bool hash)
    {
        string? target = record.Kind == CpioKind.Symlink ? cpio.ReadText() : null;
        byte[]? sha = null;
        if (hash && record.Kind == CpioKind.File)
        {
            using var data = cpio.OpenData();
            sha = SHA256.HashData(data);
        }

        return new RamdiskFile(record.Name, record.Kind, record.RawMode, record.Uid, record.Gid, record.Size, record.ModTime, target, sha,
            record.Inode, record.LinkCount, record.RdevMajor, record.RdevMinor);
    }
}

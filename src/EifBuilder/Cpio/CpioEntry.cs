namespace EifBuilder.Cpio;

/// <summary>File types a newc archive holds, with their <c>c_mode</c> type bits (S_IFMT, sys/stat.h).</summary>
public enum CpioKind
{
    /// <summary>S_IFDIR 0040000.</summary>
    Directory = 0x4000,

    /// <summary>S_IFREG 0100000.</summary>
    File = 0x8000,

    /// <summary>S_IFLNK 0120000; the data is the link target.</summary>
    Symlink = 0xA000,

    /// <summary>S_IFCHR 0020000.</summary>
    CharDevice = 0x2000,

    /// <summary>S_IFBLK 0060000.</summary>
    BlockDevice = 0x6000,

    /// <summary>S_IFIFO 0010000.</summary>
    Fifo = 0x1000,
}

/// <summary>
/// One entry of a newc archive. Data comes from <see cref="Data"/> (bytes: small files, symlink targets) or
/// <see cref="OpenData"/> (streamed, e.g. a file inside a layer); it must give exactly <see cref="Size"/> bytes.
/// </summary>
/// <param name="Name">The path inside the archive, without a leading '/'.</param>
/// <param name="Kind">The file type.</param>
/// <param name="Mode">Permission and special bits (low 12 bits).</param>
/// <param name="Uid">Owner.</param>
/// <param name="Gid">Group.</param>
/// <param name="ModTime">Unix seconds.</param>
/// <param name="Size">Data length.</param>
/// <param name="Data">The data, when small and in memory.</param>
/// <param name="OpenData">Opens the data, when streamed.</param>
/// <param name="Inode">Entries sharing this object are hard links of one file (same c_ino); null: its own inode.</param>
/// <param name="LinkCount">c_nlink: the number of names of a hard-linked file; 0 means the writer's default (2 for directories, 1 otherwise).</param>
/// <param name="RdevMajor">Device major (devices only).</param>
/// <param name="RdevMinor">Device minor (devices only).</param>
public sealed record CpioEntry(
    string Name, CpioKind Kind, int Mode, long Uid, long Gid, long ModTime, long Size,
    byte[]? Data = null, Func<Stream>? OpenData = null, object? Inode = null, int LinkCount = 0,
    long RdevMajor = 0, long RdevMinor = 0);

namespace EifBuilder.Tar;

/// <summary>The kinds of tar entry a layer may hold (POSIX ustar typeflag, plus GNU/PAX headers resolved away).</summary>
public enum TarEntryKind
{
    /// <summary>'0', '\0' or '7' (contiguous): a regular file.</summary>
    File,

    /// <summary>'1': a hard link to <see cref="TarEntry.LinkName"/>.</summary>
    HardLink,

    /// <summary>'2': a symbolic link to <see cref="TarEntry.LinkName"/>.</summary>
    Symlink,

    /// <summary>'3': a character device.</summary>
    CharDevice,

    /// <summary>'4': a block device.</summary>
    BlockDevice,

    /// <summary>'5': a directory.</summary>
    Directory,

    /// <summary>'6': a FIFO.</summary>
    Fifo,
}

/// <summary>One entry of a tar stream, with the position of its data in the (uncompressed) stream.</summary>
/// <param name="Name">The path as stored (PAX 'path' and GNU long names applied), not yet normalised.</param>
/// <param name="Kind">The entry type.</param>
/// <param name="Mode">Permission and special bits (the low 12 bits of the mode field).</param>
/// <param name="Uid">Owner id.</param>
/// <param name="Gid">Group id.</param>
/// <param name="ModTime">Modification time, Unix seconds (PAX fractions dropped).</param>
/// <param name="Size">Data length (0 for everything but files).</param>
/// <param name="DataOffset">Offset of the first data byte in the tar stream.</param>
/// <param name="LinkName">Target of a hard or symbolic link, else empty.</param>
/// <param name="DevMajor">Device major number (devices only).</param>
/// <param name="DevMinor">Device minor number (devices only).</param>
public sealed record TarEntry(
    string Name, TarEntryKind Kind, int Mode, long Uid, long Gid, long ModTime, long Size, long DataOffset,
    string LinkName, long DevMajor, long DevMinor);

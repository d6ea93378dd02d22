using System.Runtime.InteropServices;
using System.Text;

namespace EifBuilder.Inspect;

/// <summary>
/// The C library calls the ramdisk unpacker makes, one import each. Paths are NUL-terminated byte strings, not .NET
/// strings: a ramdisk name is bytes (held as Latin-1, see <see cref="Cpio.CpioRecord.Name"/>), and .NET would
/// re-encode it as UTF-8, so a name like <c>caf\xe9</c> could not be created, found or removed byte for byte. .NET
/// also has no lchown, mknod, link or lutimes. Every call that could meet a symlink in its last component is one
/// that does not follow it (cited per call). Constants are x86_64/arm64 Linux values (cited per constant).
/// </summary>
internal static partial class Posix
{
    private const string Library = "libc";

    // fcntl.h: the same on x86_64 and arm64 (asm-generic/fcntl.h) ...
    internal const int O_WRONLY = 0x1;
    internal const int O_CREAT = 0x40;
    internal const int O_EXCL = 0x80;
    internal const int O_TRUNC = 0x200;
    internal const int O_CLOEXEC = 0x80000;
    internal const int AT_FDCWD = -100;
    internal const int AT_SYMLINK_NOFOLLOW = 0x100;

    // linux/stat.h (statx) and sys/stat.h (S_IF*, the same values as CpioKind)
    internal const uint STATX_BASIC_STATS = 0x7ff;
    internal const int S_IFMT = 0xF000;
    internal const int S_IFDIR = 0x4000;
    internal const int S_IFLNK = 0xA000;

    // linux/fs.h: renameat2's flag that refuses to replace an existing target.
    internal const uint RENAME_NOREPLACE = 1;

    // errno.h
    internal const int ENOENT = 2;
    internal const int EEXIST = 17;
    internal const int EINVAL = 22;
    internal const int ENOSYS = 38;

    // ... except O_NOFOLLOW: 0400000 on x86_64 (asm-generic/fcntl.h), 0100000 on arm64 (arch/arm64/include/uapi/asm/fcntl.h).
    internal static int O_NOFOLLOW => RuntimeInformation.ProcessArchitecture == Architecture.Arm64 ? 0x8000 : 0x20000;

    /// <summary><c>struct timespec</c> on 64-bit Linux.</summary>
    [StructLayout(LayoutKind.Sequential)]
    internal struct Timespec
    {
        internal long Seconds;
        internal long Nanoseconds;
    }

    /// <summary>What <c>statx(2)</c> says about a path, without following a symlink in its last component.</summary>
    internal readonly record struct Status(int Mode, ulong Inode, uint LinkCount, uint Uid, uint Gid, long Size, long ModTime, uint RdevMajor, uint RdevMinor)
    {
        internal int Type => Mode & S_IFMT;

        internal bool IsDirectory => Type == S_IFDIR;
    }

    /// <summary>The NUL-terminated bytes of a path held as .NET text (UTF-8: a folder the user named) plus a Latin-1-held tail (ramdisk names).</summary>
    internal static byte[] PathBytes(string utf8Part, string? latin1Tail = null)
    {
        byte[] head = Encoding.UTF8.GetBytes(utf8Part);
        byte[] tail = latin1Tail is null ? [] : Encoding.Latin1.GetBytes(latin1Tail);
        byte[] path = new byte[head.Length + (tail.Length > 0 ? 1 + tail.Length : 0) + 1];
        head.CopyTo(path, 0);
        if (tail.Length > 0)
        {
            path[head.Length] = (byte)'/';
            tail.CopyTo(path, head.Length + 1);
        }

        return path;
    }

    /// <summary>lstat semantics through statx(2) (its layout is the same on every architecture, unlike struct stat); null when the path does not exist.</summary>
    /// <exception cref="IOException">statx failed for another reason than ENOENT.</exception>
    internal static Status? Lstat(byte[] path, string shown)
    {
        byte[] buffer = new byte[256]; // sizeof(struct statx), linux/stat.h
        if (Statx(AT_FDCWD, path, AT_SYMLINK_NOFOLLOW, STATX_BASIC_STATS, buffer) != 0)
        {
            int errno = Marshal.GetLastPInvokeError();
            if (errno == ENOENT)
                return null;
            throw Failure("lstat", shown, errno);
        }

        // struct statx offsets (linux/stat.h): stx_nlink 16, stx_uid 20, stx_gid 24, stx_mode 28 (u16), stx_ino 32,
        // stx_size 40, stx_mtime 112 (tv_sec, s64), stx_rdev_major 128, stx_rdev_minor 132.
        ReadOnlySpan<byte> b = buffer;
        return new Status(
            BitConverter.ToUInt16(b[28..]), BitConverter.ToUInt64(b[32..]), BitConverter.ToUInt32(b[16..]),
            BitConverter.ToUInt32(b[20..]), BitConverter.ToUInt32(b[24..]), BitConverter.ToInt64(b[40..]), BitConverter.ToInt64(b[112..]),
            BitConverter.ToUInt32(b[128..]), BitConverter.ToUInt32(b[132..]));
    }

    /// <summary>glibc's <c>gnu_dev_makedev</c> (sys/sysmacros.h): the 64-bit dev_t of a major and minor number.</summary>
    internal static ulong MakeDev(uint major, uint minor) =>
        ((ulong)(major & 0x00000fffu) << 8) | ((ulong)(major & 0xfffff000u) << 32) | (minor & 0x000000ffu) | ((ulong)(minor & 0xffffff00u) << 12);

    /// <summary>renameat2(RENAME_NOREPLACE): the rename fails with EEXIST rather than replace a file or an empty folder.</summary>
    /// <exception cref="IOException">The target exists, or the rename failed.</exception>
    internal static void RenameNoReplace(string from, string to)
    {
        byte[] source = PathBytes(from), target = PathBytes(to);
        int result;
        int errno;
        try
        {
            result = RenameAt2(AT_FDCWD, source, AT_FDCWD, target, RENAME_NOREPLACE);
            errno = result == 0 ? 0 : Marshal.GetLastPInvokeError();
        }
        catch (EntryPointNotFoundException)
        {
            result = -1;
            errno = ENOSYS; // a C library older than glibc 2.28
        }

        if (result == 0)
            return;
        if (errno is EINVAL or ENOSYS)
        {
            // The file system (or kernel) has no RENAME_NOREPLACE: check, then rename. Only this process writes the
            // temporary name, so the window is another process creating the target in between.
            if (Lstat(target, to) is not null)
                throw new IOException($"{to} already exists: nothing is ever replaced");
            if (Rename(source, target) != 0)
                throw Failure("rename to", to, Marshal.GetLastPInvokeError());
            return;
        }

        if (errno == EEXIST)
            throw new IOException($"{to} already exists: nothing is ever replaced");
        throw Failure("rename to", to, errno);
    }

    /// <summary>An <see cref="IOException"/> naming the operation, the path and the C library's reason.</summary>
    internal static IOException Failure(string operation, string shown, int errno) =>
        new($"{shown}: {operation} failed: {Marshal.GetPInvokeErrorMessage(errno)} (errno {errno})");

    // int mkdir(const char *pathname, mode_t mode); never follows a symlink in the last component (EEXIST).
    [LibraryImport(Library, EntryPoint = "mkdir", SetLastError = true)]
    internal static partial int Mkdir(byte[] path, uint mode);

    // int open(const char *pathname, int flags, mode_t mode); O_CREAT|O_EXCL fails on any existing name, a symlink
    // included (POSIX open: "If O_CREAT and O_EXCL are set ... a symbolic link ... shall fail"); O_NOFOLLOW otherwise.
    [LibraryImport(Library, EntryPoint = "open", SetLastError = true)]
    internal static partial int Open(byte[] path, int flags, uint mode);

    // int symlink(const char *target, const char *linkpath); the target is stored as given, never resolved.
    [LibraryImport(Library, EntryPoint = "symlink", SetLastError = true)]
    internal static partial int Symlink(byte[] target, byte[] linkPath);

    // int link(const char *oldpath, const char *newpath); Linux does not follow a symlink in oldpath (link(2)).
    [LibraryImport(Library, EntryPoint = "link", SetLastError = true)]
    internal static partial int Link(byte[] oldPath, byte[] newPath);

    // int mknod(const char *pathname, mode_t mode, dev_t dev); EEXIST on any existing name.
    [LibraryImport(Library, EntryPoint = "mknod", SetLastError = true)]
    internal static partial int Mknod(byte[] path, uint mode, ulong device);

    // int unlink(const char *pathname); removes a symlink itself, never its target.
    [LibraryImport(Library, EntryPoint = "unlink", SetLastError = true)]
    internal static partial int Unlink(byte[] path);

    // int rmdir(const char *pathname); fails on a symlink (ENOTDIR).
    [LibraryImport(Library, EntryPoint = "rmdir", SetLastError = true)]
    internal static partial int Rmdir(byte[] path);

    // int lchown(const char *pathname, uid_t owner, gid_t group); the link itself.
    [LibraryImport(Library, EntryPoint = "lchown", SetLastError = true)]
    internal static partial int Lchown(byte[] path, uint uid, uint gid);

    // int chmod(const char *pathname, mode_t mode); follows symlinks, so it is only called on a path known not to be one.
    [LibraryImport(Library, EntryPoint = "chmod", SetLastError = true)]
    internal static partial int Chmod(byte[] path, uint mode);

    // int utimensat(int dirfd, const char *pathname, const struct timespec times[2], int flags); with
    // AT_SYMLINK_NOFOLLOW it sets a symlink's own times (lutimes).
    [LibraryImport(Library, EntryPoint = "utimensat", SetLastError = true)]
    internal static partial int Utimensat(int dirFd, byte[] path, Timespec[] times, int flags);

    // int statx(int dirfd, const char *pathname, int flags, unsigned int mask, struct statx *statxbuf); glibc 2.28.
    [LibraryImport(Library, EntryPoint = "statx", SetLastError = true)]
    private static partial int Statx(int dirFd, byte[] path, int flags, uint mask, [Out] byte[] buffer);

    // int renameat2(int olddirfd, const char *oldpath, int newdirfd, const char *newpath, unsigned int flags); glibc 2.28.
    [LibraryImport(Library, EntryPoint = "renameat2", SetLastError = true)]
    private static partial int RenameAt2(int oldDirFd, byte[] oldPath, int newDirFd, byte[] newPath, uint flags);

    // int rename(const char *oldpath, const char *newpath);
    [LibraryImport(Library, EntryPoint = "rename", SetLastError = true)]
    private static partial int Rename(byte[] oldPath, byte[] newPath);
}

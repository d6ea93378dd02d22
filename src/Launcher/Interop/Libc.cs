using System.Runtime.InteropServices;

namespace Launcher.Interop;

/// <summary>A file descriptor owned by .NET: closed exactly once, when released (STYLE.md rule 11: the handle owns the fd).</summary>
internal sealed class SafeFd : SafeHandle
{
    internal SafeFd()
        : base(invalidHandleValue: -1, ownsHandle: true)
    {
    }

    internal SafeFd(int fd, bool ownsHandle)
        : base(invalidHandleValue: -1, ownsHandle)
    {
        SetHandle(fd);
    }

    public override bool IsInvalid => handle.ToInt64() < 0;

    /// <summary>The descriptor number (for messages and poll).</summary>
    internal int Fd => (int)handle.ToInt64();

    protected override bool ReleaseHandle() => Libc.Close((int)handle.ToInt64()) == 0;
}

/// <summary>
/// The C library calls the launcher makes, one import each, all with <c>SetLastError</c> so that
/// <see cref="Marshal.GetLastPInvokeError"/> is the call's errno. Constants are x86_64/arm64 Linux values from
/// glibc's and the kernel's headers (cited per constant).
/// </summary>
internal static partial class Libc
{
    private const string Library = "libc";

    // fcntl.h
    internal const int O_RDONLY = 0;
    internal const int O_RDWR = 2;
    internal const int O_CLOEXEC = 0x80000;

    // sys/mman.h (asm-generic/mman-common.h, asm-generic/mman.h on x86_64 and arm64)
    internal const int PROT_READ = 0x1;
    internal const int PROT_WRITE = 0x2;
    internal const int MAP_PRIVATE = 0x02;
    internal const int MAP_ANONYMOUS = 0x20;
    internal const int MAP_HUGETLB = 0x40000;
    internal const int MAP_HUGE_SHIFT = 26;         // linux/mman.h: the page size's log2 goes in bits 26..31
    internal static readonly nint MAP_FAILED = -1;

    // poll.h
    internal const short POLLIN = 0x001;
    internal const short POLLOUT = 0x004;
    internal const short POLLERR = 0x008;
    internal const short POLLHUP = 0x010;
    internal const short POLLNVAL = 0x020;

    // errno.h
    internal const int EINTR = 4;
    internal const int EIO = 5;
    internal const int EBADF = 9;
    internal const int EAGAIN = 11;
    internal const int ENOMEM = 12;
    internal const int EFAULT = 14;
    internal const int EBUSY = 16;
    internal const int ENOENT = 2;
    internal const int EINVAL = 22;
    internal const int ENOTTY = 25;
    internal const int EPIPE = 32;
    internal const int EADDRINUSE = 98;
    internal const int EADDRNOTAVAIL = 99;
    internal const int ENETUNREACH = 101;
    internal const int ECONNRESET = 104;
    internal const int ETIMEDOUT = 110;
    internal const int ECONNREFUSED = 111;
    internal const int EINPROGRESS = 115;

    [StructLayout(LayoutKind.Sequential)]
    internal struct PollFd
    {
        internal int Fd;
        internal short Events;
        internal short Revents;
    }

    // int open(const char *pathname, int flags, mode_t mode);
    [LibraryImport(Library, EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    internal static partial int Open(string path, int flags, int mode);

    // int close(int fd);
    [LibraryImport(Library, EntryPoint = "close", SetLastError = true)]
    internal static partial int Close(int fd);

    // int ioctl(int fd, unsigned long request, ...): one overload per argument type the uapi uses.
    [LibraryImport(Library, EntryPoint = "ioctl", SetLastError = true)]
    internal static partial int Ioctl(SafeFd fd, nuint request, ref ulong argument);

    [LibraryImport(Library, EntryPoint = "ioctl", SetLastError = true)]
    internal static partial int Ioctl(SafeFd fd, nuint request, ref uint argument);

    [LibraryImport(Library, EntryPoint = "ioctl", SetLastError = true)]
    internal static partial int Ioctl(SafeFd fd, nuint request, ref NeImageLoadInfo argument);

    [LibraryImport(Library, EntryPoint = "ioctl", SetLastError = true)]
    internal static partial int Ioctl(SafeFd fd, nuint request, ref NeUserMemoryRegion argument);

    [LibraryImport(Library, EntryPoint = "ioctl", SetLastError = true)]
    internal static partial int Ioctl(SafeFd fd, nuint request, ref NeEnclaveStartInfo argument);

    // void *mmap(void *addr, size_t length, int prot, int flags, int fd, off_t offset);
    [LibraryImport(Library, EntryPoint = "mmap", SetLastError = true)]
    internal static partial nint Mmap(nint address, nuint length, int protection, int flags, int fd, nint offset);

    // int munmap(void *addr, size_t length);
    [LibraryImport(Library, EntryPoint = "munmap", SetLastError = true)]
    internal static partial int Munmap(nint address, nuint length);

    // int poll(struct pollfd *fds, nfds_t nfds, int timeout);
    [LibraryImport(Library, EntryPoint = "poll", SetLastError = true)]
    internal static partial int Poll(ref PollFd fds, nuint count, int timeoutMilliseconds);

    // ssize_t read(int fd, void *buf, size_t count);
    [LibraryImport(Library, EntryPoint = "read", SetLastError = true)]
    internal static unsafe partial nint Read(SafeFd fd, byte* buffer, nuint count);

    // ssize_t write(int fd, const void *buf, size_t count);
    [LibraryImport(Library, EntryPoint = "write", SetLastError = true)]
    internal static unsafe partial nint Write(SafeFd fd, byte* buffer, nuint count);

    // int socket(int domain, int type, int protocol);
    [LibraryImport(Library, EntryPoint = "socket", SetLastError = true)]
    internal static partial int Socket(int domain, int type, int protocol);

    // int bind(int sockfd, const struct sockaddr *addr, socklen_t addrlen);
    [LibraryImport(Library, EntryPoint = "bind", SetLastError = true)]
    internal static partial int Bind(SafeFd fd, in SockaddrVm address, uint length);

    // int connect(int sockfd, const struct sockaddr *addr, socklen_t addrlen);
    [LibraryImport(Library, EntryPoint = "connect", SetLastError = true)]
    internal static partial int Connect(SafeFd fd, in SockaddrVm address, uint length);

    // int listen(int sockfd, int backlog);
    [LibraryImport(Library, EntryPoint = "listen", SetLastError = true)]
    internal static partial int Listen(SafeFd fd, int backlog);

    // int accept4(int sockfd, struct sockaddr *addr, socklen_t *addrlen, int flags);
    [LibraryImport(Library, EntryPoint = "accept4", SetLastError = true)]
    internal static partial int Accept4(SafeFd fd, out SockaddrVm address, ref uint length, int flags);

    // int getsockname(int sockfd, struct sockaddr *addr, socklen_t *addrlen);
    [LibraryImport(Library, EntryPoint = "getsockname", SetLastError = true)]
    internal static partial int GetSockName(SafeFd fd, out SockaddrVm address, ref uint length);

    // int setsockopt(int sockfd, int level, int optname, const void *optval, socklen_t optlen);
    [LibraryImport(Library, EntryPoint = "setsockopt", SetLastError = true)]
    internal static partial int SetSockOpt(SafeFd fd, int level, int name, in TimeVal value, uint length);

    // int shutdown(int sockfd, int how);
    [LibraryImport(Library, EntryPoint = "shutdown", SetLastError = true)]
    internal static partial int Shutdown(SafeFd fd, int how);

    // pid_t setsid(void);
    [LibraryImport(Library, EntryPoint = "setsid", SetLastError = true)]
    internal static partial int SetSid();

    // int dup2(int oldfd, int newfd);
    [LibraryImport(Library, EntryPoint = "dup2", SetLastError = true)]
    internal static partial int Dup2(int oldFd, int newFd);

    // uid_t geteuid(void);
    [LibraryImport(Library, EntryPoint = "geteuid")]
    internal static partial uint GetEuid();

    // sys/socket.h
    internal const int SOL_SOCKET = 1;
    internal const int SCM_RIGHTS = 1;
    internal const int MSG_CMSG_CLOEXEC = 0x40000000;

    // sys/eventfd.h
    internal const int EFD_CLOEXEC = 0x80000;
    internal const int EFD_NONBLOCK = 0x800;

    // sys/mman.h
    internal const int MAP_SHARED = 0x01;

    /// <summary><c>struct iovec</c>.</summary>
    [StructLayout(LayoutKind.Sequential)]
    internal struct IoVec
    {
        internal nint Base;
        internal nuint Length;
    }

    /// <summary><c>struct msghdr</c> (56 bytes on 64-bit Linux).</summary>
    [StructLayout(LayoutKind.Sequential)]
    internal struct MsgHdr
    {
        internal nint Name;
        internal uint NameLength;
        internal nint Iov;
        internal nuint IovLength;
        internal nint Control;
        internal nuint ControlLength;
        internal int Flags;
    }

    // ssize_t recvmsg(int sockfd, struct msghdr *msg, int flags);
    [LibraryImport(Library, EntryPoint = "recvmsg", SetLastError = true)]
    internal static partial nint RecvMsg(SafeHandle fd, ref MsgHdr message, int flags);

    // int eventfd(unsigned int initval, int flags);
    [LibraryImport(Library, EntryPoint = "eventfd", SetLastError = true)]
    internal static partial int EventFd(uint initialValue, int flags);

    // ssize_t read(int fd, void *buf, size_t count) / write, on a raw fd number (eventfds owned by SafeFd callers).
    [LibraryImport(Library, EntryPoint = "read", SetLastError = true)]
    internal static partial nint ReadU64(int fd, ref ulong value, nuint count);

    [LibraryImport(Library, EntryPoint = "write", SetLastError = true)]
    internal static partial nint WriteU64(int fd, in ulong value, nuint count);

    // int poll(struct pollfd *fds, nfds_t nfds, int timeout), over several descriptors.
    [LibraryImport(Library, EntryPoint = "poll", SetLastError = true)]
    internal static partial int PollMany([In, Out] PollFd[] fds, nuint count, int timeoutMilliseconds);

    /// <summary><c>struct timeval</c> on 64-bit Linux (two longs), for <c>SO_VM_SOCKETS_CONNECT_TIMEOUT</c>.</summary>
    [StructLayout(LayoutKind.Sequential)]
    internal struct TimeVal
    {
        internal long Seconds;
        internal long Microseconds;
    }
}

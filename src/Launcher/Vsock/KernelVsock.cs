using System.Runtime.InteropServices;
using Launcher.Interop;

namespace Launcher.Vsock;

/// <summary>
/// The kernel's AF_VSOCK through P/Invoke (the managed Socket refuses address family 40: dotnet/runtime#58327).
/// Works on a Nitro parent (the hypervisor transport), in a VM with virtio-vsock, and on hosts with vsock_loopback.
/// </summary>
public sealed class KernelVsock : IVsockTransport
{
    /// <summary>The host's vsock.</summary>
    public static KernelVsock Instance { get; } = new();

    /// <inheritdoc/>
    public IVsockListener Listen(VsockAddress address, int backlog = 16)
    {
        SafeFd fd = NewSocket();
        try
        {
            var sockaddr = SockaddrVm.Of(address.Cid, address.Port);
            if (Libc.Bind(fd, in sockaddr, (uint)Marshal.SizeOf<SockaddrVm>()) != 0)
            {
                // Read errno before the message is built: C# evaluates arguments left to right, and formatting the
                // address may make runtime calls that overwrite the last P/Invoke error (errno 203 seen instead of 98).
                int errno = Marshal.GetLastPInvokeError();
                throw Failure($"bind to {address}", errno);
            }
            if (Libc.Listen(fd, backlog) != 0)
            {
                int errno = Marshal.GetLastPInvokeError();
                throw Failure($"listen on {address}", errno);
            }
            uint length = (uint)Marshal.SizeOf<SockaddrVm>();
            if (Libc.GetSockName(fd, out SockaddrVm bound, ref length) != 0)
            {
                int errno = Marshal.GetLastPInvokeError();
                throw Failure($"getsockname of {address}", errno);
            }
            return new Listener(fd, new VsockAddress(bound.Cid, bound.Port));
        }
        catch
        {
            fd.Dispose();
            throw;
        }
    }

    /// <inheritdoc/>
    public VsockConnection Connect(VsockAddress address, TimeSpan timeout)
    {
        SafeFd fd = NewSocket();
        try
        {
            // nitro-cli sets SO_VM_SOCKETS_CONNECT_TIMEOUT before connecting to the console (src/utils.rs Console).
            var limit = new Libc.TimeVal { Seconds = (long)timeout.TotalSeconds, Microseconds = timeout.Milliseconds * 1000L };
            if (Libc.SetSockOpt(fd, VmSockets.AF_VSOCK, VmSockets.SO_VM_SOCKETS_CONNECT_TIMEOUT, in limit, (uint)Marshal.SizeOf<Libc.TimeVal>()) != 0)
            {
                int errno = Marshal.GetLastPInvokeError();
                throw Failure($"setting the connect timeout for {address}", errno, LaunchError.SocketConnectTimeoutError);
            }
            var sockaddr = SockaddrVm.Of(address.Cid, address.Port);
            if (Libc.Connect(fd, in sockaddr, (uint)Marshal.SizeOf<SockaddrVm>()) != 0)
            {
                int errno = Marshal.GetLastPInvokeError();
                throw Failure($"connect to {address}", errno);
            }
            return new VsockConnection(new FdStream(fd), address);
        }
        catch
        {
            fd.Dispose();
            throw;
        }
    }

    private static SafeFd NewSocket()
    {
        int fd = Libc.Socket(VmSockets.AF_VSOCK, VmSockets.SOCK_STREAM | VmSockets.SOCK_CLOEXEC, 0);
        if (fd < 0)
        {
            int errno = Marshal.GetLastPInvokeError();
            string why = errno == 97 ? "this kernel has no vsock support (load the vsock module)" : NeErrors.Describe(errno);
            throw new EnclaveException(LaunchError.SocketError, $"socket(AF_VSOCK): {why}", errno);
        }

        return new SafeFd(fd, ownsHandle: true);
    }

    internal static EnclaveException Failure(string what, int errno, LaunchError error = LaunchError.SocketError) =>
        new(error, $"{what} failed: {Marshal.GetPInvokeErrorMessage(errno)} (errno {errno})", errno);

    private sealed class Listener(SafeFd fd, VsockAddress local) : IVsockListener
    {
        public VsockAddress LocalAddress { get; } = local;

        public VsockConnection? Accept(TimeSpan timeout)
        {
            if (!FdStream.WaitReadable(fd, timeout))
                return null;
            uint length = (uint)Marshal.SizeOf<SockaddrVm>();
            int client = Libc.Accept4(fd, out SockaddrVm peer, ref length, VmSockets.SOCK_CLOEXEC);
            if (client < 0)
            {
                int errno = Marshal.GetLastPInvokeError();
                throw Failure($"accept on {LocalAddress}", errno);
            }
            return new VsockConnection(new FdStream(new SafeFd(client, ownsHandle: true)), new VsockAddress(peer.Cid, peer.Port));
        }

        public void Dispose() => fd.Dispose();
    }
}

/// <summary>A stream over a connected socket fd: blocking read(2)/write(2), read timeouts through poll.</summary>
internal sealed class FdStream(SafeFd fd) : Stream
{
    private int _readTimeout = Timeout.Infinite;

    public override bool CanRead => !fd.IsClosed;

    public override bool CanWrite => !fd.IsClosed;

    public override bool CanSeek => false;

    public override bool CanTimeout => true;

    public override int ReadTimeout
    {
        get => _readTimeout;
        set => _readTimeout = value;
    }

    public override long Length => throw new NotSupportedException();

    public override long Position
    {
        get => throw new NotSupportedException();
        set => throw new NotSupportedException();
    }

    public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

    public override unsafe int Read(Span<byte> buffer)
    {
        if (buffer.IsEmpty)
            return 0;
        if (_readTimeout != Timeout.Infinite && !WaitReadable(fd, TimeSpan.FromMilliseconds(_readTimeout)))
            throw new TimeoutException($"no data within {_readTimeout} ms");
        while (true)
        {
            nint n;
            fixed (byte* p = buffer)
                n = Libc.Read(fd, p, (nuint)buffer.Length);
            if (n >= 0)
                return (int)n;
            int errno = Marshal.GetLastPInvokeError();
            if (errno == Libc.EINTR)
                continue;
            if (errno == Libc.ECONNRESET)
                return 0; // the peer reset: end of stream for a reader
            throw new IOException($"read failed: {Marshal.GetPInvokeErrorMessage(errno)} (errno {errno})");
        }
    }

    public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));

    public override unsafe void Write(ReadOnlySpan<byte> buffer)
    {
        while (!buffer.IsEmpty)
        {
            nint n;
            fixed (byte* p = buffer)
                n = Libc.Write(fd, p, (nuint)buffer.Length);
            if (n < 0)
            {
                int errno = Marshal.GetLastPInvokeError();
                if (errno == Libc.EINTR)
                    continue;
                throw new IOException($"write failed: {Marshal.GetPInvokeErrorMessage(errno)} (errno {errno})");
            }

            buffer = buffer[(int)n..];
        }
    }

    public override void Flush()
    {
    }

    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

    public override void SetLength(long value) => throw new NotSupportedException();

    /// <summary>Waits until the fd is readable (or at end of stream); false on timeout.</summary>
    internal static bool WaitReadable(SafeFd fd, TimeSpan timeout)
    {
        bool added = false;
        try
        {
            fd.DangerousAddRef(ref added);
            long deadline = timeout == Timeout.InfiniteTimeSpan ? long.MaxValue : Environment.TickCount64 + (long)Math.Ceiling(timeout.TotalMilliseconds);
            while (true)
            {
                long left = deadline == long.MaxValue ? -1 : Math.Max(0, deadline - Environment.TickCount64);
                var pfd = new Libc.PollFd { Fd = fd.Fd, Events = Libc.POLLIN };
                int rc = Libc.Poll(ref pfd, 1, (int)Math.Min(left, int.MaxValue));
                if (rc > 0)
                {
                    if ((pfd.Revents & Libc.POLLNVAL) != 0)
                        throw new IOException("poll: not an open descriptor (POLLNVAL)");
                    return true;
                }

                if (rc == 0)
                    return false;
                int errno = Marshal.GetLastPInvokeError();
                if (errno != Libc.EINTR)
                    throw new IOException($"poll failed: {Marshal.GetPInvokeErrorMessage(errno)} (errno {errno})");
            }
        }
        finally
        {
            if (added)
                fd.DangerousRelease();
        }
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing && !fd.IsClosed)
        {
            // shutdown wakes a reader blocked in read(2) on another thread, so the close below is not deferred forever
            // by that reader's reference on the handle.
            _ = Libc.Shutdown(fd, 2);
            fd.Dispose();
        }

        base.Dispose(disposing);
    }
}

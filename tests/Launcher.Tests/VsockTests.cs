using System.Runtime.InteropServices;
using Launcher.Interop;
using Launcher.Vsock;

namespace Launcher.Tests;

/// <summary>
/// <see cref="KernelVsock"/> on the kernel's real AF_VSOCK. The host may be a VM with a virtio vsock transport and no
/// vsock_loopback: tests that need a connection skip with the reason when the kernel cannot loop one back.
/// </summary>
public sealed class VsockTests
{
    // linux/vm_sockets.h
    private const uint CidAny = 0xFFFFFFFF;    // VMADDR_CID_ANY
    private const uint PortAny = 0xFFFFFFFF;   // VMADDR_PORT_ANY
    private const uint CidLocal = 1;           // VMADDR_CID_LOCAL (vsock_loopback)
    private const uint CidParent = 3;          // VMADDR_CID_PARENT / NE_PARENT_VM_CID (spec/launch.md §2.5)

    // errno.h (asm-generic/errno.h)
    private const int EAFNOSUPPORT = 97;
    private const int EADDRINUSE = 98;
    private const int EADDRNOTAVAIL = 99;

    [Fact]
    public void Listen_AnyCidAnyPort_GetsARealPortFromGetsockname()
    {
        RequireVsock();
        using IVsockListener listener = KernelVsock.Instance.Listen(new VsockAddress(CidAny, PortAny));
        Assert.Equal(CidAny, listener.LocalAddress.Cid);
        Assert.NotEqual(PortAny, listener.LocalAddress.Port);
        // net/vmw_vsock/af_vsock.c __vsock_bind_connectible: automatic ports are above LAST_RESERVED_PORT (1023).
        Assert.InRange(listener.LocalAddress.Port, 1024u, PortAny - 1);
    }

    [Fact]
    public void Listen_SamePortTwice_ThrowsSocketErrorWithEaddrinuse()
    {
        RequireVsock();
        using IVsockListener first = KernelVsock.Instance.Listen(new VsockAddress(CidAny, PortAny));
        var again = new VsockAddress(CidAny, first.LocalAddress.Port);
        EnclaveException ex = Assert.Throws<EnclaveException>(() => KernelVsock.Instance.Listen(again));
        Assert.Equal(LaunchError.SocketError, ex.Error); // E11
        Assert.Equal(EADDRINUSE, ex.Errno);
        Assert.StartsWith($"bind to {again} failed: ", ex.Message);
    }

    [Fact]
    public void Listen_PortFreedByDispose_CanBeBoundAgain()
    {
        RequireVsock();
        uint port;
        using (IVsockListener first = KernelVsock.Instance.Listen(new VsockAddress(CidAny, PortAny)))
            port = first.LocalAddress.Port;
        using IVsockListener second = KernelVsock.Instance.Listen(new VsockAddress(CidAny, port));
        Assert.Equal(port, second.LocalAddress.Port);
    }

    [Fact]
    public void Listen_CidThatIsNotThisHost_ThrowsEaddrnotavail()
    {
        RequireVsock();
        uint foreign = LocalCid() + 12345;   // not this host's CID, nor 1 (loopback) or CID_ANY
        EnclaveException ex = Assert.Throws<EnclaveException>(() => KernelVsock.Instance.Listen(new VsockAddress(foreign, PortAny)));
        Assert.Equal(LaunchError.SocketError, ex.Error);
        Assert.Equal(EADDRNOTAVAIL, ex.Errno);
    }

    [Fact]
    public void Listen_ParentCid_BindsOnlyWhereThisHostIsCid3()
    {
        // nitro-cli binds CID 3 for the heartbeat (spec/launch.md §2.5). That works on a Nitro parent, whose CID is 3,
        // and in any VM the hypervisor gave CID 3; elsewhere the kernel refuses with EADDRNOTAVAIL.
        RequireVsock();
        uint local = LocalCid();
        if (local == CidParent)
        {
            using IVsockListener listener = KernelVsock.Instance.Listen(new VsockAddress(CidParent, PortAny));
            Assert.Equal(CidParent, listener.LocalAddress.Cid);
        }
        else
        {
            EnclaveException ex = Assert.Throws<EnclaveException>(() => KernelVsock.Instance.Listen(new VsockAddress(CidParent, PortAny)));
            Assert.Equal(EADDRNOTAVAIL, ex.Errno);
        }
    }

    [Fact]
    public void Accept_NoClientWithinTheTimeout_ReturnsNull()
    {
        RequireVsock();
        using IVsockListener listener = KernelVsock.Instance.Listen(new VsockAddress(CidAny, PortAny));
        long start = Environment.TickCount64;
        Assert.Null(listener.Accept(TimeSpan.FromMilliseconds(200)));
        Assert.InRange(Environment.TickCount64 - start, 150, 10_000);
    }

    [Fact]
    public void Connect_NobodyListening_ThrowsSocketErrorWithTheErrno()
    {
        // A port this process just released on its own CID: nobody listens. Without vsock_loopback the kernel has no
        // transport for a local connection (ENODEV); with it, the connection is refused or reset.
        RequireVsock();
        uint port;
        using (IVsockListener probe = KernelVsock.Instance.Listen(new VsockAddress(CidAny, PortAny)))
            port = probe.LocalAddress.Port;
        var address = new VsockAddress(LocalCid(), port);
        EnclaveException ex = Assert.Throws<EnclaveException>(() => KernelVsock.Instance.Connect(address, TimeSpan.FromSeconds(2)));
        Assert.Equal(LaunchError.SocketError, ex.Error);
        Assert.NotEqual(0, ex.Errno);
        Assert.StartsWith($"connect to {address} failed: ", ex.Message);
    }

    [Fact]
    public void HeartbeatListen_KernelPortHeld_WaitsThenThrowsBootFailureWithEaddrinuse()
    {
        RequireVsock();
        using IVsockListener holder = KernelVsock.Instance.Listen(new VsockAddress(CidAny, PortAny));
        var address = new VsockAddress(CidAny, holder.LocalAddress.Port);
        long start = Environment.TickCount64;
        EnclaveException ex = Assert.Throws<EnclaveException>(() => Heartbeat.Listen(KernelVsock.Instance, address, TimeSpan.FromMilliseconds(300)));
        Assert.InRange(Environment.TickCount64 - start, 250, 10_000);
        Assert.Equal(LaunchError.EnclaveBootFailure, ex.Error); // E36 (spec/launch.md §2.2: bind failure → E36)
        Assert.Equal(EADDRINUSE, ex.Errno);
    }

    [Fact]
    public void HeartbeatListen_KernelPortFreedWhileWaiting_Succeeds()
    {
        RequireVsock();
        IVsockListener holder = KernelVsock.Instance.Listen(new VsockAddress(CidAny, PortAny));
        var address = new VsockAddress(CidAny, holder.LocalAddress.Port);
        var logged = new List<string>();
        var release = new Thread(() =>
        {
            Thread.Sleep(400);
            holder.Dispose();
        });
        release.Start();
        using IVsockListener listener = Heartbeat.Listen(KernelVsock.Instance, address, TimeSpan.FromSeconds(20), logged.Add);
        Assert.True(release.Join(TimeSpan.FromSeconds(20)));
        Assert.Equal(address.Port, listener.LocalAddress.Port);
        Assert.Contains(logged, line => line.Contains("in use", StringComparison.Ordinal));
    }

    [Fact]
    public void HeartbeatAwait_OverVsockLoopback_EchoesTheHeartbeatByte()
    {
        RequireVsock();
        IVsockListener listener;
        try
        {
            listener = KernelVsock.Instance.Listen(new VsockAddress(CidLocal, PortAny));
        }
        catch (EnclaveException ex) when (ex.Errno == EADDRNOTAVAIL)
        {
            Assert.Skip($"no vsock_loopback transport in this kernel ({File.ReadAllText("/proc/sys/kernel/osrelease").Trim()})");
            return;
        }

        using (listener)
        {
            // The enclave's side (bootstrap init.c enclave_ready): connect, write 0xB7, read the echo.
            int echo = -2;
            Exception? failure = null;
            var client = new Thread(() =>
            {
                try
                {
                    using VsockConnection connection = KernelVsock.Instance.Connect(new VsockAddress(CidLocal, listener.LocalAddress.Port), TimeSpan.FromSeconds(5));
                    connection.Stream.WriteByte(NitroEnclaves.HeartbeatByte);
                    connection.Stream.ReadTimeout = 10_000;
                    echo = connection.Stream.ReadByte();
                }
                catch (Exception ex)
                {
                    failure = ex;
                }
            });
            client.Start();

            // Over vsock_loopback the connecting side's CID is VMADDR_CID_LOCAL.
            Heartbeat.Await(listener, CidLocal, TimeSpan.FromSeconds(20));
            Assert.True(client.Join(TimeSpan.FromSeconds(20)), "the client did not finish");
            Assert.Null(failure);
            Assert.Equal(0xB7, echo);
        }
    }

    /// <summary>Skips the test, with the reason, when the kernel has no AF_VSOCK at all.</summary>
    private static void RequireVsock()
    {
        int fd = Libc.Socket(VmSockets.AF_VSOCK, VmSockets.SOCK_STREAM | VmSockets.SOCK_CLOEXEC, 0);
        if (fd < 0)
        {
            int errno = Marshal.GetLastPInvokeError();
            if (errno == EAFNOSUPPORT)
                Assert.Skip($"this kernel has no AF_VSOCK ({File.ReadAllText("/proc/sys/kernel/osrelease").Trim()}): load the vsock module");
            Assert.Fail($"socket(AF_VSOCK) failed: errno {errno}");
        }

        Libc.Close(fd);
    }

    /// <summary>This host's CID: <c>IOCTL_VM_SOCKETS_GET_LOCAL_CID</c> on /dev/vsock (linux/vm_sockets.h, <c>_IO(7, 0xb9)</c>).</summary>
    private static uint LocalCid()
    {
        int fd = Libc.Open("/dev/vsock", Libc.O_RDONLY | Libc.O_CLOEXEC, 0);
        if (fd < 0)
            Assert.Skip($"/dev/vsock cannot be opened (errno {Marshal.GetLastPInvokeError()}), so this host's CID is unknown");
        using var handle = new SafeFd(fd, ownsHandle: true);
        uint cid = 0;
        Assert.True(Libc.Ioctl(handle, Ioc.None(7, 0xB9), ref cid) == 0, $"IOCTL_VM_SOCKETS_GET_LOCAL_CID: errno {Marshal.GetLastPInvokeError()}");
        return cid;
    }
}

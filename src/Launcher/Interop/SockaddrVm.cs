using System.Runtime.InteropServices;

namespace Launcher.Interop;

/// <summary>
/// <c>struct sockaddr_vm</c> (include/uapi/linux/vm_sockets.h), 16 bytes: family @0, reserved @2, port @4, cid @8,
/// flags @12, zero[3] @13. A test pins the size.
/// </summary>
[StructLayout(LayoutKind.Sequential)]
internal struct SockaddrVm
{
    internal ushort Family;
    internal ushort Reserved1;
    internal uint Port;
    internal uint Cid;
    internal byte Flags;
    internal byte Zero0;
    internal byte Zero1;
    internal byte Zero2;

    internal static SockaddrVm Of(uint cid, uint port) => new() { Family = VmSockets.AF_VSOCK, Cid = cid, Port = port };
}

/// <summary>Constants of linux/vm_sockets.h and linux/socket.h.</summary>
internal static class VmSockets
{
    /// <summary><c>AF_VSOCK</c> (linux/socket.h); the managed Socket refuses it (dotnet/runtime#58327), hence P/Invoke.</summary>
    internal const ushort AF_VSOCK = 40;

    /// <summary><c>SOCK_STREAM</c>.</summary>
    internal const int SOCK_STREAM = 1;

    /// <summary><c>SOCK_CLOEXEC</c> (= O_CLOEXEC).</summary>
    internal const int SOCK_CLOEXEC = 0x80000;

    /// <summary><c>VMADDR_CID_ANY</c>.</summary>
    internal const uint CidAny = 0xFFFFFFFF;

    /// <summary><c>VMADDR_CID_LOCAL</c>: the loopback transport (vsock_loopback).</summary>
    internal const uint CidLocal = 1;

    /// <summary><c>VMADDR_PORT_ANY</c>.</summary>
    internal const uint PortAny = 0xFFFFFFFF;

    /// <summary><c>SO_VM_SOCKETS_CONNECT_TIMEOUT</c> (the _OLD value 6, a struct timeval on 64-bit), level AF_VSOCK; nitro-cli sets it to 20 s for the console.</summary>
    internal const int SO_VM_SOCKETS_CONNECT_TIMEOUT = 6;

    /// <summary><c>SHUT_WR</c>.</summary>
    internal const int SHUT_WR = 1;
}

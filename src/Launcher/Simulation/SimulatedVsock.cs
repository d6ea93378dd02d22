using System.Buffers.Binary;
using System.Globalization;
using System.Net.Sockets;
using Launcher.Interop;
using Launcher.Vsock;

namespace Launcher.Simulation;

/// <summary>
/// vsock between the simulated parent, enclaves and hypervisor, made of Unix sockets in one folder: a listener on
/// CID c, port p is the socket <c>c.p</c>; a connecting side first sends its own CID (4 bytes, little-endian) so the
/// listener learns the peer's CID as accept(2) would tell it. Binding follows the kernel's rules: only the local CID
/// (or VMADDR_CID_ANY), one listener per address (EADDRINUSE).
/// </summary>
public sealed class SimulatedVsock(string folder, uint localCid) : IVsockTransport
{
    /// <summary>The folder of sockets.</summary>
    public string Folder { get; } = folder;

    /// <summary>This side's CID.</summary>
    public uint LocalCid { get; } = localCid;

    /// <inheritdoc/>
    public IVsockListener Listen(VsockAddress address, int backlog = 16)
    {
        uint cid = address.Cid == VmSockets.CidAny ? LocalCid : address.Cid;
        if (cid != LocalCid)
            throw KernelVsock.Failure($"bind to {address}", Libc.EADDRNOTAVAIL);
        Directory.CreateDirectory(Folder);
        uint port = address.Port;
        if (port == VmSockets.PortAny)
        {
            port = 49152;
            while (File.Exists(PathOf(cid, port)))
                port++;
        }

        string path = PathOf(cid, port);
        if (File.Exists(path))
        {
            if (IsListening(path))
                throw KernelVsock.Failure($"bind to {address}", Libc.EADDRINUSE);
            File.Delete(path); // a socket left by a process that died
        }

        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            socket.Bind(new UnixDomainSocketEndPoint(path));
            socket.Listen(backlog);
        }
        catch (SocketException ex)
        {
            socket.Dispose();
            throw KernelVsock.Failure($"bind to {address}", ex.SocketErrorCode == SocketError.AddressAlreadyInUse ? Libc.EADDRINUSE : Libc.EINVAL);
        }

        return new Listener(socket, path, new VsockAddress(cid, port));
    }

    /// <inheritdoc/>
    public VsockConnection Connect(VsockAddress address, TimeSpan timeout)
    {
        string path = PathOf(address.Cid, address.Port);
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            socket.Connect(new UnixDomainSocketEndPoint(path));
            Span<byte> header = stackalloc byte[4];
            BinaryPrimitives.WriteUInt32LittleEndian(header, LocalCid);
            socket.Send(header);
        }
        catch (SocketException)
        {
            socket.Dispose();
            throw KernelVsock.Failure($"connect to {address}", Libc.ECONNREFUSED);
        }

        return new VsockConnection(new NetworkStream(socket, ownsSocket: true), address);
    }

    private string PathOf(uint cid, uint port) =>
        Path.Join(Folder, cid.ToString(CultureInfo.InvariantCulture) + "." + port.ToString(CultureInfo.InvariantCulture));

    private static bool IsListening(string path)
    {
        using var probe = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            probe.Connect(new UnixDomainSocketEndPoint(path));
            return true;
        }
        catch (SocketException)
        {
            return false;
        }
    }

    private sealed class Listener(Socket socket, string path, VsockAddress local) : IVsockListener
    {
        private int _disposed;

        public VsockAddress LocalAddress { get; } = local;

        public VsockConnection? Accept(TimeSpan timeout)
        {
            int microseconds = timeout == Timeout.InfiniteTimeSpan ? -1 : (int)Math.Min(int.MaxValue, timeout.TotalMicroseconds);
            if (!socket.Poll(microseconds, SelectMode.SelectRead))
                return null;
            Socket client = socket.Accept();
            var stream = new NetworkStream(client, ownsSocket: true);
            try
            {
                // The connecting side's CID header (see the class summary).
                byte[] header = new byte[4];
                client.ReceiveTimeout = 5000;
                stream.ReadExactly(header);
                client.ReceiveTimeout = 0;
                uint peerCid = BinaryPrimitives.ReadUInt32LittleEndian(header);
                return new VsockConnection(stream, new VsockAddress(peerCid, 0));
            }
            catch (Exception ex) when (ex is IOException or SocketException)
            {
                stream.Dispose();
                return null;
            }
        }

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _disposed, 1) != 0)
                return;
            socket.Dispose();
            try
            {
                File.Delete(path);
            }
            catch (IOException)
            {
            }
        }
    }
}

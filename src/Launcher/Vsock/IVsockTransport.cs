namespace Launcher.Vsock;

/// <summary>A vsock address: context id and port.</summary>
public readonly record struct VsockAddress(uint Cid, uint Port)
{
    /// <inheritdoc/>
    public override string ToString() => $"vsock {Cid}:{Port}";
}

/// <summary>
/// vsock stream sockets as the launcher uses them: listen (the heartbeat), connect (the console). On a Nitro parent
/// this is the kernel's AF_VSOCK (<see cref="KernelVsock"/>); the simulator and the local QEMU backend provide their
/// own.
/// </summary>
public interface IVsockTransport
{
    /// <summary>Binds <paramref name="address"/> and listens.</summary>
    /// <exception cref="EnclaveException">E11 with the errno (e.g. EADDRINUSE when another launch holds the port).</exception>
    IVsockListener Listen(VsockAddress address, int backlog = 16);

    /// <summary>Connects to <paramref name="address"/>, giving up after <paramref name="timeout"/>.</summary>
    /// <exception cref="EnclaveException">E11 with the errno (ECONNREFUSED, ETIMEDOUT, …).</exception>
    VsockConnection Connect(VsockAddress address, TimeSpan timeout);
}

/// <summary>A listening vsock socket.</summary>
public interface IVsockListener : IDisposable
{
    /// <summary>The address it is bound to (the port the kernel chose for a port-any bind).</summary>
    VsockAddress LocalAddress { get; }

    /// <summary>Waits up to <paramref name="timeout"/> for a connection; null on timeout.</summary>
    /// <exception cref="EnclaveException">E11 when accepting fails.</exception>
    VsockConnection? Accept(TimeSpan timeout);
}

/// <summary>One connected stream and the peer's address (the CID tells which enclave it is).</summary>
public sealed class VsockConnection(Stream stream, VsockAddress peer) : IDisposable
{
    /// <summary>The byte stream; Read returns 0 at the peer's end of stream.</summary>
    public Stream Stream { get; } = stream;

    /// <summary>Who is on the other side.</summary>
    public VsockAddress Peer { get; } = peer;

    /// <inheritdoc/>
    public void Dispose() => Stream.Dispose();
}

using Launcher.Vsock;

namespace Launcher;

/// <summary>
/// The enclave's "I booted" signal: its init connects to the parent (CID 3) on port 9000, writes 0xB7 and reads it
/// back (aws-nitro-enclaves-sdk-bootstrap init.c <c>enclave_ready</c>; nitro-cli <c>eif_loader/src/lib.rs</c>).
/// </summary>
public static class Heartbeat
{
    /// <summary>nitro-cli's <c>TIMEOUT_MINUTE_MS</c> (90,000 ms despite the name).</summary>
    private static readonly TimeSpan Step = TimeSpan.FromSeconds(90);

    private const ulong EifStep = 6UL << 30;      // one Step per started 6 GiB of EIF
    private const ulong MemoryStep = 100UL << 30; // one Step per started 100 GiB of memory

    /// <summary>The time nitro-cli gives an enclave to send its heartbeat: ceil(eif / 6 GiB) × 90 s + ceil(memory / 100 GiB) × 90 s (at least 180 s).</summary>
    public static TimeSpan Timeout(ulong eifBytes, ulong memoryBytes)
    {
        ulong steps = CeilDiv(Math.Max(eifBytes, 1), EifStep) + CeilDiv(Math.Max(memoryBytes, 1), MemoryStep);
        return Step * steps;
    }

    /// <summary>
    /// Binds the heartbeat listener, waiting up to <paramref name="wait"/> while the port is held by another launch
    /// (one listener per port: a second launch gets EADDRINUSE, nitro-cli#516, where nitro-cli fails with E36/E39).
    /// </summary>
    /// <exception cref="EnclaveException">E36 when the port stays taken or cannot be bound.</exception>
    public static IVsockListener Listen(IVsockTransport transport, VsockAddress address, TimeSpan wait, Action<string>? log = null)
    {
        long deadline = Environment.TickCount64 + (long)wait.TotalMilliseconds;
        bool told = false;
        while (true)
        {
            try
            {
                return transport.Listen(address);
            }
            catch (EnclaveException ex) when (ex.Errno == Interop.Libc.EADDRINUSE && Environment.TickCount64 < deadline)
            {
                if (!told)
                    log?.Invoke($"{address} is in use (another enclave is booting); waiting for it");
                told = true;
                Thread.Sleep(100);
            }
            catch (EnclaveException ex)
            {
                throw new EnclaveException(LaunchError.EnclaveBootFailure, $"cannot listen for the enclave's heartbeat on {address}: {ex.Message}", ex.Errno, ex);
            }
        }
    }

    /// <summary>
    /// Waits for the heartbeat: accepts a connection from <paramref name="enclaveCid"/> (others are closed and
    /// ignored), reads one byte, which must be 0xB7, and writes it back. Gives up after <paramref name="timeout"/>,
    /// or as soon as <paramref name="stopped"/> says the enclave is gone.
    /// </summary>
    /// <exception cref="EnclaveException">E36 naming what went wrong.</exception>
    public static void Await(IVsockListener listener, uint enclaveCid, TimeSpan timeout, Func<bool>? stopped = null, Action<string>? log = null)
    {
        long deadline = Environment.TickCount64 + (long)timeout.TotalMilliseconds;
        while (true)
        {
            long left = deadline - Environment.TickCount64;
            if (left <= 0)
            {
                throw new EnclaveException(LaunchError.EnclaveBootFailure,
                    $"Waiting on enclave to boot failed with error VsockTimeoutError: no heartbeat on {listener.LocalAddress} from CID {enclaveCid} within {timeout.TotalSeconds:0} s " +
                    "(the kernel or init did not come up; start it with --debug-mode and read its console)");
            }

            if (stopped?.Invoke() == true)
            {
                throw new EnclaveException(LaunchError.EnclaveBootFailure,
                    $"Waiting on enclave to boot failed: the enclave (CID {enclaveCid}) stopped before it sent its heartbeat (start it with --debug-mode and read its console)");
            }

            using VsockConnection? connection = listener.Accept(TimeSpan.FromMilliseconds(Math.Min(left, 250)));
            if (connection is null)
                continue;
            if (enclaveCid != 0 && connection.Peer.Cid != enclaveCid)
            {
                log?.Invoke($"ignored a heartbeat connection from CID {connection.Peer.Cid} (this enclave is CID {enclaveCid})");
                continue;
            }

            int got;
            try
            {
                connection.Stream.ReadTimeout = (int)Math.Max(1, deadline - Environment.TickCount64);
                got = connection.Stream.ReadByte();
            }
            catch (Exception ex) when (ex is IOException or TimeoutException)
            {
                throw new EnclaveException(LaunchError.EnclaveBootFailure, $"Waiting on enclave to boot failed: reading the heartbeat from {connection.Peer} failed: {ex.Message}", innerException: ex);
            }

            if (got != NitroEnclaves.HeartbeatByte)
            {
                string what = got < 0 ? "closed the connection without a byte" : $"sent 0x{got:X2}";
                throw new EnclaveException(LaunchError.EnclaveBootFailure, $"Waiting on enclave to boot failed: {connection.Peer} {what} instead of the heartbeat 0x{NitroEnclaves.HeartbeatByte:X2}");
            }

            try
            {
                connection.Stream.WriteByte(NitroEnclaves.HeartbeatByte);
                connection.Stream.Flush();
            }
            catch (IOException ex)
            {
                throw new EnclaveException(LaunchError.EnclaveBootFailure, $"Waiting on enclave to boot failed: echoing the heartbeat to {connection.Peer} failed: {ex.Message}", innerException: ex);
            }

            return;
        }
    }

    private static ulong CeilDiv(ulong a, ulong b) => (a / b) + (a % b == 0 ? 0UL : 1UL);
}

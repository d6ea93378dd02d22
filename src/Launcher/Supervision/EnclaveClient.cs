using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Launcher.Supervision;

/// <summary>Talks to supervisors (see <see cref="EnclaveSupervisor"/>'s protocol).</summary>
public static class EnclaveClient
{
    /// <summary>How long a supervisor gets to answer.</summary>
    public static readonly TimeSpan DefaultTimeout = TimeSpan.FromSeconds(10);

    /// <summary>The enclave's description.</summary>
    /// <exception cref="EnclaveException">E39 when the supervisor cannot be reached or answers badly.</exception>
    public static EnclaveDescription Describe(string socketPath, TimeSpan? timeout = null)
    {
        using var stream = Request(socketPath, "Describe", timeout ?? DefaultTimeout, out JsonObject answer);
        return Description(socketPath, answer);
    }

    /// <summary>Terminates the enclave; returns its description afterwards.</summary>
    /// <exception cref="EnclaveException">E39 when the supervisor cannot be reached; its own error otherwise.</exception>
    public static EnclaveDescription Terminate(string socketPath, TimeSpan? timeout = null)
    {
        using var stream = Request(socketPath, "Terminate", timeout ?? TimeSpan.FromSeconds(130), out JsonObject answer);
        return Description(socketPath, answer);
    }

    /// <summary>The console stream: everything captured since boot, then live output until the console ends.</summary>
    /// <exception cref="EnclaveException">E44 for an enclave not in debug mode; E39 when the supervisor cannot be reached.</exception>
    public static Stream OpenConsole(string socketPath)
    {
        NetworkStream stream = Request(socketPath, "Console", DefaultTimeout, out _);
        stream.ReadTimeout = Timeout.Infinite;
        return stream;
    }

    private static NetworkStream Request(string socketPath, string command, TimeSpan timeout, out JsonObject answer)
    {
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            socket.Connect(new UnixDomainSocketEndPoint(socketPath));
        }
        catch (SocketException ex)
        {
            socket.Dispose();
            if (ex.SocketErrorCode == SocketError.ConnectionRefused && File.Exists(socketPath))
            {
                // Nobody listens: the supervisor died without cleaning up (and with it its enclave, whose fd it held).
                TryDelete(socketPath);
                throw new EnclaveException(LaunchError.EnclaveProcessConnectionFailure, $"{socketPath}: no enclave process answers (it died; the stale socket was removed)", (int)ex.SocketErrorCode, ex);
            }

            throw new EnclaveException(LaunchError.EnclaveProcessConnectionFailure, $"{socketPath}: {ex.Message}", (int)ex.SocketErrorCode, ex);
        }

        var stream = new NetworkStream(socket, ownsSocket: true) { ReadTimeout = (int)timeout.TotalMilliseconds, WriteTimeout = (int)timeout.TotalMilliseconds };
        try
        {
            stream.Write(Encoding.UTF8.GetBytes(new JsonObject { ["Command"] = command }.ToJsonString() + "\n"));
            string line = EnclaveSupervisor.ReadLine(stream) ?? throw new IOException("the enclave process closed the connection without an answer");
            answer = JsonNode.Parse(line) as JsonObject ?? throw new IOException("the answer is not a JSON object");
            if (answer["Ok"]?.GetValue<bool>() != true)
            {
                int code = answer["Error"]?.GetValue<int>() ?? (int)LaunchError.EnclaveProcessCommandNotExecuted;
                string message = answer["Message"]?.GetValue<string>() ?? "the enclave process refused the command";
                throw new EnclaveException((LaunchError)code, message);
            }

            return stream;
        }
        catch (Exception ex) when (ex is IOException or JsonException or InvalidOperationException)
        {
            stream.Dispose();
            if (ex is EnclaveException)
                throw;
            throw new EnclaveException(LaunchError.EnclaveProcessConnectionFailure, $"{socketPath}: {ex.Message}", innerException: ex);
        }
        catch
        {
            stream.Dispose();
            throw;
        }
    }

    private static EnclaveDescription Description(string socketPath, JsonObject answer)
    {
        try
        {
            return EnclaveDescriptionJson.FromJson(answer["Enclave"] as JsonObject ?? throw new FormatException("'Enclave' is missing"));
        }
        catch (FormatException ex)
        {
            throw new EnclaveException(LaunchError.EnclaveProcessConnectionFailure, $"{socketPath}: {ex.Message}", innerException: ex);
        }
    }

    private static void TryDelete(string path)
    {
        try
        {
            File.Delete(path);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
        }
    }
}

using System.Net.Sockets;
using System.Text;
using System.Text.Json.Nodes;

namespace Launcher.Supervision;

/// <summary>
/// Holds an enclave for its whole life and answers for it: the enclave lives as long as its fd, so the process that
/// created it keeps it (nitro-cli's "enclave process"). It listens on a Unix socket (owner-only) for
/// <c>Describe</c>, <c>Terminate</c> and <c>Console</c>; watches the enclave fd for POLLHUP (the enclave stopped by
/// itself); captures the debug console from the start; and on the way out releases everything (enclave fd, memory,
/// socket file).
/// </summary>
/// <remarks>
/// Protocol: one JSON line per request (<c>{"Command":"Describe"}</c>), one JSON line per answer
/// (<c>{"Ok":true,"Enclave":{…}}</c> or <c>{"Ok":false,"Error":44,"Message":"…"}</c>); after <c>Console</c>'s answer
/// the connection carries raw console bytes until the console ends.
/// </remarks>
public sealed class EnclaveSupervisor : IDisposable
{
    private readonly IEnclaveInstance _enclave;
    private readonly string _socketPath;
    private readonly Action<string>? _log;
    private readonly ManualResetEventSlim _done = new(false);
    private readonly ConsoleBuffer? _console;
    private Socket? _listener;
    private Thread? _acceptThread;
    private Thread? _consoleThread;
    private string _ending = "running";

    /// <summary>Creates a supervisor for <paramref name="enclave"/> that will listen on <paramref name="socketPath"/>.</summary>
    /// <param name="enclave">The enclave (owned: it is terminated when the supervisor ends).</param>
    /// <param name="socketPath">The Unix socket (see <see cref="EnclaveDirectory"/>).</param>
    /// <param name="consoleLogPath">Where to keep the debug console's output (debug mode only), or null.</param>
    /// <param name="log">Supervisor events.</param>
    public EnclaveSupervisor(IEnclaveInstance enclave, string socketPath, string? consoleLogPath = null, Action<string>? log = null)
    {
        _enclave = enclave;
        _socketPath = socketPath;
        _log = log;
        if (enclave.Describe().DebugMode)
            _console = new ConsoleBuffer(consoleLogPath);
    }

    /// <summary>The enclave.</summary>
    public IEnclaveInstance Enclave => _enclave;

    /// <summary>Why the supervision ended: <c>terminated</c>, <c>exited</c> (the enclave stopped by itself), <c>stopped</c>.</summary>
    public string Ending => _ending;

    /// <summary>Binds the socket and starts answering; starts capturing the console in debug mode.</summary>
    /// <exception cref="EnclaveException">E11 when the socket cannot be bound.</exception>
    public void Start()
    {
        if (File.Exists(_socketPath))
            File.Delete(_socketPath); // a slot uid is not reused while its enclave lives, so this is a dead supervisor's
        var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            listener.Bind(new UnixDomainSocketEndPoint(_socketPath));
            File.SetUnixFileMode(_socketPath, UnixFileMode.UserRead | UnixFileMode.UserWrite);
            listener.Listen(16);
        }
        catch (SocketException ex)
        {
            listener.Dispose();
            throw new EnclaveException(LaunchError.SocketError, $"cannot listen on {_socketPath}: {ex.Message}", (int)ex.SocketErrorCode, ex);
        }

        _listener = listener;
        _acceptThread = new Thread(AcceptLoop) { IsBackground = true, Name = "supervisor socket" };
        _acceptThread.Start();
        if (_console is not null)
        {
            _consoleThread = new Thread(CaptureConsole) { IsBackground = true, Name = "supervisor console" };
            _consoleThread.Start();
        }
    }

    /// <summary>
    /// Supervises until the enclave is terminated (through the socket or <see cref="Stop"/>) or stops by itself, then
    /// releases everything. Returns <see cref="Ending"/>.
    /// </summary>
    public string Run()
    {
        while (!_done.IsSet)
        {
            bool exited;
            try
            {
                exited = _enclave.WaitForExit(TimeSpan.FromMilliseconds(500));
            }
            catch (EnclaveException ex)
            {
                if (_done.IsSet)
                    break;
                _log?.Invoke($"watching the enclave failed: {ex.Message}");
                exited = true;
            }

            if (exited && !_done.IsSet)
            {
                _ending = "exited";
                _log?.Invoke(_enclave is Local.LocalEnclave ? "the enclave stopped by itself (QEMU exited)" : "the enclave stopped by itself (POLLHUP)");
                _done.Set();
            }
        }

        Shutdown();
        return _ending;
    }

    /// <summary>Ends the supervision (the enclave is terminated); <see cref="Run"/> returns.</summary>
    public void Stop()
    {
        if (!_done.IsSet)
            _ending = "stopped";
        _done.Set();
    }

    /// <summary>Releases everything (idempotent).</summary>
    public void Dispose()
    {
        _done.Set();
        Shutdown();
    }

    private void Shutdown()
    {
        try
        {
            _enclave.Terminate();
        }
        catch (EnclaveException ex)
        {
            _log?.Invoke(ex.Message);
        }

        Socket? listener = Interlocked.Exchange(ref _listener, null);
        if (listener is not null)
        {
            listener.Dispose();
            RemoveSocketFile();
        }

        _consoleThread?.Join(TimeSpan.FromSeconds(5));
        _console?.Complete();
        _console?.Dispose();
    }

    private void RemoveSocketFile()
    {
        try
        {
            File.Delete(_socketPath);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            _log?.Invoke($"cannot remove {_socketPath}: {ex.Message}");
        }
    }

    private void AcceptLoop()
    {
        while (_listener is { } listener)
        {
            Socket client;
            try
            {
                client = listener.Accept();
            }
            catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
            {
                return;
            }

            new Thread(() => Serve(client)) { IsBackground = true, Name = "supervisor request" }.Start();
        }
    }

    private void Serve(Socket client)
    {
        using var stream = new NetworkStream(client, ownsSocket: true);
        try
        {
            string? line = ReadLine(stream);
            string command = line is not null && JsonNode.Parse(line) is JsonObject request && request["Command"] is JsonValue value
                ? value.GetValue<string>()
                : string.Empty;
            switch (command)
            {
                case "Describe":
                    Answer(stream, Ok(_enclave.Describe()));
                    break;
                case "Terminate":
                    _ending = "terminated";
                    _log?.Invoke("terminate requested");
                    _enclave.Terminate();
                    RemoveSocketFile(); // once terminate-enclave returns, describe-enclaves must not list it
                    Answer(stream, Ok(_enclave.Describe()));
                    _done.Set();
                    break;
                case "Console":
                    ServeConsole(stream);
                    break;
                default:
                    Answer(stream, Error(LaunchError.InvalidCommand, $"unknown command '{command}'"));
                    break;
            }
        }
        catch (EnclaveException ex)
        {
            TryAnswer(stream, Error(ex.Error, ex.Message));
        }
        catch (Exception ex) when (ex is IOException or System.Text.Json.JsonException or InvalidOperationException or SocketException)
        {
            TryAnswer(stream, Error(LaunchError.InvalidCommand, ex.Message));
        }
    }

    private void ServeConsole(NetworkStream stream)
    {
        if (_console is null)
        {
            Answer(stream, Error(LaunchError.EnclaveConsoleConnectionFailure,
                $"enclave {_enclave.Describe().EnclaveId} was not started in debug mode, so it has no console (run it with --debug-mode)"));
            return;
        }

        Answer(stream, new JsonObject { ["Ok"] = true });
        byte[] buffer = new byte[16 << 10];
        long position = _console.Oldest;
        while (true)
        {
            int n = _console.Read(ref position, buffer, TimeSpan.FromMilliseconds(500));
            if (n < 0)
                return;
            if (n > 0)
                stream.Write(buffer, 0, n);
        }
    }

    private void CaptureConsole()
    {
        // The console port exists once the hypervisor started the enclave; connect as early as possible (retrying for
        // up to 20 s, nitro-cli's connect timeout) so that boot output is kept.
        Stream? console = null;
        long deadline = Environment.TickCount64 + 20_000;
        while (console is null && !_done.IsSet)
        {
            try
            {
                console = _enclave.OpenConsole(TimeSpan.FromSeconds(20));
            }
            catch (EnclaveException ex)
            {
                if (Environment.TickCount64 > deadline)
                {
                    _log?.Invoke($"no console: {ex.Message}");
                    _console!.Complete();
                    return;
                }

                Thread.Sleep(100);
            }
        }

        if (console is null)
            return;
        using (console)
        {
            byte[] buffer = new byte[16 << 10];
            try
            {
                int n;
                while ((n = console.Read(buffer)) > 0)
                    _console!.Append(buffer.AsSpan(0, n));
            }
            catch (Exception ex) when (ex is IOException or ObjectDisposedException)
            {
                _log?.Invoke($"console read ended: {ex.Message}");
            }
        }

        _console!.Complete();
    }

    private static JsonObject Ok(EnclaveDescription description) => new() { ["Ok"] = true, ["Enclave"] = EnclaveDescriptionJson.ToJson(description) };

    private static JsonObject Error(LaunchError error, string message) => new() { ["Ok"] = false, ["Error"] = (int)error, ["Message"] = message };

    private static void Answer(Stream stream, JsonObject answer)
    {
        stream.Write(Encoding.UTF8.GetBytes(answer.ToJsonString() + "\n"));
        stream.Flush();
    }

    private static void TryAnswer(Stream stream, JsonObject answer)
    {
        try
        {
            Answer(stream, answer);
        }
        catch (IOException)
        {
        }
    }

    /// <summary>Reads one line (at most 64 KiB), without reading past it.</summary>
    internal static string? ReadLine(Stream stream)
    {
        var bytes = new List<byte>();
        while (bytes.Count < 65536)
        {
            int b = stream.ReadByte();
            if (b < 0)
                return bytes.Count == 0 ? null : Encoding.UTF8.GetString(bytes.ToArray());
            if (b == '\n')
                return Encoding.UTF8.GetString(bytes.ToArray());
            bytes.Add((byte)b);
        }

        throw new IOException("a request line longer than 64 KiB");
    }
}

using System.CommandLine;
using System.Text;
using Launcher;
using Launcher.Supervision;

namespace EifCli;

/// <summary>
/// <c>eif console</c>: a debug-mode enclave's console (nitro-cli compatible). The enclave process captures it from the
/// first moment it can, so the output starts at boot, not at the heartbeat (nitro-cli#343); several readers may
/// attach. After the enclave is gone, its console log is printed instead (#405).
/// </summary>
internal sealed class ConsoleCommand : Command
{
    private readonly TextWriter _stdout;
    private readonly TextWriter _stderr;

    internal ConsoleCommand(TextWriter stdout, TextWriter stderr)
        : base("console", "Print a debug-mode enclave's console output (from boot) until it ends.")
    {
        _stdout = stdout;
        _stderr = stderr;
        Options.Add(EnclaveIdOption);
        Options.Add(EnclaveNameOption);
        Options.Add(DisconnectTimeoutOption);
        Validators.Add(result =>
        {
            bool id = result.GetResult(EnclaveIdOption) is not null, name = result.GetResult(EnclaveNameOption) is not null;
            if (id == name)
                result.AddError("Give exactly one of --enclave-id and --enclave-name.");
        });
        SetAction(result => Execute(result));
    }

    internal Option<string> EnclaveIdOption { get; } = new("--enclave-id") { Description = "The enclave's ID.", HelpName = "ID" };

    internal Option<string> EnclaveNameOption { get; } = new("--enclave-name") { Description = "The enclave's name.", HelpName = "NAME" };

    internal Option<ulong?> DisconnectTimeoutOption { get; } = new("--disconnect-timeout") { Description = "Stop after this many seconds.", HelpName = "SECONDS" };

    /// <summary>Copies the console behind <paramref name="socket"/> to <paramref name="stdout"/> until it ends or the time is up.</summary>
    internal static void Stream(string socket, TextWriter stdout, TextWriter stderr, TimeSpan? disconnectAfter)
    {
        using Stream console = EnclaveClient.OpenConsole(socket);
        stderr.WriteLine("Successfully connected to the console.");
        Copy(console, stdout, disconnectAfter);
    }

    /// <summary>Copies <paramref name="console"/> to <paramref name="stdout"/> as UTF-8 text until it ends or the time is up.</summary>
    internal static void Copy(Stream console, TextWriter stdout, TimeSpan? disconnectAfter)
    {
        using var timer = disconnectAfter is { } after ? new Timer(_ => console.Dispose(), null, after, Timeout.InfiniteTimeSpan) : null;
        Decoder decoder = Encoding.UTF8.GetDecoder();
        byte[] buffer = new byte[16 << 10];
        char[] chars = new char[Encoding.UTF8.GetMaxCharCount(buffer.Length)];
        try
        {
            int n;
            while ((n = console.Read(buffer)) > 0)
            {
                int count = decoder.GetChars(buffer, 0, n, chars, 0);
                stdout.Write(chars, 0, count);
                stdout.Flush();
            }
        }
        catch (Exception ex) when (ex is IOException or ObjectDisposedException)
        {
            if (disconnectAfter is null)
                throw new EnclaveException(LaunchError.EnclaveConsoleReadError, $"reading the console failed: {ex.Message}", innerException: ex);
        }
    }

    private int Execute(ParseResult result)
    {
        string folder = EnclaveDirectory.Default;
        string? id = result.GetValue(EnclaveIdOption);
        string? log = id is null ? null : EnclaveDirectory.SocketPathForId(folder, id) is { } path ? Path.ChangeExtension(path, ".console.log") : null;
        string socket;
        try
        {
            socket = EnclaveLookup.Socket(folder, id, result.GetValue(EnclaveNameOption));
        }
        catch (EnclaveException) when (log is not null && File.Exists(log))
        {
            _stderr.WriteLine($"Enclave {id} has ended; its console log ({log}):");
            _stdout.Write(File.ReadAllText(log));
            return ExitCode.Success;
        }

        TimeSpan? after = result.GetValue(DisconnectTimeoutOption) is { } seconds ? TimeSpan.FromSeconds(seconds) : null;
        Stream(socket, _stdout, _stderr, after);
        return ExitCode.Success;
    }
}

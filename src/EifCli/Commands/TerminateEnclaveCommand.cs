using System.CommandLine;
using Launcher;
using Launcher.Supervision;

namespace EifCli;

/// <summary>
/// <c>eif terminate-enclave</c>: ends an enclave by ID or name, or all of them (nitro-cli compatible): the enclave
/// process closes the enclave fd (the driver stops the enclave), unmaps its memory and exits.
/// </summary>
internal sealed class TerminateEnclaveCommand : Command
{
    private readonly TextWriter _stdout;
    private readonly TextWriter _stderr;

    internal TerminateEnclaveCommand(TextWriter stdout, TextWriter stderr)
        : base("terminate-enclave", "Terminate an enclave (--enclave-id, --enclave-name) or all (--all).")
    {
        _stdout = stdout;
        _stderr = stderr;
        Options.Add(EnclaveIdOption);
        Options.Add(EnclaveNameOption);
        Options.Add(AllOption);
        Validators.Add(result =>
        {
            int given = new Option[] { EnclaveIdOption, EnclaveNameOption, AllOption }.Count(o => result.GetResult(o) is not null);
            if (given != 1)
                result.AddError("Give exactly one of --enclave-id, --enclave-name and --all.");
        });
        SetAction(result => Execute(result));
    }

    internal Option<string> EnclaveIdOption { get; } = new("--enclave-id") { Description = "The enclave's ID (describe-enclaves' EnclaveID).", HelpName = "ID" };

    internal Option<string> EnclaveNameOption { get; } = new("--enclave-name") { Description = "The enclave's name.", HelpName = "NAME" };

    internal Option<bool> AllOption { get; } = new("--all") { Description = "Every enclave." };

    private int Execute(ParseResult result)
    {
        string folder = EnclaveDirectory.Default;
        IEnumerable<string> sockets = result.GetValue(AllOption)
            ? EnclaveDirectory.Sockets(folder)
            : [EnclaveLookup.Socket(folder, result.GetValue(EnclaveIdOption), result.GetValue(EnclaveNameOption))];
        int failed = 0;
        foreach (string socket in sockets)
        {
            try
            {
                EnclaveDescription description = EnclaveClient.Terminate(socket);
                Output.WriteJson(_stdout, EnclaveJson.Terminated(description));
                _stderr.WriteLine($"Successfully terminated enclave {description.EnclaveId}.");
            }
            catch (EnclaveException ex) when (result.GetValue(AllOption))
            {
                failed++;
                _stderr.WriteLine($"eif: {ex.Message}");
            }
        }

        if (failed > 0)
            throw new EnclaveException(LaunchError.EnclaveProcessConnectionFailure, $"Failed connections: {failed}");
        return ExitCode.Success;
    }
}

/// <summary>Finds an enclave's socket by ID or name.</summary>
internal static class EnclaveLookup
{
    /// <exception cref="EnclaveException">E40 for an unknown ID, E58 for an unknown name.</exception>
    internal static string Socket(string folder, string? id, string? name)
    {
        if (id is not null)
        {
            string? socket = EnclaveDirectory.SocketPathForId(folder, id);
            if (socket is null || !File.Exists(socket))
                throw new EnclaveException(LaunchError.SocketPathNotFound, $"no enclave with ID '{id}' (describe-enclaves lists the running ones)");
            return socket;
        }

        foreach (string socket in EnclaveDirectory.Sockets(folder))
        {
            try
            {
                if (EnclaveClient.Describe(socket, TimeSpan.FromSeconds(5)).EnclaveName == name)
                    return socket;
            }
            catch (EnclaveException)
            {
                // Unreachable enclave processes cannot be the one asked for.
            }
        }

        throw new EnclaveException(LaunchError.EnclaveNamingError, $"no enclave named '{name}' (describe-enclaves lists the running ones)");
    }
}

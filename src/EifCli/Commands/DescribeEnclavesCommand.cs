using System.CommandLine;
using EifFormat.Json;
using Launcher;
using Launcher.Supervision;

namespace EifCli;

/// <summary>
/// <c>eif describe-enclaves</c>: nitro-cli's JSON array, one element per enclave whose enclave process answers;
/// enclave processes that do not answer are counted on stderr and make the exit code E39, as in nitro-cli.
/// </summary>
internal sealed class DescribeEnclavesCommand : Command
{
    private readonly TextWriter _stdout;
    private readonly TextWriter _stderr;

    internal DescribeEnclavesCommand(TextWriter stdout, TextWriter stderr)
        : base("describe-enclaves", "List the running enclaves as JSON (nitro-cli compatible).")
    {
        _stdout = stdout;
        _stderr = stderr;
        Options.Add(MetadataOption);
        SetAction(result => Execute(result));
    }

    internal Option<bool> MetadataOption { get; } = new("--metadata") { Description = "Add each EIF's ImageName, ImageVersion and Metadata." };

    private int Execute(ParseResult result)
    {
        bool metadata = result.GetValue(MetadataOption);
        var enclaves = new List<JValue>();
        int failed = 0;
        foreach (string socket in EnclaveDirectory.Sockets(EnclaveDirectory.Default))
        {
            try
            {
                enclaves.Add(EnclaveJson.Describe(EnclaveClient.Describe(socket), metadata));
            }
            catch (EnclaveException ex)
            {
                failed++;
                _stderr.WriteLine($"eif: {ex.Message}");
            }
        }

        Output.WriteJson(_stdout, new JArray(enclaves));
        if (failed > 0)
            throw new EnclaveException(LaunchError.EnclaveProcessConnectionFailure, $"Failed connections: {failed}");
        return ExitCode.Success;
    }
}

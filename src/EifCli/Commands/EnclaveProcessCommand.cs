using System.CommandLine;

namespace EifCli;

/// <summary>The hidden verb run-enclave starts its enclave process with (see <see cref="EnclaveProcess"/>).</summary>
internal sealed class EnclaveProcessCommand : Command
{
    internal EnclaveProcessCommand()
        : base(EnclaveProcess.Verb, "Internal: the enclave process that run-enclave starts.")
    {
        Hidden = true;
        SetAction(_ => EnclaveProcess.Serve(Console.In, Console.Out, Console.Error));
    }
}

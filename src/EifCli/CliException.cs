namespace EifCli;

/// <summary>A failure the CLI reports as one line with a chosen exit code (bad value, failed verification).</summary>
internal sealed class CliException(int exitCode, string message) : Exception(message)
{
    internal int ExitCode { get; } = exitCode;
}

using System.CommandLine;
using EifFormat;

namespace EifCli;

/// <summary>The <c>eif</c> program: builds the command tree, runs one command, maps failures to exit codes.</summary>
internal static class Cli
{
    internal static RootCommand BuildRootCommand(TextWriter stdout, TextWriter stderr)
    {
        var root = new RootCommand(
            "eif: build, inspect, verify and measure AWS Nitro Enclaves images (EIF). " +
            "Verbs and JSON outputs follow nitro-cli where it has the verb.");
        root.Subcommands.Add(new BuildEnclaveCommand(stdout, stderr));
        root.Subcommands.Add(new BuildEifCommand(stdout, stderr));
        root.Subcommands.Add(new DescribeEifCommand(stdout, stderr));
        root.Subcommands.Add(new PcrCommand(stdout));
        root.Subcommands.Add(new VerifyEifCommand(stdout, stderr));
        root.Subcommands.Add(new SignEifCommand(stdout, stderr));
        root.Subcommands.Add(new RuntimeCommand(stdout, stderr));
        root.Subcommands.Add(new RunEnclaveCommand(stdout, stderr));
        root.Subcommands.Add(new DescribeEnclavesCommand(stdout, stderr));
        root.Subcommands.Add(new TerminateEnclaveCommand(stdout, stderr));
        root.Subcommands.Add(new ConsoleCommand(stdout, stderr));
        root.Subcommands.Add(new LocalCommand(stdout, stderr));
        root.Subcommands.Add(new ExtractCommand(stdout));
        root.Subcommands.Add(new DiffCommand(stdout, stderr));
        root.Subcommands.Add(new LsCommand(stdout));
        root.Subcommands.Add(new EnclaveProcessCommand());
        return root;
    }

    /// <summary>Parses and runs; every failure becomes one line on stderr and an <see cref="ExitCode"/>.</summary>
    internal static int Run(string[] args, TextWriter stdout, TextWriter stderr)
    {
        var root = BuildRootCommand(stdout, stderr);
        ParseResult parsed = root.Parse(args);
        if (parsed.Errors.Count > 0 && !IsHelpRequest(parsed))
        {
            foreach (var error in parsed.Errors)
                stderr.WriteLine($"eif: {error.Message}");
            string verb = parsed.CommandResult.Command == root ? string.Empty : parsed.CommandResult.Command.Name + " ";
            stderr.WriteLine($"Run 'eif {verb}--help' for usage.");
            return ExitCode.Usage;
        }

        try
        {
            return parsed.Invoke(new InvocationConfiguration
            {
                Output = stdout,
                Error = stderr,
                EnableDefaultExceptionHandler = false,
            });
        }
        catch (Exception ex)
        {
            (int code, string message) = Describe(ex);
            stderr.WriteLine(ex is Launcher.EnclaveException ? message : $"eif: {message}");
            return code;
        }
    }

    /// <summary>The one catch ladder: exception → (exit code, message). Never prints a stack trace.</summary>
    internal static (int Code, string Message) Describe(Exception ex) => ex switch
    {
        CliException e => (e.ExitCode, e.Message),
        // The enclave verbs report as nitro-cli does: "[ E26 ] Insufficient memory requested. ...", exit code 26.
        Launcher.EnclaveException e => (e.Error == Launcher.LaunchError.UnspecifiedError ? ExitCode.InternalError : (int)e.Error, e.ToCliLine()),
        EifFormatException e when e.Error == EifFormatError.ChecksumMismatch => (ExitCode.VerificationFailed, e.Message),
        EifFormatException e => (ExitCode.InvalidInput, e.Message),
        EifBuilder.EnclaveBuildException e when e.Error is EifBuilder.BuildError.DaemonUnreachable or EifBuilder.BuildError.ImageNotFound
            or EifBuilder.BuildError.AccessDenied or EifBuilder.BuildError.RemoteError or EifBuilder.BuildError.BuildFailed => (ExitCode.ImageUnavailable, e.Message),
        EifBuilder.EnclaveBuildException e => (ExitCode.InvalidInput, e.Message),
        FileNotFoundException e => (ExitCode.IoError, e.FileName is { } f ? $"{f}: no such file" : e.Message),
        DirectoryNotFoundException e => (ExitCode.IoError, e.Message),
        UnauthorizedAccessException e => (ExitCode.IoError, e.Message),
        IOException e => (ExitCode.IoError, e.Message),
        OperationCanceledException => (ExitCode.Interrupted, "interrupted"),
        _ => (ExitCode.InternalError, $"internal error: {ex.GetType().Name}: {ex.Message} (please report this)"),
    };

    private static bool IsHelpRequest(ParseResult parsed) =>
        parsed.Tokens.Any(t => t.Value is "--help" or "-h" or "-?");
}

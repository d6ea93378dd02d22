using System.CommandLine;
using EifBuilder.Runtime;
using EifFormat.Json;

namespace EifCli;

/// <summary>
/// <c>eif runtime install|show|path</c>: the default enclave runtime (a Debian kernel, our init, its modules), for
/// building and local boot without AWS's blobs. Production enclaves on EC2 use AWS's blobs, which build-enclave
/// prefers when nitro-cli is installed.
/// </summary>
internal sealed class RuntimeCommand : Command
{
    internal RuntimeCommand(TextWriter stdout, TextWriter stderr)
        : base("runtime", "Install and inspect the default enclave runtime (Debian kernel, our init, modules) used when no other blobs are found.")
    {
        Subcommands.Add(new InstallCommand(stdout, stderr));
        Subcommands.Add(new ShowCommand(stdout));
        Subcommands.Add(new PathCommand(stdout));
    }

    private static Option<string> DirectoryOption() => new("--dir")
    {
        Description = "Runtime folder (default: $XDG_CACHE_HOME/eif/runtime/ARCH, else ~/.cache/eif/runtime/ARCH).",
        HelpName = "DIR",
    };

    private static string DirectoryOf(ParseResult result, Option<string> option) =>
        result.GetValue(option) ?? EnclaveRuntime.DefaultDirectory(BuildEnclaveCommand.HostArchitecture);

    private sealed class InstallCommand : Command
    {
        private readonly Option<string> _dir = DirectoryOption();
        private readonly Option<bool> _update = new("--update") { Description = "Fetch the kernel again even when the runtime is complete (moves to the newest one)." };
        private readonly Option<string> _mirror = new("--mirror") { Description = "Debian mirror (default: this machine's apt mirror, else deb.debian.org).", HelpName = "URL" };
        private readonly Option<string> _kernel = new("--kernel-package") { Description = "Kernel package to use, e.g. linux-image-6.12.95+deb12-amd64 (pins PCR0/PCR1).", HelpName = "NAME" };

        internal InstallCommand(TextWriter stdout, TextWriter stderr)
            : base("install", "Assemble the runtime (idempotent): kernel and modules from Debian bookworm-backports, the init built from its sources.")
        {
            Options.Add(_dir);
            Options.Add(_update);
            Options.Add(_mirror);
            Options.Add(_kernel);
            SetAction(result =>
            {
                var done = EnclaveRuntime.Install(new RuntimeInstallOptions
                {
                    Directory = DirectoryOf(result, _dir),
                    Architecture = BuildEnclaveCommand.HostArchitecture,
                    Update = result.GetValue(_update),
                    Mirror = result.GetValue(_mirror),
                    KernelPackage = result.GetValue(_kernel),
                    InitSourceHash = DefaultRuntime.InitSourceHash(),
                    BuildInit = DefaultRuntime.BuildInit,
                    Log = line => stderr.WriteLine($"runtime: {line}"),
                });
                foreach (string line in done)
                    stdout.WriteLine(line);
                return ExitCode.Success;
            });
        }
    }

    private sealed class ShowCommand : Command
    {
        private readonly Option<string> _dir = DirectoryOption();

        internal ShowCommand(TextWriter stdout)
            : base("show", "Print where each blob of the runtime comes from and its SHA-256, as JSON.")
        {
            Options.Add(_dir);
            SetAction(result =>
            {
                string directory = DirectoryOf(result, _dir);
                JObject manifest = EnclaveRuntime.ReadManifest(directory)
                    ?? throw new CliException(ExitCode.InvalidInput, $"no runtime in {directory}: run 'eif runtime install'");
                string? problem = EnclaveRuntime.Check(directory);
                Output.WriteJson(stdout, JObject.Of(
                    ("Directory", new JString(directory)),
                    ("Intact", JBool.From(problem is null)),
                    ("Problem", problem is null ? JNull.Instance : new JString(problem)),
                    ("Architecture", manifest["Architecture"] ?? JNull.Instance),
                    ("Kernel", manifest["Kernel"] ?? JNull.Instance),
                    ("Init", manifest["Init"] ?? JNull.Instance),
                    ("Cmdline", manifest["Cmdline"] ?? JNull.Instance),
                    ("Files", manifest["Files"] ?? JNull.Instance)));
                return problem is null ? ExitCode.Success : ExitCode.VerificationFailed;
            });
        }
    }

    private sealed class PathCommand : Command
    {
        private readonly Option<string> _dir = DirectoryOption();

        internal PathCommand(TextWriter stdout)
            : base("path", "Print the runtime folder; exit 3 when no complete runtime is installed there.")
        {
            Options.Add(_dir);
            SetAction(result =>
            {
                string directory = DirectoryOf(result, _dir);
                if (EnclaveRuntime.Check(directory) is { } problem)
                    throw new CliException(ExitCode.InvalidInput, $"{problem}: run 'eif runtime install'");
                stdout.WriteLine(directory);
                return ExitCode.Success;
            });
        }
    }
}

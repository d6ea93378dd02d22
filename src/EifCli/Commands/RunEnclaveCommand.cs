using System.CommandLine;
using Launcher;
using Launcher.Supervision;

namespace EifCli;

/// <summary>
/// <c>eif run-enclave</c>: nitro-cli's verb. Checks everything before touching the driver (EIF format, CRC,
/// architecture, signature and certificate; CPU pool and whole cores; memory; free hugepages), launches through
/// <c>/dev/nitro_enclaves</c> from a detached enclave process that then holds and supervises the enclave, and prints
/// nitro-cli's JSON. <c>--foreground</c> keeps the enclave in this process (for service managers and containers).
/// Failures are nitro-cli's <c>[ Exx ]</c> lines with exit code xx.
/// </summary>
internal sealed class RunEnclaveCommand : Command
{
    private readonly TextWriter _stdout;
    private readonly TextWriter _stderr;

    internal RunEnclaveCommand(TextWriter stdout, TextWriter stderr)
        : base("run-enclave", "Launch an enclave from an EIF (nitro-cli compatible; needs /dev/nitro_enclaves).")
    {
        _stdout = stdout;
        _stderr = stderr;
        Options.Add(EifPathOption);
        Options.Add(MemoryOption);
        Options.Add(CpuCountOption);
        Options.Add(CpuIdsOption);
        Options.Add(EnclaveCidOption);
        Options.Add(DebugModeOption);
        Options.Add(AttachConsoleOption);
        Options.Add(EnclaveNameOption);
        Options.Add(ConfigOption);
        Options.Add(HugePageSizeOption);
        Options.Add(HeartbeatTimeoutOption);
        Options.Add(ForegroundOption);
        Validators.Add(result =>
        {
            bool config = result.GetResult(ConfigOption) is not null;
            Option[] launchOptions = [EifPathOption, MemoryOption, CpuCountOption, CpuIdsOption, EnclaveCidOption, DebugModeOption, EnclaveNameOption];
            if (config && launchOptions.Any(o => result.GetResult(o) is not null))
                result.AddError("--config holds the whole launch; give it alone (with --attach-console, --foreground, --hugepage-size or --heartbeat-timeout at most).");
            if (!config && result.GetResult(EifPathOption) is null)
                result.AddError("Option '--eif-path' is required (or --config).");
            if (!config && result.GetResult(MemoryOption) is null)
                result.AddError("Option '--memory' is required (or --config).");
        });
        SetAction(result => Execute(result));
    }

    internal Option<string> EifPathOption { get; } = new("--eif-path") { Description = "The EIF to launch.", HelpName = "FILE" };

    internal Option<ulong> MemoryOption { get; } = new("--memory") { Description = "Enclave memory in MiB (at least 4 × the EIF's size and 64).", HelpName = "MiB" };

    internal Option<int?> CpuCountOption { get; } = new("--cpu-count") { Description = "Number of vCPUs (whole cores, taken from the CPU pool).", HelpName = "N" };

    internal Option<int[]> CpuIdsOption { get; } = new("--cpu-ids")
    {
        Description = "The CPUs of the pool to use (whole cores), e.g. --cpu-ids 1 3.",
        HelpName = "ID",
        AllowMultipleArgumentsPerToken = true,
    };

    internal Option<ulong?> EnclaveCidOption { get; } = new("--enclave-cid") { Description = "The enclave's vsock CID (default: chosen by the hypervisor; 1, 2, 3 and 4294967295 are reserved).", HelpName = "CID" };

    internal Option<bool> DebugModeOption { get; } = new("--debug-mode") { Description = "Debug mode: console output is available (attestation PCRs are then zero)." };

    internal Option<bool> AttachConsoleOption { get; } = new("--attach-console") { Description = "Print the console after launching, from the first boot message (implies --debug-mode)." };

    internal Option<string> EnclaveNameOption { get; } = new("--enclave-name") { Description = "A name (default: the EIF's file name; _1, _2, … are added when taken).", HelpName = "NAME" };

    internal Option<string> ConfigOption { get; } = new("--config") { Description = "A JSON file with nitro-cli's keys: eif_path, memory_mib, cpu_count or cpu_ids, enclave_cid, debug_mode, attach_console, enclave_name.", HelpName = "FILE" };

    internal Option<string> HugePageSizeOption { get; } = new("--hugepage-size")
    {
        Description = "Use only hugepages of this size (e.g. 2M, 1G); default: every size the kernel offers, largest first.",
        HelpName = "SIZE",
    };

    internal Option<int?> HeartbeatTimeoutOption { get; } = new("--heartbeat-timeout") { Description = "Seconds to wait for the enclave's heartbeat (default: nitro-cli's rule, at least 180).", HelpName = "SECONDS" };

    internal Option<bool> ForegroundOption { get; } = new("--foreground") { Description = "Keep the enclave in this process until it ends or the process gets SIGTERM/SIGINT (no background enclave process)." };

    private int Execute(ParseResult result)
    {
        LaunchRequest request = Request(result, out bool attach);
        string folder = EnclaveDirectory.Default;
        request = request with { EnclaveName = UniqueName(request.EffectiveName, folder) };
        if (result.GetValue(ForegroundOption))
            return RunForeground(request, folder, attach);

        EnclaveDescription description = EnclaveProcess.Start(request, folder, _stderr);
        Output.WriteJson(_stdout, EnclaveJson.Run(description));
        if (attach)
            ConsoleCommand.Stream(EnclaveDirectory.SocketPathForId(folder, description.EnclaveId)!, _stdout, _stderr, disconnectAfter: null);
        return ExitCode.Success;
    }

    private int RunForeground(LaunchRequest request, string folder, bool attach)
    {
        using EnclaveSupervisor supervisor = EnclaveHost.LaunchSupervised(NitroPlatform.FromEnvironment(), request, folder, line => _stderr.WriteLine(line));
        EnclaveDescription description = supervisor.Enclave.Describe();
        Output.WriteJson(_stdout, EnclaveJson.Run(description));
        using IDisposable signals = EnclaveProcess.StopOnSignals(supervisor);
        Thread? console = null;
        if (attach)
        {
            string socket = EnclaveDirectory.SocketPathForId(folder, description.EnclaveId)!;
            console = new Thread(() => ConsoleCommand.Stream(socket, _stdout, _stderr, disconnectAfter: null)) { IsBackground = true, Name = "console" };
            console.Start();
        }

        string ending = supervisor.Run();
        console?.Join(TimeSpan.FromSeconds(5));
        _stderr.WriteLine($"Enclave {description.EnclaveId} {(ending == "exited" ? "stopped by itself" : "was terminated")}.");
        return ExitCode.Success;
    }

    private LaunchRequest Request(ParseResult result, out bool attach)
    {
        attach = result.GetValue(AttachConsoleOption);
        LaunchRequest request;
        if (result.GetValue(ConfigOption) is { } configPath)
        {
            string text;
            try
            {
                text = File.ReadAllText(configPath);
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                throw new EnclaveException(LaunchError.FileOperationFailure, $"'{configPath}' Open: {ex.Message}", innerException: ex);
            }

            var json = LaunchRequestJson.Parse(text, configPath);
            attach |= json["attach_console"]?.GetValue<bool>() == true;
            request = LaunchRequestJson.FromJson(json, configPath);
        }
        else
        {
            int[]? ids = result.GetValue(CpuIdsOption);
            request = new LaunchRequest
            {
                EifPath = result.GetValue(EifPathOption)!,
                MemoryMiB = result.GetValue(MemoryOption),
                CpuCount = result.GetValue(CpuCountOption),
                CpuIds = ids is { Length: > 0 } ? ids : null,
                EnclaveCid = result.GetValue(EnclaveCidOption) ?? 0,
                DebugMode = result.GetValue(DebugModeOption),
                EnclaveName = result.GetValue(EnclaveNameOption),
            };
        }

        if (result.GetValue(HugePageSizeOption) is { } sizeText)
        {
            ulong size = Launcher.Host.HugePageSizes.Parse(sizeText)
                ?? throw new EnclaveException(LaunchError.NoSuchHugepageFlag, $"--hugepage-size '{sizeText}' is not a size like 2M or 1G");
            request = request with { HugePageSize = size };
        }

        if (result.GetValue(HeartbeatTimeoutOption) is { } seconds)
        {
            if (seconds <= 0)
                throw new EnclaveException(LaunchError.InvalidArgument, $"--heartbeat-timeout must be positive (got {seconds})");
            request = request with { HeartbeatTimeout = TimeSpan.FromSeconds(seconds) };
        }

        return attach ? request with { DebugMode = true } : request;
    }

    // nitro-cli src/lib.rs new_enclave_name: the name, or name_1, name_2, … when an enclave already has it.
    private static string UniqueName(string name, string folder)
    {
        var taken = new HashSet<string>(StringComparer.Ordinal);
        foreach (string socket in EnclaveDirectory.Sockets(folder))
        {
            try
            {
                taken.Add(EnclaveClient.Describe(socket, TimeSpan.FromSeconds(2)).EnclaveName);
            }
            catch (EnclaveException)
            {
                // An unreachable enclave process holds no name worth avoiding.
            }
        }

        if (!taken.Contains(name))
            return name;
        for (int i = 1; ; i++)
        {
            string candidate = $"{name}_{i}";
            if (!taken.Contains(candidate))
                return candidate;
        }
    }
}

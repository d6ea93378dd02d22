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
        Options.Add(LocalOption);
        Options.Add(AccelOption);
        Options.Add(TimeoutOption);
        Options.Add(ForwardOption);
        Options.Add(PublishOption);
        Validators.Add(result =>
        {
            bool local = result.GetValue(LocalOption);
            if (local)
            {
                foreach (Option option in new Option[] { CpuIdsOption, HugePageSizeOption, ConfigOption })
                {
                    if (result.GetResult(option) is not null)
                        result.AddError($"{option.Name} does not apply to --local (QEMU gives the enclave vCPUs and ordinary memory).");
                }

                if (result.GetResult(EifPathOption) is null)
                    result.AddError("Option '--eif-path' is required.");
                return;
            }

            foreach (Option option in new Option[] { AccelOption, TimeoutOption, ForwardOption, PublishOption })
            {
                if (result.GetResult(option) is not null)
                    result.AddError($"{option.Name} applies only to --local.");
            }

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

    internal Option<bool> LocalOption { get; } = new("--local")
    {
        Description = "Boot the EIF on this machine in QEMU's nitro-enclave machine (no Nitro hardware needed); --memory and --cpu-count become optional.",
    };

    internal Option<string> AccelOption { get; } = new("--accel")
    {
        Description = "With --local: kvm, tcg, or auto (KVM only when a short probe shows it works).",
        HelpName = "auto|kvm|tcg",
        DefaultValueFactory = _ => "auto",
    };

    internal Option<string[]> ForwardOption { get; } = new("--forward")
    {
        Description = "With --local: the enclave's connections to vsock CID 3 port P go on to a host address: P=tcp:HOST:PORT or P=unix:PATH (repeatable).",
        HelpName = "P=tcp:HOST:PORT|unix:PATH",
    };

    internal Option<string[]> PublishOption { get; } = new("--publish")
    {
        Description = "With --local: listen on a host TCP port and connect each connection into the enclave's vsock port, as docker run -p; HOST defaults to 127.0.0.1 (repeatable).",
        HelpName = "[HOST:]HOSTPORT:VSOCKPORT",
    };

    internal Option<int?> TimeoutOption { get; } = new("--timeout") { Description = "With --local: end the enclave after this many seconds.", HelpName = "SECONDS" };

    private int Execute(ParseResult result)
    {
        if (result.GetValue(LocalOption))
            return ExecuteLocal(result);
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

    private int ExecuteLocal(ParseResult result)
    {
        bool attach = result.GetValue(AttachConsoleOption);
        string accel = result.GetValue(AccelOption) ?? "auto";
        if (!Enum.TryParse(accel, ignoreCase: true, out Launcher.Local.LocalAccelerator accelerator) || int.TryParse(accel, out _))
            throw new EnclaveException(LaunchError.InvalidArgument, $"--accel '{accel}': use auto, kvm or tcg");
        ulong memory = result.GetValue(MemoryOption);
        int? timeout = result.GetValue(TimeoutOption);
        if (timeout is <= 0)
            throw new EnclaveException(LaunchError.InvalidArgument, $"--timeout must be positive (got {timeout})");
        int? heartbeat = result.GetValue(HeartbeatTimeoutOption);
        var request = new Launcher.Local.LocalLaunchRequest
        {
            EifPath = result.GetValue(EifPathOption)!,
            MemoryMiB = result.GetResult(MemoryOption) is null ? null : memory,
            CpuCount = result.GetValue(CpuCountOption),
            EnclaveCid = result.GetValue(EnclaveCidOption) ?? 0,
            DebugMode = result.GetValue(DebugModeOption) || attach,
            EnclaveName = result.GetValue(EnclaveNameOption),
            Accelerator = accelerator,
            Timeout = timeout is { } t ? TimeSpan.FromSeconds(t) : null,
            HeartbeatTimeout = heartbeat is { } h ? TimeSpan.FromSeconds(h) : null,
            Forwards = (result.GetValue(ForwardOption) ?? []).Select(Launcher.Local.ForwardRule.Parse).ToList(),
            Publishes = (result.GetValue(PublishOption) ?? []).Select(Launcher.Local.PublishRule.Parse).ToList(),
        };
        // Here, not only in the enclave process: a missing QEMU is said at once, with what was tried.
        Launcher.Local.LocalPlatform.RequireQemu();
        string folder = EnclaveDirectory.Default;
        request = request with { EnclaveName = UniqueName(request.EffectiveName, folder) };
        // With --attach-console the enclave lives in this process, as `docker run` without -d: the console is read
        // from QEMU's first byte (a short command can finish before a console client could connect to a background
        // enclave), the command's exit status becomes this process's, and Ctrl-C ends the enclave. It is still
        // listed and terminated by the other verbs through its socket.
        if (result.GetValue(ForegroundOption) || attach)
        {
            using EnclaveSupervisor supervisor = EnclaveHost.LaunchLocalSupervised(request, folder, line => _stderr.WriteLine(line));
            return Supervise(supervisor, folder, attach);
        }

        EnclaveDescription description = EnclaveProcess.Start(LaunchRequestJson.ToJson(request), folder, _stderr);
        Output.WriteJson(_stdout, EnclaveJson.Run(description));
        return ExitCode.Success;
    }

    private int Supervise(EnclaveSupervisor supervisor, string folder, bool attach)
    {
        EnclaveDescription description = supervisor.Enclave.Describe();
        Output.WriteJson(_stdout, EnclaveJson.Run(description));
        bool interrupted = false;
        using IDisposable signals = EnclaveProcess.StopOnSignals(supervisor, () => interrupted = true);
        Thread? console = null;
        if (attach && supervisor.Enclave is Launcher.Local.LocalEnclave)
        {
            // In-process: the console from its first byte, without a socket in between.
            Stream stream = supervisor.Enclave.OpenConsole(TimeSpan.Zero);
            console = new Thread(() =>
            {
                using (stream)
                    ConsoleCommand.Copy(stream, _stdout, disconnectAfter: null);
            }) { IsBackground = true, Name = "console" };
            console.Start();
        }
        else if (attach)
        {
            string socket = EnclaveDirectory.SocketPathForId(folder, description.EnclaveId)!;
            console = new Thread(() => ConsoleCommand.Stream(socket, _stdout, _stderr, disconnectAfter: null)) { IsBackground = true, Name = "console" };
            console.Start();
        }

        string ending = supervisor.Run();
        console?.Join(TimeSpan.FromSeconds(5));
        if (supervisor.Enclave is Launcher.Local.LocalEnclave local)
        {
            _stderr.WriteLine($"Enclave {description.EnclaveId} {local.Ending ?? ending}" +
                (local.CommandExitStatus is { } s ? $"; its command exited with status {s}" : string.Empty) + $" (console log {local.ConsoleLogPath}).");
            // The exit code: the command's status when the runtime's init reported one; else why it did not finish.
            if (local.Panic is { } panic)
                throw new EnclaveException(LaunchError.EnclaveBootFailure, $"the enclave's kernel panicked ({panic}); the console log is {local.ConsoleLogPath}");
            if (local.CommandExitStatus is { } status)
                return status;
            if (local.Ending == "timed out")
                throw new CliException(ExitCode.TimedOut, $"the enclave was still running after --timeout {local.Timeout?.TotalSeconds:0} s and was ended; the console log is {local.ConsoleLogPath}");
            return interrupted ? ExitCode.Interrupted : ExitCode.Success;
        }

        _stderr.WriteLine($"Enclave {description.EnclaveId} {(ending == "exited" ? "stopped by itself" : "was terminated")}.");
        return ExitCode.Success;
    }

    private int RunForeground(LaunchRequest request, string folder, bool attach)
    {
        using EnclaveSupervisor supervisor = EnclaveHost.LaunchSupervised(NitroPlatform.FromEnvironment(), request, folder, line => _stderr.WriteLine(line));
        return Supervise(supervisor, folder, attach);
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

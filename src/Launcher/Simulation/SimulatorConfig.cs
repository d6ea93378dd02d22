using System.Text.Json.Nodes;

namespace Launcher.Simulation;

/// <summary>What the simulated enclave does once started.</summary>
public enum SimulatedBoot
{
    /// <summary>Boots: sends the heartbeat and waits for its echo, then runs until terminated (or <see cref="SimulatorConfig.RunMilliseconds"/>).</summary>
    Heartbeat,

    /// <summary>Never sends a heartbeat (a kernel that hangs).</summary>
    Silent,

    /// <summary>Sends a wrong heartbeat byte.</summary>
    WrongByte,

    /// <summary>Stops right away (a kernel panic: the hypervisor reports the state change).</summary>
    Crash,
}

/// <summary>
/// The simulated host: a CPU topology and pool, an instance ID, the hypervisor's region limit, and how simulated
/// enclaves behave. Stored as <c>simulator.json</c> in the simulator's folder.
/// </summary>
public sealed record SimulatorConfig
{
    /// <summary>The parent's CPUs (0 .. Cpus-1).</summary>
    public int Cpus { get; init; } = 8;

    /// <summary>Threads per core: CPU c is on core c / ThreadsPerCore.</summary>
    public int ThreadsPerCore { get; init; } = 2;

    /// <summary>The enclave CPU pool (ne_cpus), a cpu list.</summary>
    public string CpuPool { get; init; } = "2-7";

    /// <summary>The instance ID (board asset tag).</summary>
    public string InstanceId { get; init; } = "i-0123456789abcdef0";

    /// <summary>The hypervisor's limit on memory ranges per enclave (SLOT_ALLOC's mem_regions; not published).</summary>
    public int MaxMemoryRegions { get; init; } = 1024;

    /// <summary>What a started enclave does.</summary>
    public SimulatedBoot Boot { get; init; } = SimulatedBoot.Heartbeat;

    /// <summary>How long "booting" takes before the heartbeat.</summary>
    public int BootMilliseconds { get; init; } = 50;

    /// <summary>When set, the enclave stops by itself this long after its heartbeat (the driver then reports POLLHUP).</summary>
    public int? RunMilliseconds { get; init; }

    internal JsonObject ToJson() => new()
    {
        ["Cpus"] = Cpus,
        ["ThreadsPerCore"] = ThreadsPerCore,
        ["CpuPool"] = CpuPool,
        ["InstanceId"] = InstanceId,
        ["MaxMemoryRegions"] = MaxMemoryRegions,
        ["Boot"] = Boot.ToString(),
        ["BootMilliseconds"] = BootMilliseconds,
        ["RunMilliseconds"] = RunMilliseconds,
    };

    internal static SimulatorConfig FromJson(JsonObject json, string path)
    {
        try
        {
            var defaults = new SimulatorConfig();
            return new SimulatorConfig
            {
                Cpus = json["Cpus"]?.GetValue<int>() ?? defaults.Cpus,
                ThreadsPerCore = json["ThreadsPerCore"]?.GetValue<int>() ?? defaults.ThreadsPerCore,
                CpuPool = json["CpuPool"]?.GetValue<string>() ?? defaults.CpuPool,
                InstanceId = json["InstanceId"]?.GetValue<string>() ?? defaults.InstanceId,
                MaxMemoryRegions = json["MaxMemoryRegions"]?.GetValue<int>() ?? defaults.MaxMemoryRegions,
                Boot = json["Boot"]?.GetValue<string>() is { } boot ? Enum.Parse<SimulatedBoot>(boot) : defaults.Boot,
                BootMilliseconds = json["BootMilliseconds"]?.GetValue<int>() ?? defaults.BootMilliseconds,
                RunMilliseconds = json["RunMilliseconds"]?.GetValue<int?>(),
            };
        }
        catch (Exception ex) when (ex is FormatException or InvalidOperationException or ArgumentException)
        {
            throw new EnclaveException(LaunchError.FileOperationFailure, $"{path}: not a simulator configuration ({ex.Message})", innerException: ex);
        }
    }
}

using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using Launcher.Host;
using Launcher.Memory;

namespace Launcher.Simulation;

/// <summary>
/// A simulated Nitro host in one folder, for running the launcher where the Nitro hypervisor cannot exist (CI,
/// laptops): <c>simulator.json</c> (<see cref="SimulatorConfig"/>), a fake <c>root/sys</c> with the CPU pool, the CPU
/// topology and the instance ID, <c>vsock/</c> (<see cref="SimulatedVsock"/>), and <c>state.json</c>, which the
/// simulator instances of several processes share (under a lock) to hand out cores, CIDs and slot uids once.
/// Enclave memory is real: hugetlb mappings of this host, checked as the driver checks them.
/// </summary>
public sealed class SimulatedNitro
{
    private SimulatedNitro(string folder, SimulatorConfig config)
    {
        Folder = folder;
        Config = config;
        Device = new SimulatedNitroDevice(this);
        Platform = new NitroPlatform
        {
            Kind = "simulated",
            OpenDevice = () => Device.Share(),
            Host = new HostInfo(RootFolder, memoryRoot: "/"),
            Mapper = HugeTlbMapper.Instance,
            Vsock = new SimulatedVsock(VsockFolder, NitroEnclaves.ParentCid),
        };
    }

    /// <summary>The simulator's folder.</summary>
    public string Folder { get; }

    /// <summary>Its configuration.</summary>
    public SimulatorConfig Config { get; }

    /// <summary>The simulated device of this process (tests inject failures and read donated memory through it).</summary>
    public SimulatedNitroDevice Device { get; }

    /// <summary>A platform on the simulator.</summary>
    public NitroPlatform Platform { get; }

    /// <summary>The fake root the host files are read under.</summary>
    public string RootFolder => Path.Join(Folder, "root");

    /// <summary>The vsock sockets.</summary>
    public string VsockFolder => Path.Join(Folder, "vsock");

    /// <summary>Writes a simulator into <paramref name="folder"/> (created if needed) and opens it.</summary>
    /// <exception cref="ArgumentException">The configuration is not one the driver would accept (pool with CPU 0's core, partial cores, CPUs out of range).</exception>
    public static SimulatedNitro Create(string folder, SimulatorConfig config)
    {
        if (config.Cpus < 2 || config.ThreadsPerCore < 1 || config.Cpus % config.ThreadsPerCore != 0)
            throw new ArgumentException($"Cpus {config.Cpus} must be at least 2 and a multiple of ThreadsPerCore {config.ThreadsPerCore}.", nameof(config));
        SortedSet<int> pool = CpuList.Parse(config.CpuPool, "CpuPool");
        foreach (int cpu in pool)
        {
            // The driver's checks when the pool is written (ne_setup_cpu_pool): online CPUs, not CPU 0's core, full cores.
            if (cpu >= config.Cpus)
                throw new ArgumentException($"CpuPool {config.CpuPool}: CPU {cpu} does not exist ({config.Cpus} CPUs).", nameof(config));
            if (cpu / config.ThreadsPerCore == 0)
                throw new ArgumentException($"CpuPool {config.CpuPool}: CPU {cpu} is on CPU 0's core, which the driver never gives enclaves.", nameof(config));
            if (!Siblings(cpu, config.ThreadsPerCore).All(pool.Contains))
                throw new ArgumentException($"CpuPool {config.CpuPool}: CPU {cpu}'s core is not whole in the pool.", nameof(config));
        }

        Directory.CreateDirectory(folder);
        File.WriteAllText(Path.Join(folder, "simulator.json"), config.ToJson().ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n");
        string root = Path.Join(folder, "root");
        WriteFile(root, NitroEnclaves.CpuPoolParameterPath, config.CpuPool + "\n");
        WriteFile(root, "/sys/devices/system/cpu/possible", $"0-{config.Cpus - 1}\n");
        for (int cpu = 0; cpu < config.Cpus; cpu++)
        {
            WriteFile(root, $"/sys/devices/system/cpu/cpu{cpu}/topology/thread_siblings_list", CpuList.Format(Siblings(cpu, config.ThreadsPerCore)) + "\n");
            WriteFile(root, $"/sys/devices/system/cpu/cpu{cpu}/topology/core_id", (cpu / config.ThreadsPerCore).ToString(CultureInfo.InvariantCulture) + "\n");
        }

        WriteFile(root, "/sys/devices/virtual/dmi/id/board_asset_tag", config.InstanceId + "\n");
        Directory.CreateDirectory(Path.Join(folder, "vsock"));
        return Open(folder);
    }

    /// <summary>Opens the simulator in <paramref name="folder"/>.</summary>
    /// <exception cref="EnclaveException">E19 when there is no simulator there.</exception>
    public static SimulatedNitro Open(string folder)
    {
        string path = Path.Join(folder, "simulator.json");
        JsonNode? json;
        try
        {
            json = JsonNode.Parse(File.ReadAllText(path));
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            throw new EnclaveException(LaunchError.FileOperationFailure, $"'{path}' Open: {ex.Message} ({NitroPlatform.SimulatorVariable} names a folder without a simulator)", innerException: ex);
        }
        catch (JsonException ex)
        {
            throw new EnclaveException(LaunchError.FileOperationFailure, $"{path}: not JSON ({ex.Message})", innerException: ex);
        }

        if (json is not JsonObject obj)
            throw new EnclaveException(LaunchError.FileOperationFailure, $"{path}: not a JSON object");
        return new SimulatedNitro(Path.GetFullPath(folder), SimulatorConfig.FromJson(obj, path));
    }

    /// <summary>The CPUs of <paramref name="cpu"/>'s core.</summary>
    internal static IEnumerable<int> Siblings(int cpu, int threadsPerCore)
    {
        int first = cpu - (cpu % threadsPerCore);
        return Enumerable.Range(first, threadsPerCore);
    }

    /// <summary>
    /// Runs <paramref name="change"/> on the shared state (slots: owner PID, CPUs, CID) under an exclusive lock and
    /// writes it back; slots whose process is gone are dropped first.
    /// </summary>
    internal T UpdateState<T>(Func<JsonObject, T> change)
    {
        string lockPath = Path.Join(Folder, "state.lock");
        string statePath = Path.Join(Folder, "state.json");
        long deadline = Environment.TickCount64 + 10_000;
        while (true)
        {
            FileStream gate;
            try
            {
                // FileShare.None is an exclusive flock on Linux: one simulator instance at a time, across processes.
                gate = new FileStream(lockPath, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
            }
            catch (IOException) when (Environment.TickCount64 < deadline)
            {
                Thread.Sleep(5);
                continue;
            }

            using (gate)
            {
                JsonObject state = File.Exists(statePath) && JsonNode.Parse(File.ReadAllText(statePath)) is JsonObject existing
                    ? existing
                    : new JsonObject { ["NextSlot"] = 1, ["Slots"] = new JsonObject() };
                var slots = (JsonObject)state["Slots"]!;
                foreach (var (key, value) in slots.ToList())
                {
                    int pid = (int)Number(value!["Pid"]!);
                    if (!Directory.Exists($"/proc/{pid}"))
                        slots.Remove(key);
                }

                T result = change(state);
                string temporary = statePath + ".tmp";
                File.WriteAllText(temporary, state.ToJsonString());
                File.Move(temporary, statePath, overwrite: true);
                return result;
            }
        }
    }

    /// <summary>A number of the state, whether parsed from the file or set in this update (JsonNode does not convert between the two).</summary>
    internal static ulong Number(JsonNode node) => ulong.Parse(node.ToJsonString(), CultureInfo.InvariantCulture);

    private static void WriteFile(string root, string absolutePath, string text)
    {
        string path = Path.Join(root, absolutePath);
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        File.WriteAllText(path, text);
    }
}

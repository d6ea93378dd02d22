using System.Globalization;

namespace Launcher.Host;

/// <summary>One hugepage size the kernel offers, with its pool counters (/sys/kernel/mm/hugepages/hugepages-NkB).</summary>
/// <param name="Bytes">The page size.</param>
/// <param name="Total">nr_hugepages: pages reserved.</param>
/// <param name="Free">free_hugepages: reserved pages not in use.</param>
public readonly record struct HugePageSize(ulong Bytes, ulong Total, ulong Free)
{
    /// <summary>"2M", "1G": the form <c>--hugepage-size</c> takes.</summary>
    public string Name => HugePageSizes.Format(Bytes);

    /// <summary>The sysfs folder name, e.g. <c>hugepages-2048kB</c>.</summary>
    public string Folder => $"hugepages-{Bytes >> 10}kB";
}

/// <summary>Hugepage size names: <c>2M</c>, <c>1G</c>, also <c>2MB</c>, <c>2MiB</c>, <c>2048K</c>, <c>2048kB</c>.</summary>
public static class HugePageSizes
{
    /// <summary>Parses a size name; null when it is not one.</summary>
    public static ulong? Parse(string text)
    {
        string t = text.Trim();
        foreach (string suffix in new[] { "iB", "B", "b" })
        {
            if (t.EndsWith(suffix, StringComparison.Ordinal) && t.Length > suffix.Length + 1 && char.IsLetter(t[^(suffix.Length + 1)]))
            {
                t = t[..^suffix.Length];
                break;
            }
        }

        if (t.Length < 2)
            return null;
        int shift = char.ToUpperInvariant(t[^1]) switch { 'K' => 10, 'M' => 20, 'G' => 30, _ => -1 };
        if (shift < 0 || !ulong.TryParse(t[..^1], NumberStyles.None, CultureInfo.InvariantCulture, out ulong n) || n == 0 || n > (1UL << (63 - shift)))
            return null;
        return n << shift;
    }

    /// <summary>"2M", "1G", "16K".</summary>
    public static string Format(ulong bytes) =>
        bytes % (1UL << 30) == 0 ? $"{bytes >> 30}G" : bytes % (1UL << 20) == 0 ? $"{bytes >> 20}M" : $"{bytes >> 10}K";
}

/// <summary>
/// What the launcher reads from the host, all from files under a root folder (<c>/</c> for the real host; a folder
/// laid out the same way for the simulator and the tests): the CPU pool, CPU topology, hugepage pools and the
/// instance ID.
/// </summary>
public sealed class HostInfo
{
    /// <summary>Reads the host under <paramref name="root"/>; hugepage pools under <paramref name="memoryRoot"/>.</summary>
    /// <param name="root">Where the CPU pool, topology and instance ID are read.</param>
    /// <param name="memoryRoot">Where the hugepage pools are read; the simulator maps real hugepages, so it reads the real ones.</param>
    public HostInfo(string root = "/", string? memoryRoot = null)
    {
        Root = root;
        MemoryRoot = memoryRoot ?? root;
    }

    /// <summary>The folder the system paths are read under.</summary>
    public string Root { get; }

    /// <summary>The folder the hugepage pools are read under.</summary>
    public string MemoryRoot { get; }

    /// <summary>
    /// What to do when the Nitro Enclaves driver is missing (nitro-cli #644, #518, #369: a bare E19 left users guessing).
    /// </summary>
    public const string DriverMissingAdvice =
        "On an EC2 instance launched with enclaves enabled, install and configure the driver: Amazon Linux: " +
        "'dnf install aws-nitro-enclaves-cli', then set memory_mib and cpu_count in /etc/nitro_enclaves/allocator.yaml and " +
        "'systemctl enable --now nitro-enclaves-allocator'; other distributions: load the kernel's nitro_enclaves module " +
        "(CONFIG_NITRO_ENCLAVES) and write the CPU pool to " + NitroEnclaves.CpuPoolParameterPath + "; in a container, pass " +
        "the device in (--device " + NitroEnclaves.DevicePath + ")";

    /// <summary>The CPU pool parameter (<see cref="NitroEnclaves.CpuPoolParameterPath"/> under <see cref="Root"/>).</summary>
    public string CpuPoolPath => Under(NitroEnclaves.CpuPoolParameterPath);

    /// <summary>True when the nitro_enclaves module is loaded (its parameter folder exists).</summary>
    public bool DriverLoaded => Directory.Exists(Path.GetDirectoryName(CpuPoolPath));

    /// <summary>Reads the CPU pool (the CPUs the driver may give enclaves).</summary>
    /// <exception cref="EnclaveException">E19 when the file is missing (driver not loaded) or unreadable; E24 when malformed.</exception>
    public SortedSet<int> ReadCpuPool()
    {
        string text;
        try
        {
            text = File.ReadAllText(CpuPoolPath);
        }
        catch (Exception ex) when (ex is FileNotFoundException or DirectoryNotFoundException)
        {
            throw new EnclaveException(LaunchError.FileOperationFailure,
                $"'{CpuPoolPath}' Open: no such file: the Nitro Enclaves driver (nitro_enclaves) is not loaded. {DriverMissingAdvice}");
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            throw new EnclaveException(LaunchError.FileOperationFailure, $"'{CpuPoolPath}' Read: {ex.Message}");
        }

        return CpuList.Parse(text, CpuPoolPath);
    }

    /// <summary>The CPUs sharing <paramref name="cpu"/>'s core, itself included (topology/thread_siblings_list); just the CPU when unknown.</summary>
    public SortedSet<int> ThreadSiblings(int cpu)
    {
        string path = Under($"/sys/devices/system/cpu/cpu{cpu.ToString(CultureInfo.InvariantCulture)}/topology/thread_siblings_list");
        if (!File.Exists(path))
            return new SortedSet<int> { cpu };
        var siblings = CpuList.Parse(File.ReadAllText(path), path);
        siblings.Add(cpu);
        return siblings;
    }

    /// <summary>The CPUs the kernel knows (/sys/devices/system/cpu/possible); empty when unknown.</summary>
    public SortedSet<int> PossibleCpus()
    {
        string path = Under("/sys/devices/system/cpu/possible");
        return File.Exists(path) ? CpuList.Parse(File.ReadAllText(path), path) : new SortedSet<int>();
    }

    /// <summary>The hugepage sizes the kernel offers, largest first, with their counters.</summary>
    public IReadOnlyList<HugePageSize> HugePages()
    {
        string folder = MemoryRoot == "/" ? "/sys/kernel/mm/hugepages" : Path.Join(MemoryRoot, "/sys/kernel/mm/hugepages");
        var sizes = new List<HugePageSize>();
        if (!Directory.Exists(folder))
            return sizes;
        foreach (string directory in Directory.EnumerateDirectories(folder, "hugepages-*kB"))
        {
            string name = Path.GetFileName(directory);
            if (!ulong.TryParse(name["hugepages-".Length..^"kB".Length], NumberStyles.None, CultureInfo.InvariantCulture, out ulong kilobytes))
                continue;
            sizes.Add(new HugePageSize(kilobytes << 10, ReadCounter(Path.Join(directory, "nr_hugepages")), ReadCounter(Path.Join(directory, "free_hugepages"))));
        }

        sizes.Sort((a, b) => b.Bytes.CompareTo(a.Bytes));
        return sizes;
    }

    /// <summary>
    /// The first part of an enclave ID: the instance ID from the board asset tag
    /// (/sys/devices/virtual/dmi/id/board_asset_tag, whitespace removed), or nitro-cli's placeholder
    /// <c>i-0000000000000000</c> when there is none (nitro-cli <c>src/enclave_proc/utils.rs</c>).
    /// </summary>
    public string InstanceId()
    {
        string path = Under("/sys/devices/virtual/dmi/id/board_asset_tag");
        try
        {
            string tag = new(File.ReadAllText(path).Where(c => !char.IsWhiteSpace(c)).ToArray());
            if (tag.Length > 0)
                return tag;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
        }

        return "i-0000000000000000";
    }

    /// <summary>A system path under <see cref="Root"/>.</summary>
    public string Under(string absolutePath) => Root == "/" ? absolutePath : Path.Join(Root, absolutePath);

    private static ulong ReadCounter(string path)
    {
        try
        {
            return ulong.TryParse(File.ReadAllText(path).Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out ulong n) ? n : 0;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return 0;
        }
    }
}

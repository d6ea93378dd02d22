using System.Globalization;
using System.Text;

namespace Launcher.Host;

/// <summary>
/// The kernel's cpu-list syntax (<c>bitmap_parselist</c>, lib/bitmap-str.c): comma-separated CPUs and inclusive
/// ranges, e.g. <c>1,3</c> or <c>2-3,6-7</c>; surrounding whitespace and a trailing newline are ignored.
/// </summary>
public static class CpuList
{
    /// <summary>The largest CPU number accepted (the kernel's <c>NR_CPUS</c> limit is 8192 on distribution kernels).</summary>
    public const int MaxCpu = 8191;

    /// <summary>Parses a cpu list; an empty or blank text is the empty set.</summary>
    /// <exception cref="EnclaveException">E24 naming <paramref name="what"/> and the bad part.</exception>
    public static SortedSet<int> Parse(string text, string what)
    {
        var cpus = new SortedSet<int>();
        string trimmed = text.Trim();
        if (trimmed.Length == 0)
            return cpus;
        foreach (string part in trimmed.Split(','))
        {
            string item = part.Trim();
            string[] bounds = item.Split('-');
            if (bounds.Length > 2 || !TryCpu(bounds[0], out int first))
                throw Malformed(what, item, trimmed);
            int last = first;
            if (bounds.Length == 2 && !TryCpu(bounds[1], out last))
                throw Malformed(what, item, trimmed);
            if (last < first)
                throw new EnclaveException(LaunchError.CpuError, $"{what}: the range '{item}' in '{trimmed}' ends before it starts");
            for (int cpu = first; cpu <= last; cpu++)
                cpus.Add(cpu);
        }

        return cpus;
    }

    /// <summary>Formats CPUs as the kernel does, with ranges: <c>1-3,5</c>.</summary>
    public static string Format(IEnumerable<int> cpus)
    {
        var text = new StringBuilder();
        int[] sorted = cpus.Distinct().Order().ToArray();
        for (int i = 0; i < sorted.Length;)
        {
            int j = i;
            while (j + 1 < sorted.Length && sorted[j + 1] == sorted[j] + 1)
                j++;
            if (text.Length > 0)
                text.Append(',');
            text.Append(sorted[i].ToString(CultureInfo.InvariantCulture));
            if (j > i)
                text.Append('-').Append(sorted[j].ToString(CultureInfo.InvariantCulture));
            i = j + 1;
        }

        return text.ToString();
    }

    private static EnclaveException Malformed(string what, string item, string text) =>
        new(LaunchError.CpuError, $"{what}: '{item}' in '{text}' is not a CPU or a range of CPUs (like 1 or 2-3)");

    private static bool TryCpu(string text, out int cpu) =>
        int.TryParse(text.Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out cpu) && cpu <= MaxCpu;
}

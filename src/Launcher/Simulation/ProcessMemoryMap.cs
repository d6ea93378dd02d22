using System.Globalization;

namespace Launcher.Simulation;

/// <summary>
/// This process's mappings from <c>/proc/self/smaps</c> (proc(5)): address ranges and the page size backing each
/// (<c>KernelPageSize</c>). The simulator uses it for the driver's region checks: accessible (<c>access_ok</c>),
/// hugetlbfs-backed (<c>PageHuge</c>), page size a multiple of 2 MiB.
/// </summary>
internal static class ProcessMemoryMap
{
    internal readonly record struct Mapping(ulong Start, ulong End, ulong KernelPageSize);

    /// <summary>The mappings overlapping [start, start + length), in address order.</summary>
    internal static List<Mapping> Overlapping(ulong start, ulong length)
    {
        ulong end = start + length;
        var result = new List<Mapping>();
        Mapping? current = null;
        foreach (string line in File.ReadLines("/proc/self/smaps"))
        {
            int dash = line.IndexOf('-');
            int space = line.IndexOf(' ');
            if (dash > 0 && space > dash && IsHex(line.AsSpan(0, dash)))
            {
                current = new Mapping(
                    ulong.Parse(line.AsSpan(0, dash), NumberStyles.HexNumber, CultureInfo.InvariantCulture),
                    ulong.Parse(line.AsSpan(dash + 1, space - dash - 1), NumberStyles.HexNumber, CultureInfo.InvariantCulture),
                    0);
                continue;
            }

            if (current is { } mapping && line.StartsWith("KernelPageSize:", StringComparison.Ordinal))
            {
                string[] parts = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
                ulong kilobytes = ulong.Parse(parts[1], CultureInfo.InvariantCulture);
                if (mapping.Start < end && mapping.End > start)
                    result.Add(mapping with { KernelPageSize = kilobytes << 10 });
                current = null;
            }
        }

        return result;
    }

    /// <summary>True when the mappings cover [start, start + length) without a gap.</summary>
    internal static bool Covers(List<Mapping> mappings, ulong start, ulong length)
    {
        ulong position = start;
        foreach (Mapping mapping in mappings)
        {
            if (mapping.Start > position)
                return false;
            position = Math.Max(position, mapping.End);
            if (position >= start + length)
                return true;
        }

        return position >= start + length;
    }

    private static bool IsHex(ReadOnlySpan<char> text)
    {
        foreach (char c in text)
        {
            if (!char.IsAsciiHexDigit(c))
                return false;
        }

        return text.Length > 0;
    }
}

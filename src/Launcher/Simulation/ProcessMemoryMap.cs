using System.Globalization;

namespace Launcher.Simulation;

/// <summary>
/// This process's mappings from <c>/proc/self/smaps</c> (proc(5)): address ranges and the page size backing each
/// (<c>KernelPageSize</c>). The simulator uses it for the driver's region checks: accessible (<c>access_ok</c>),
/// hugetlbfs-backed (<c>PageHuge</c>), page size a multiple of 2 MiB.
/// </summary>
internal static partial class ProcessMemoryMap
{
    internal readonly record struct Mapping(ulong Start, ulong End, ulong KernelPageSize);

    /// <summary>The mappings overlapping [start, start + length), in address order.</summary>
    internal static List<Mapping> Overlapping(ulong start, ulong length) => Overlapping(All(), start, length);

    /// <summary>The mappings of <paramref name="all"/> overlapping [start, start + length).</summary>
    internal static List<Mapping> Overlapping(List<Mapping> all, ulong start, ulong length)
    {
        ulong end = start + length;
        return all.Where(m => m.Start < end && m.End > start).ToList();
    }

    /// <summary>
    /// True when every page of [start, start + length) is mapped now: <c>mincore(2)</c> fails with ENOMEM otherwise.
    /// One system call, where reading smaps again costs a parse of every mapping of the process.
    /// </summary>
    internal static unsafe bool IsMapped(ulong start, ulong length)
    {
        const ulong BasePage = 4096;
        byte[] residency = new byte[(length + BasePage - 1) / BasePage];
        fixed (byte* vector = residency)
            return MinCore(unchecked((nint)start), (nuint)length, vector) == 0;
    }

    /// <summary>Every mapping of this process with its page size.</summary>
    internal static List<Mapping> All()
    {
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

    // int mincore(void *addr, size_t length, unsigned char *vec);
    [System.Runtime.InteropServices.LibraryImport("libc", EntryPoint = "mincore", SetLastError = true)]
    private static unsafe partial int MinCore(nint address, nuint length, byte* vector);

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

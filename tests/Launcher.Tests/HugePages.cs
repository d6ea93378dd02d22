using System.Globalization;

namespace Launcher.Tests;

/// <summary>
/// Real 2 MiB hugepages for the tests that map enclave memory (the simulator checks that regions are hugetlb-backed,
/// as the driver does). As root, the pool is raised to what is needed and put back when the test run ends; otherwise
/// the test is skipped with the reason and the command that reserves them.
/// </summary>
public static class HugePages
{
    private const string Pool = "/sys/kernel/mm/hugepages/hugepages-2048kB";
    private static readonly object Gate = new();
    private static long? _original;

    /// <summary>Makes sure at least <paramref name="pages"/> free 2 MiB pages exist, or skips the test.</summary>
    public static void Require(int pages)
    {
        lock (Gate)
        {
            long free = Read("free_hugepages");
            if (free >= pages)
                return;
            long total = Read("nr_hugepages");
            try
            {
                _original ??= total;
                File.WriteAllText(Path.Join(Pool, "nr_hugepages"), (total + pages - free + 16).ToString(CultureInfo.InvariantCulture));
            }
            catch (Exception ex) when (ex is UnauthorizedAccessException or IOException)
            {
                Assert.Skip($"needs {pages} free 2 MiB hugepages ({free} free) and cannot reserve them ({ex.Message}): echo {total + pages} | sudo tee {Pool}/nr_hugepages");
            }

            if (Read("free_hugepages") < pages)
                Assert.Skip($"needs {pages} free 2 MiB hugepages; the kernel could reserve only {Read("free_hugepages")} (memory too fragmented)");
            if (_original == total)
                AppDomain.CurrentDomain.ProcessExit += (_, _) => Restore();
        }
    }

    /// <summary>The pool's free pages now.</summary>
    public static long Free => Read("free_hugepages");

    private static void Restore()
    {
        lock (Gate)
        {
            if (_original is { } original)
            {
                try
                {
                    // Only shrink back what is free; pages still in use by others stay reserved.
                    File.WriteAllText(Path.Join(Pool, "nr_hugepages"), original.ToString(CultureInfo.InvariantCulture));
                }
                catch (IOException)
                {
                }
            }
        }
    }

    private static long Read(string counter) =>
        long.Parse(File.ReadAllText(Path.Join(Pool, counter)).Trim(), CultureInfo.InvariantCulture);
}

/// <summary>Tests that map hugepages run one at a time, so that each finds the free pages it asked for.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class HugePagesCollection
{
    /// <summary>The collection's name.</summary>
    public const string Name = "hugepages";
}

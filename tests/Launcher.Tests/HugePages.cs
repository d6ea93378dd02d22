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

    // The pool is one per machine, and dotnet test runs the test assemblies at the same time: tests that count free
    // pages (and put the pool back) cannot share it with another test process. So the first Require of a process
    // takes a machine-wide exclusive lock (a file opened with FileShare.None, which .NET locks with flock LOCK_EX) and
    // keeps it until the process ends; another test process waits for it. The pool's size before any test raised it
    // is kept in the state file, so that it is put back even after a run that was killed.
    private const string LockFile = "/run/eif-tests-hugepages.lock";
    private const string StateFile = "/run/eif-tests-hugepages.original";

    private static readonly object Gate = new();
    private static FileStream? _lock;

    /// <summary>Makes sure at least <paramref name="pages"/> free 2 MiB pages exist, or skips the test.</summary>
    public static void Require(int pages)
    {
        lock (Gate)
        {
            Own();
            long free = Read("free_hugepages");
            if (free >= pages)
                return;
            long total = Read("nr_hugepages");
            try
            {
                if (!File.Exists(StateFile))
                    File.WriteAllText(StateFile, total.ToString(CultureInfo.InvariantCulture));
                File.WriteAllText(Path.Join(Pool, "nr_hugepages"), (total + pages - free + 16).ToString(CultureInfo.InvariantCulture));
            }
            catch (Exception ex) when (ex is UnauthorizedAccessException or IOException)
            {
                Assert.Skip($"needs {pages} free 2 MiB hugepages ({free} free) and cannot reserve them ({ex.Message}): echo {total + pages} | sudo tee {Pool}/nr_hugepages");
            }

            if (Read("free_hugepages") < pages)
                Assert.Skip($"needs {pages} free 2 MiB hugepages; the kernel could reserve only {Read("free_hugepages")} (memory too fragmented)");
        }
    }

    /// <summary>The pool's free pages now (a test that counts them owns the pool too).</summary>
    public static long Free
    {
        get
        {
            lock (Gate)
                Own();
            return Read("free_hugepages");
        }
    }

    // Takes the machine-wide lock once per process, waiting while another test process holds it (as root: without
    // root nothing is raised or put back, and the tests that need pages skip).
    private static void Own()
    {
        if (_lock is not null || !Environment.IsPrivilegedProcess)
            return;
        while (true)
        {
            try
            {
                _lock = new FileStream(LockFile, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
                AppDomain.CurrentDomain.ProcessExit += (_, _) => Restore();
                return;
            }
            catch (IOException)
            {
                Thread.Sleep(100); // held by another test process: its tests end, then this one's start
            }
        }
    }

    private static void Restore()
    {
        lock (Gate)
        {
            try
            {
                if (File.Exists(StateFile))
                {
                    // Pages still in use (none: this process's enclaves are gone) would stay as surplus.
                    File.WriteAllText(Path.Join(Pool, "nr_hugepages"), File.ReadAllText(StateFile).Trim());
                    File.Delete(StateFile);
                }
            }
            catch (IOException)
            {
            }
            finally
            {
                _lock?.Dispose();
                _lock = null;
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

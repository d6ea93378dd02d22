using Launcher.Simulation;

namespace Launcher.Tests;

/// <summary>Temporary folders, golden EIFs and simulators for the tests.</summary>
internal static class TestEnvironment
{
    internal static string Golden(string name) => Path.Combine(AppContext.BaseDirectory, "golden", name);

    private static readonly List<string> Folders = [];

    static TestEnvironment()
    {
        AppDomain.CurrentDomain.ProcessExit += (_, _) =>
        {
            lock (Folders)
            {
                foreach (string folder in Folders)
                {
                    try
                    {
                        Directory.Delete(folder, recursive: true);
                    }
                    catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
                    {
                    }
                }
            }
        };
    }

    /// <summary>A fresh folder under /tmp (short: Unix socket paths are limited to 108 bytes), removed when the run ends.</summary>
    internal static string TemporaryFolder(string prefix)
    {
        string folder = Path.Join("/tmp", $"eif-{prefix}-{Guid.NewGuid():N}"[..24]);
        Directory.CreateDirectory(folder);
        lock (Folders)
            Folders.Add(folder);
        return folder;
    }

    /// <summary>A simulator in a fresh folder.</summary>
    internal static SimulatedNitro Simulator(SimulatorConfig? config = null) =>
        SimulatedNitro.Create(TemporaryFolder("sim"), config ?? new SimulatorConfig());
}

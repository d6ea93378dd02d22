using System.Text;
using EifFormat;
using Launcher.Host;
using Launcher.Simulation;

namespace Launcher.Tests;

/// <summary>
/// Whole launches on the simulator (launch.md §2.2 and §5): what reaches the enclave's memory and in which order,
/// the vCPUs and CIDs it gets, what the simulated hypervisor finds there, and how the enclave ends.
/// </summary>
[Collection(HugePagesCollection.Name)]
public sealed class LaunchSequenceTests : IDisposable
{
    // NE_EIF_LOAD_OFFSET and NE_MIN_MEM_REGION_SIZE (driver ne_misc_dev.c; launch.md §1.3, §1.5).
    private const ulong LoadOffset = 8UL << 20;
    private const ulong TwoMiB = 2UL << 20;

    private readonly TestScratch _scratch = new();
    private readonly List<RunningEnclave> _enclaves = [];
    private readonly SimulatedNitro _sim;
    private readonly string _folder;

    public LaunchSequenceTests()
    {
        _sim = _scratch.Simulator(); // 8 CPUs, 2 threads per core, pool 2-7
        _folder = _scratch.Folder("seq");
    }

    public void Dispose()
    {
        foreach (RunningEnclave enclave in _enclaves)
            enclave.Dispose();
        _scratch.Dispose();
    }

    [Fact]
    public void Launch_EifOfSeveralMiB_DonatedMemoryFromTheLoadOffsetIsTheFile()
    {
        HugePages.Require(32);
        string eif = SeveralMiBEif();
        byte[] expected = File.ReadAllBytes(eif);

        RunningEnclave enclave = Launch(Request(eif));

        SimulatedEnclaveVm vm = Assert.Single(_sim.Device.OpenEnclaves);
        byte[] donated = new byte[expected.Length];
        vm.ReadDonated(LoadOffset, donated);
        Assert.Equal(expected, donated);
        // The file really spans several regions: from region 4 (8 MiB / 2 MiB) to at least region 6.
        Assert.True((LoadOffset + (ulong)expected.Length - 1) / TwoMiB >= (LoadOffset / TwoMiB) + 2, $"{expected.Length} bytes fit in fewer than 3 regions");
        // And the regions were donated in the order the launcher wrote across them.
        Assert.Equal(enclave.Memory.Regions.Select(r => (r.Address, r.Size)), vm.Regions);
    }

    [Fact]
    public void Launch_TwoMiBPages_RegionsAreTwoMiBAlignedAndLargestFirst()
    {
        HugePages.Require(32);

        Launch(Request(Golden()));

        var regions = Assert.Single(_sim.Device.OpenEnclaves).Regions;
        Assert.All(regions, r => Assert.Equal(0UL, (ulong)r.Address % TwoMiB));
        Assert.All(regions, r => Assert.Equal(0UL, r.Size % TwoMiB));
        Assert.Equal(regions.OrderByDescending(r => r.Size).Select(r => r.Size), regions.Select(r => r.Size));
        Assert.Equal(64UL << 20, regions.Aggregate(0UL, (sum, r) => sum + r.Size));
    }

    [Fact]
    public void Launch_MixedPageSizes_DonatesLargestFirstAndTheFileSpansThem()
    {
        // A host that offers 4 MiB pages besides 2 MiB ones (as arm64 hosts offer several sizes, launch.md §1.5): the
        // pool files are fake, and the mapper serves each 4 MiB page as two contiguous 2 MiB hugepages, which the
        // driver accepts as one region. 3 × 2 + 30 real 2 MiB pages in all.
        HugePages.Require(36);
        string memoryRoot = _scratch.Folder("mem");
        FakeHugePagePool(memoryRoot, 4096, free: 3);
        FakeHugePagePool(memoryRoot, 2048, free: HugePages.Free);
        var mapper = new TestMapper { FourMiBPages = 3 };
        var platform = new NitroPlatform
        {
            Kind = "simulated",
            OpenDevice = _sim.Platform.OpenDevice,
            Host = new HostInfo(_sim.RootFolder, memoryRoot),
            Mapper = mapper,
            Vsock = _sim.Platform.Vsock,
        };
        string eif = SeveralMiBEif();
        byte[] expected = File.ReadAllBytes(eif);

        Launch(Request(eif) with { MemoryMiB = 72 }, new EnclaveLauncher(platform));

        SimulatedEnclaveVm vm = Assert.Single(_sim.Device.OpenEnclaves);
        ulong[] sizes = vm.Regions.Select(r => r.Size).ToArray();
        Assert.Equal([4UL << 20, 4UL << 20, 4UL << 20], sizes[..3]);
        Assert.All(sizes[3..], size => Assert.Equal(TwoMiB, size));
        Assert.Equal(72UL << 20, sizes.Aggregate(0UL, (sum, size) => sum + size));
        byte[] donated = new byte[expected.Length];
        vm.ReadDonated(LoadOffset, donated); // from the third 4 MiB region into the 2 MiB ones
        Assert.Equal(expected, donated);
    }

    [Fact]
    public void Launch_CpuIdsTwoThree_AddsExactlyThoseCpus()
    {
        HugePages.Require(32);

        RunningEnclave enclave = Launch(Request(Golden()) with { CpuCount = null, CpuIds = [2, 3] });

        Assert.Equal([2, 3], enclave.Description.CpuIds);
        Assert.Equal([2, 3], Assert.Single(_sim.Device.OpenEnclaves).Vcpus);
    }

    [Fact]
    public void Launch_CpuCountFour_TakesTwoWholeCores()
    {
        HugePages.Require(32);

        RunningEnclave enclave = Launch(Request(Golden()) with { CpuCount = 4 });

        IReadOnlyList<int> cpus = enclave.Description.CpuIds;
        Assert.Equal(4, cpus.Distinct().Count());
        Assert.All(cpus, cpu => Assert.Contains(cpu ^ 1, cpus)); // 2 threads per core: CPU c's sibling is c ^ 1
        Assert.Equal(2, cpus.Select(cpu => cpu / 2).Distinct().Count());
        Assert.Equal(cpus.Order(), Assert.Single(_sim.Device.OpenEnclaves).Vcpus);
    }

    [Fact]
    public void Launch_TwoEnclaves_GetCids16And17AndDisjointCores()
    {
        HugePages.Require(64);

        RunningEnclave first = Launch(Request(Golden()));
        RunningEnclave second = Launch(Request(Golden()));

        // Observed automatic CIDs (launch.md §1.3: nitro-cli #243, #602).
        Assert.Equal(16UL, first.Description.EnclaveCid);
        Assert.Equal(17UL, second.Description.EnclaveCid);
        Assert.Empty(first.Description.CpuIds.Select(cpu => cpu / 2).Intersect(second.Description.CpuIds.Select(cpu => cpu / 2)));
        Assert.Equal(2, _sim.Device.OpenEnclaves.Count);
        Assert.NotEqual(first.SlotUid, second.SlotUid);
    }

    [Fact]
    public void Launch_ExplicitCid_StartsWithThatCid()
    {
        HugePages.Require(32);

        RunningEnclave enclave = Launch(Request(Golden()) with { EnclaveCid = 1234 });

        Assert.Equal(1234UL, enclave.Description.EnclaveCid);
        Assert.Equal(1234UL, Assert.Single(_sim.Device.OpenEnclaves).Cid);
    }

    [Fact]
    public void Launch_DebugMode_HypervisorConsoleReportsTheCmdlineAndThePcr0FromDonatedMemory()
    {
        HugePages.Require(32);
        string eif = SeveralMiBEif();

        RunningEnclave enclave = Launch(Request(eif) with { DebugMode = true });

        SimulatedEnclaveVm vm = Assert.Single(_sim.Device.OpenEnclaves);
        Assert.Equal(NitroEnclaves.DebugModeFlag, vm.StartFlags);
        string pcr0Line = $"PCR0 {Pcr.ToHex(enclave.Description.Measurements.Pcr0)}";
        Assert.Contains($"kernel command line: {TestImages.Cmdline}\n", vm.ConsoleText);
        Assert.Contains("CRC ok", vm.ConsoleText);
        Assert.Contains(pcr0Line, vm.ConsoleText);

        // The console the parent reads (vsock CID 0, port CID + 10000) carries the same lines.
        using Stream console = enclave.OpenConsole(TimeSpan.FromSeconds(5));
        Assert.Contains(pcr0Line, ReadUntil(console, pcr0Line, TimeSpan.FromSeconds(5)));
    }

    [Fact]
    public void OpenConsole_ProductionModeEnclave_E44SaysToUseDebugMode()
    {
        HugePages.Require(32);

        RunningEnclave enclave = Launch(Request(Golden()));

        Assert.Equal(NitroEnclaves.ProductionModeFlag, Assert.Single(_sim.Device.OpenEnclaves).StartFlags);
        Assert.False(enclave.Description.DebugMode);
        var ex = Assert.Throws<EnclaveException>(() => enclave.OpenConsole(TimeSpan.FromSeconds(1)));
        Assert.Equal(LaunchError.EnclaveConsoleConnectionFailure, ex.Error); // E44, as nitro-cli ("include '--debug-mode'")
        Assert.Contains("debug mode", ex.Message);
        Assert.Contains(enclave.Description.EnclaveId, ex.Message);
    }

    [Fact]
    public void Terminate_RunningEnclave_ReleasesTheSlotCoresAndHugePages()
    {
        ProcessWarmUp.Ensure(); // before descriptors are counted
        HugePages.Require(32);
        ProcessResources before = ProcessResources.Take();
        RunningEnclave enclave = Launch(Request(Golden()) with { CpuCount = 6 }); // the whole pool
        ulong heldKilobytes = ProcessResources.Take().OwnHugeTlbKilobytes - before.OwnHugeTlbKilobytes;
        Assert.Equal(64UL << 10, heldKilobytes); // every donated page is in use (the simulator copied it at donation)

        enclave.Terminate();

        Assert.Equal(EnclaveState.Empty, enclave.State);
        Assert.Equal(EnclaveState.Empty, enclave.Describe().State);
        Assert.Empty(_sim.Device.OpenEnclaves);
        ProcessResources.AssertBackTo(before); // descriptors, mappings, hugetlb memory, HugePages.Free
        enclave.Terminate(); // idempotent
        Assert.Equal(EnclaveState.Empty, enclave.State);
        // Its cores and CID are free: a new enclave with the whole pool gets CID 16 again.
        RunningEnclave next = Launch(Request(Golden()) with { CpuCount = 6 });
        Assert.Equal(16UL, next.Description.EnclaveCid);
    }

    [Fact]
    public void WaitForExit_EnclaveStopsByItself_ReturnsTrue()
    {
        HugePages.Require(32);
        SimulatedNitro sim = _scratch.Simulator(new SimulatorConfig { RunMilliseconds = 500 });

        RunningEnclave enclave = Launch(Request(Golden()), new EnclaveLauncher(sim.Platform));

        Assert.False(enclave.WaitForExit(TimeSpan.Zero)); // it runs 500 ms after its heartbeat
        Assert.True(enclave.WaitForExit(TimeSpan.FromSeconds(10)));
        Assert.Contains("shut itself down", Assert.Single(sim.Device.OpenEnclaves).ConsoleText);
        Assert.True(enclave.WaitForExit(TimeSpan.Zero)); // and stays seen
    }

    private static string Golden() => TestEnvironment.Golden("synth_sha384_named.eif");

    private static LaunchRequest Request(string eif) => new()
    {
        EifPath = eif,
        MemoryMiB = 64,
        CpuCount = 2,
        HeartbeatTimeout = TimeSpan.FromSeconds(10),
    };

    private static string ReadUntil(Stream stream, string wanted, TimeSpan timeout)
    {
        var text = new StringBuilder();
        byte[] buffer = new byte[1024];
        long deadline = Environment.TickCount64 + (long)timeout.TotalMilliseconds;
        stream.ReadTimeout = (int)timeout.TotalMilliseconds;
        while (!text.ToString().Contains(wanted, StringComparison.Ordinal) && Environment.TickCount64 < deadline)
        {
            int read = stream.Read(buffer);
            if (read == 0)
                break;
            text.Append(Encoding.UTF8.GetString(buffer, 0, read));
        }

        return text.ToString();
    }

    private static void FakeHugePagePool(string root, int kilobytes, long free)
    {
        string folder = Path.Join(root, $"sys/kernel/mm/hugepages/hugepages-{kilobytes}kB");
        Directory.CreateDirectory(folder);
        File.WriteAllText(Path.Join(folder, "nr_hugepages"), $"{free}\n");
        File.WriteAllText(Path.Join(folder, "free_hugepages"), $"{free}\n");
    }

    // An EIF of about 5.3 MiB (a 5 MiB + 300 KiB random ramdisk): at the 8 MiB offset it spans 2 MiB regions 4 to 6.
    private string SeveralMiBEif()
    {
        string path = Path.Join(_folder, "several-mib.eif");
        if (!File.Exists(path))
            TestImages.Write(path, ramdiskBytes: (5 << 20) + (300 << 10), seed: 7);
        return path;
    }

    private RunningEnclave Launch(LaunchRequest request, EnclaveLauncher? launcher = null)
    {
        RunningEnclave enclave = (launcher ?? new EnclaveLauncher(_sim.Platform)).Launch(request);
        _enclaves.Add(enclave);
        return enclave;
    }
}

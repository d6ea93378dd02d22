using Launcher.Driver;
using Launcher.Host;
using Launcher.Memory;
using Launcher.Simulation;
using Launcher.Vsock;

namespace Launcher.Tests;

/// <summary>
/// A launch that fails at any step releases everything it took (launch.md §5: "on any failure after CREATE_VM:
/// close(encFd), munmap everything mapped so far"): after each failure there is no open slot, no new file
/// descriptor, no hugetlb mapping, the free hugepages are back, no heartbeat listener socket is left, and the slot's
/// cores are free again. The error carries nitro-cli's code: E29 with the driver's sentence for an ioctl, E36 for the
/// heartbeat, E27 for memory.
/// </summary>
[Collection(HugePagesCollection.Name)]
public sealed class FailureInjectionTests : IDisposable
{
    // ENCLAVE_READY_VSOCK_PORT on VMADDR_CID_PARENT, as a simulated vsock socket file ("<cid>.<port>").
    private const string HeartbeatSocket = "3.9000";

    private readonly TestScratch _scratch = new();
    private readonly List<RunningEnclave> _enclaves = [];

    public FailureInjectionTests()
    {
        ProcessWarmUp.Ensure(); // before any test counts descriptors
    }

    public void Dispose()
    {
        foreach (RunningEnclave enclave in _enclaves)
            enclave.Dispose();
        _scratch.Dispose();
    }

    /// <summary>Each driver errno at an ioctl that can return it (launch.md §1.4, "Raised by").</summary>
    public static TheoryData<int, string> DriverErrnos() => new()
    {
        { 256, "NE_ADD_VCPU" },                // NE_ERR_VCPU_ALREADY_USED
        { 257, "NE_ADD_VCPU" },                // NE_ERR_VCPU_NOT_IN_CPU_POOL
        { 258, "NE_ADD_VCPU" },                // NE_ERR_VCPU_INVALID_CPU_CORE
        { 259, "NE_SET_USER_MEMORY_REGION" },  // NE_ERR_INVALID_MEM_REGION_SIZE
        { 260, "NE_SET_USER_MEMORY_REGION" },  // NE_ERR_INVALID_MEM_REGION_ADDR
        { 261, "NE_SET_USER_MEMORY_REGION" },  // NE_ERR_UNALIGNED_MEM_REGION_ADDR
        { 262, "NE_SET_USER_MEMORY_REGION" },  // NE_ERR_MEM_REGION_ALREADY_USED
        { 263, "NE_SET_USER_MEMORY_REGION" },  // NE_ERR_MEM_NOT_HUGE_PAGE
        { 264, "NE_SET_USER_MEMORY_REGION" },  // NE_ERR_MEM_DIFFERENT_NUMA_NODE
        { 265, "NE_SET_USER_MEMORY_REGION" },  // NE_ERR_MEM_MAX_REGIONS
        { 266, "NE_START_ENCLAVE" },           // NE_ERR_NO_MEM_REGIONS_ADDED
        { 267, "NE_START_ENCLAVE" },           // NE_ERR_NO_VCPUS_ADDED
        { 268, "NE_START_ENCLAVE" },           // NE_ERR_ENCLAVE_MEM_MIN_SIZE
        { 269, "NE_START_ENCLAVE" },           // NE_ERR_FULL_CORES_NOT_USED
        { 270, "NE_ADD_VCPU" },                // NE_ERR_NOT_IN_INIT_STATE (any ioctl but CREATE_VM)
        { 271, "NE_ADD_VCPU" },                // NE_ERR_INVALID_VCPU
        { 272, "NE_CREATE_VM" },               // NE_ERR_NO_CPUS_AVAIL_IN_POOL
        { 273, "NE_SET_USER_MEMORY_REGION" },  // NE_ERR_INVALID_PAGE_SIZE
        { 274, "NE_GET_IMAGE_LOAD_INFO" },     // NE_ERR_INVALID_FLAG_VALUE
        { 275, "NE_START_ENCLAVE" },           // NE_ERR_INVALID_ENCLAVE_CID
    };

    [Fact]
    public void DriverErrnos_EveryNeErrno_IsInjectedOnce()
    {
        Assert.Equal(Enumerable.Range(NeErrors.First, NeErrors.Last - NeErrors.First + 1), DriverErrnos().Select(row => (int)row.Data.Item1));
    }

    [Fact]
    public void Launch_CreateVmFails_E29AndNothingLeft()
    {
        var ex = FailsAtIoctl("NE_CREATE_VM", NeError.NoCpusAvailableInPool);

        Assert.Contains("NE_CREATE_VM", ex.Message);
    }

    [Fact]
    public void Launch_GetImageLoadInfoFails_E29AndNothingLeft()
    {
        var ex = FailsAtIoctl("NE_GET_IMAGE_LOAD_INFO", NeError.InvalidFlagValue);

        Assert.Contains("NE_GET_IMAGE_LOAD_INFO", ex.Message);
    }

    [Fact]
    public void Launch_SetUserMemoryRegionFails_E29AndNothingLeft()
    {
        var ex = FailsAtIoctl("NE_SET_USER_MEMORY_REGION", NeError.MemNotHugePage);

        Assert.Contains("NE_SET_USER_MEMORY_REGION", ex.Message);
    }

    [Fact]
    public void Launch_AddVcpuFails_E29AndNothingLeft()
    {
        var ex = FailsAtIoctl("NE_ADD_VCPU", NeError.VcpuNotInCpuPool);

        Assert.Contains("NE_ADD_VCPU", ex.Message);
    }

    [Fact]
    public void Launch_StartEnclaveFails_E29AndNoListenerLeft()
    {
        // The heartbeat listener is bound before START (nitro-cli PR #134), so this failure must close it too.
        var ex = FailsAtIoctl("NE_START_ENCLAVE", NeError.FullCoresNotUsed);

        Assert.Contains("NE_START_ENCLAVE", ex.Message);
    }

    [Theory]
    [MemberData(nameof(DriverErrnos))]
    public void Launch_DriverErrnoAtItsIoctl_E29WithNitroClisSentenceAndNothingLeft(int errno, string ioctl)
    {
        var ex = FailsAtIoctl(ioctl, (NeError)errno);

        Assert.Contains(ioctl, ex.Message);
        Assert.Contains(NeErrors.Message((NeError)errno), ex.Message);
        Assert.Contains(NeErrors.MacroName((NeError)errno), ex.Message);
        Assert.StartsWith("[ E29 ]", ex.ToCliLine());
    }

    [Fact]
    public void Launch_RegionLimitReachedPartWayThroughDonation_E29AndNothingLeft()
    {
        // A genuine NE_ERR_MEM_MAX_REGIONS after ten of the 32 regions were donated.
        HugePages.Require(32);
        SimulatedNitro sim = _scratch.Simulator(new SimulatorConfig { MaxMemoryRegions = 10 });
        ProcessResources before = ProcessResources.Take();

        var ex = Assert.Throws<EnclaveException>(() => new EnclaveLauncher(sim.Platform).Launch(Request()));

        Assert.Equal(LaunchError.IoctlFailure, ex.Error);
        Assert.Equal(NeError.MemMaxRegions, ex.DriverError);
        AssertNothingLeft(sim, before);
    }

    [Fact]
    public void Launch_ThirdCpuHeldByAnotherEnclave_E29AndOnlyTheOtherEnclaveLeft()
    {
        // A genuine NE_ERR_VCPU_NOT_IN_CPU_POOL after two vCPUs were added: CPUs 4 and 5 are taken, 2 is not.
        HugePages.Require(64);
        SimulatedNitro sim = _scratch.Simulator();
        var launcher = new EnclaveLauncher(sim.Platform);
        RunningEnclave holder = Launch(launcher, Request() with { CpuCount = null, CpuIds = [2, 3] });
        ProcessResources before = ProcessResources.Take();

        var ex = Assert.Throws<EnclaveException>(() => launcher.Launch(Request() with { CpuCount = null, CpuIds = [4, 5, 2, 3] }));

        Assert.Equal(LaunchError.IoctlFailure, ex.Error);
        Assert.Equal(NeError.VcpuNotInCpuPool, ex.DriverError);
        Assert.Contains("NE_ADD_VCPU(2)", ex.Message);
        AssertNothingLeft(sim, before, stillOpen: holder.SlotUid, freeCpus: [4, 5, 6, 7]);
    }

    [Theory]
    [InlineData(SimulatedBoot.Silent, "VsockTimeoutError")]
    [InlineData(SimulatedBoot.WrongByte, "sent 0x00 instead of the heartbeat 0xB7")]
    [InlineData(SimulatedBoot.Crash, "stopped before it sent its heartbeat")]
    public void Launch_HeartbeatFails_E36AndNothingLeft(SimulatedBoot boot, string reason)
    {
        // Debug mode, so that the simulated console listener must be closed with the slot too.
        HugePages.Require(32);
        SimulatedNitro sim = _scratch.Simulator(new SimulatorConfig { Boot = boot });
        ProcessResources before = ProcessResources.Take();

        var ex = Assert.Throws<EnclaveException>(() => new EnclaveLauncher(sim.Platform).Launch(
            Request() with { DebugMode = true, HeartbeatTimeout = TimeSpan.FromMilliseconds(500) }));

        Assert.Equal(LaunchError.EnclaveBootFailure, ex.Error);
        Assert.Contains(reason, ex.Message);
        AssertNothingLeft(sim, before);
    }

    [Fact]
    public void Launch_HeartbeatPortHeldThroughTheTimeout_E36AndNothingLeft()
    {
        // Another launch holds CID 3 : 9000 (nitro-cli#516); this one waits for it, then gives up.
        HugePages.Require(32);
        SimulatedNitro sim = _scratch.Simulator();
        using IVsockListener other = sim.Platform.Vsock.Listen(new VsockAddress(NitroEnclaves.ParentCid, NitroEnclaves.HeartbeatPort));
        ProcessResources before = ProcessResources.Take();

        var ex = Assert.Throws<EnclaveException>(() => new EnclaveLauncher(sim.Platform).Launch(Request() with { HeartbeatTimeout = TimeSpan.FromMilliseconds(300) }));

        Assert.Equal(LaunchError.EnclaveBootFailure, ex.Error);
        Assert.Equal(Interop.Libc.EADDRINUSE, ex.Errno);
        AssertNothingLeft(sim, before, listenerExpected: true);
    }

    [Fact]
    public void Launch_HugePagesTakenAfterTheCheck_E27AndNothingLeft()
    {
        // The pre-flight check saw enough free pages; by the time of the launch another process holds all but 8.
        HugePages.Require(32);
        SimulatedNitro sim = _scratch.Simulator();
        var launcher = new EnclaveLauncher(sim.Platform);
        LaunchPlan plan = launcher.Check(Request());
        ProcessResources before = ProcessResources.Take();
        var taken = new List<nint>();
        try
        {
            for (long i = HugePages.Free; i > 8; i--)
                taken.Add(HugeTlbMapper.Instance.Map(NitroEnclaves.MemoryRegionGranule));
            Assert.DoesNotContain(0, taken);

            var ex = Assert.Throws<EnclaveException>(() => launcher.Launch(plan));

            Assert.Equal(LaunchError.InsufficientMemoryAvailable, ex.Error);
            Assert.Contains("--memory is 64 MiB", ex.Message);
            Assert.Contains("16 MiB could be mapped", ex.Message);
        }
        finally
        {
            foreach (nint page in taken.Where(page => page != 0))
                HugeTlbMapper.Instance.Unmap(page, NitroEnclaves.MemoryRegionGranule);
        }

        AssertNothingLeft(sim, before);
    }

    [Fact]
    public void Launch_MapperRunsOutAfterTenPages_E27AndEveryPageUnmapped()
    {
        HugePages.Require(32);
        SimulatedNitro sim = _scratch.Simulator();
        var mapper = new TestMapper { RunOutAfter = 10 };
        ProcessResources before = ProcessResources.Take();

        var ex = Assert.Throws<EnclaveException>(() => new EnclaveLauncher(WithMapper(sim, mapper)).Launch(Request()));

        Assert.Equal(LaunchError.InsufficientMemoryAvailable, ex.Error);
        Assert.Contains("20 MiB could be mapped", ex.Message);
        Assert.Equal(10, mapper.Mapped);
        Assert.Equal(10, mapper.Unmapped);
        AssertNothingLeft(sim, before);
    }

    [Fact]
    public void Launch_MapperFailsAfterTenPages_E42AndEveryPageUnmapped()
    {
        HugePages.Require(32);
        SimulatedNitro sim = _scratch.Simulator();
        var mapper = new TestMapper { FailAfter = 10 };
        ProcessResources before = ProcessResources.Take();

        var ex = Assert.Throws<EnclaveException>(() => new EnclaveLauncher(WithMapper(sim, mapper)).Launch(Request()));

        Assert.Equal(LaunchError.EnclaveMmapError, ex.Error);
        Assert.Equal(10, mapper.Unmapped);
        AssertNothingLeft(sim, before);
    }

    [Fact]
    public void Launch_EifChangedAfterTheCheck_E35AndNothingLeft()
    {
        // The file is rewritten in place between the check and the copy: what would be donated is not what was checked.
        HugePages.Require(32);
        SimulatedNitro sim = _scratch.Simulator();
        string eif = Path.Join(_scratch.Folder("chg"), "changing.eif");
        File.Copy(Golden(), eif);
        var launcher = new EnclaveLauncher(sim.Platform);
        LaunchPlan plan = launcher.Check(Request() with { EifPath = eif });
        byte[] bytes = File.ReadAllBytes(eif);
        bytes[^1] ^= 0x01;
        File.WriteAllBytes(eif, bytes);
        ProcessResources before = ProcessResources.Take();

        var ex = Assert.Throws<EnclaveException>(() => launcher.Launch(plan));

        Assert.Equal(LaunchError.EifParsingError, ex.Error);
        Assert.Contains(eif, ex.Message);
        AssertNothingLeft(sim, before);
    }

    private static string Golden() => TestEnvironment.Golden("synth_sha384_named.eif");

    private static LaunchRequest Request() => new()
    {
        EifPath = Golden(),
        MemoryMiB = 64,
        CpuCount = 2,
        HeartbeatTimeout = TimeSpan.FromSeconds(5),
    };

    private static NitroPlatform WithMapper(SimulatedNitro sim, IHugePageMapper mapper) => new()
    {
        Kind = "simulated",
        OpenDevice = sim.Platform.OpenDevice,
        Host = sim.Platform.Host,
        Mapper = mapper,
        Vsock = sim.Platform.Vsock,
    };

    // Injects errno at the ioctl, launches, checks E29 with the errno and its sentence, and that nothing is left.
    private EnclaveException FailsAtIoctl(string ioctl, NeError error)
    {
        HugePages.Require(32);
        SimulatedNitro sim = _scratch.Simulator();
        ProcessResources before = ProcessResources.Take();
        sim.Device.FailNext(ioctl, (int)error);

        var ex = Assert.Throws<EnclaveException>(() => new EnclaveLauncher(sim.Platform).Launch(Request()));

        Assert.Equal(LaunchError.IoctlFailure, ex.Error);
        Assert.Equal((int)error, ex.Errno);
        Assert.Contains(NeErrors.Message(error), ex.Message);
        AssertNothingLeft(sim, before);
        return ex;
    }

    private RunningEnclave Launch(EnclaveLauncher launcher, LaunchRequest request)
    {
        RunningEnclave enclave = launcher.Launch(request);
        _enclaves.Add(enclave);
        return enclave;
    }

    // Checked right after the failure: no simulated vsock socket (but the test's own heartbeat listener when it holds
    // one), no slot but stillOpen, the process's resources back to before, and every pool CPU but the ones still held
    // can be added to a new slot.
    private static void AssertNothingLeft(SimulatedNitro sim, ProcessResources before, ulong? stillOpen = null, int[]? freeCpus = null, bool listenerExpected = false)
    {
        // The socket files first: a leaked listener's file goes only when a finalizer closes its socket.
        string[] expectedSockets = listenerExpected ? [HeartbeatSocket] : [];
        Assert.Equal(expectedSockets, Directory.GetFileSystemEntries(sim.VsockFolder).Select(path => Path.GetFileName(path)));
        ulong[] open = stillOpen is { } slot ? [slot] : [];
        Assert.Equal(open, sim.Device.OpenEnclaves.Select(vm => vm.SlotUid));
        ProcessResources.AssertBackTo(before);

        using INitroEnclavesDevice device = sim.Platform.OpenDevice();
        using IEnclaveVm probe = device.CreateVm();
        foreach (int cpu in freeCpus ?? CpuList.Parse(sim.Config.CpuPool, "CpuPool").ToArray())
            Assert.Equal((uint)cpu, probe.AddVcpu((uint)cpu));
    }
}

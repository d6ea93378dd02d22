using Launcher.Driver;
using Launcher.Interop;
using Launcher.Memory;
using Launcher.Simulation;

namespace Launcher.Tests;

/// <summary>
/// The simulated device and hypervisor, driven ioctl by ioctl: each documented driver check (launch.md §1.3–§1.5;
/// driver <c>ne_misc_dev.c</c>) answers a genuine violation, and only that, with its <c>NE_ERR_*</c> errno. Every
/// case sets up an enclave that is valid in all other respects, so the errno cannot come from another rule.
/// </summary>
[Collection(HugePagesCollection.Name)]
public sealed class SimulatedDriverTests : IDisposable
{
    // NE_MIN_MEM_REGION_SIZE and NE_MIN_ENCLAVE_MEM_SIZE (driver ne_misc_dev.c), in 2 MiB pages.
    private const ulong TwoMiB = NitroEnclaves.MemoryRegionGranule;
    private const int MinimumPages = (int)(NitroEnclaves.MinimumMemory / NitroEnclaves.MemoryRegionGranule); // 32

    private readonly TestScratch _scratch = new();
    private readonly List<IEnclaveVm> _vms = [];
    private readonly List<nint> _pages = [];
    private readonly List<Mapping> _mappings = [];
    private readonly SimulatedNitro _sim;

    public SimulatedDriverTests()
    {
        _sim = _scratch.Simulator(); // 8 CPUs, 2 threads per core, pool 2-7 (SimulatorConfig defaults)
    }

    public void Dispose()
    {
        // Close the slots before unmapping: the driver has pinned the donated pages until the enclave fd is closed.
        foreach (IEnclaveVm vm in _vms)
            vm.Dispose();
        foreach (nint page in _pages)
            HugeTlbMapper.Instance.Unmap(page, TwoMiB);
        foreach (Mapping mapping in _mappings)
            mapping.Dispose();
        _scratch.Dispose();
    }

    [Fact]
    public void GetImageLoadInfo_EifImageFlag_ReturnsTheEightMiBLoadOffset()
    {
        SimulatedEnclaveVm vm = NewVm();

        // NE_EIF_LOAD_OFFSET = 8 MiB (driver ne_misc_dev.c; launch.md §1.3).
        Assert.Equal(0x800000UL, vm.GetImageLoadInfo(NitroEnclaves.EifImageFlag));
    }

    [Theory]
    [InlineData(0UL)] // flags == 0 is refused (driver: "!image_load_info.flags")
    [InlineData(2UL)] // NE_IMAGE_LOAD_MAX_FLAG_VAL
    [InlineData(ulong.MaxValue)]
    public void GetImageLoadInfo_FlagsOtherThanEifImage_InvalidFlagValue(ulong flags)
    {
        SimulatedEnclaveVm vm = NewVm();

        AssertDriverError(NeError.InvalidFlagValue, () => vm.GetImageLoadInfo(flags));
    }

    [Fact]
    public void SetUserMemoryRegion_FlagsOne_InvalidFlagValue()
    {
        HugePages.Require(1);
        SimulatedEnclaveVm vm = NewVm();
        nint page = HugePage();

        AssertDriverError(NeError.InvalidFlagValue, () => vm.SetUserMemoryRegion(1, TwoMiB, page)); // NE_MEMORY_REGION_MAX_FLAG_VAL = 1

        // The same region with NE_DEFAULT_MEMORY_REGION is fine: the flags were the only fault.
        vm.SetUserMemoryRegion(NitroEnclaves.DefaultMemoryRegionFlag, TwoMiB, page);
        Assert.Equal(TwoMiB, vm.DonatedBytes);
    }

    [Fact]
    public void StartEnclave_FlagsTwo_InvalidFlagValue()
    {
        HugePages.Require(MinimumPages);
        SimulatedEnclaveVm vm = ReadyVm();

        AssertDriverError(NeError.InvalidFlagValue, () => vm.StartEnclave(2, 0)); // NE_ENCLAVE_START_MAX_FLAG_VAL = 2
        Assert.Equal(0UL, vm.Cid);
    }

    [Theory]
    [InlineData(1UL << 20)]              // 1 MiB
    [InlineData((2UL << 20) + 4096)]     // 2 MiB + one 4 KiB page
    [InlineData((2UL << 20) + (1 << 20))] // 3 MiB
    public void SetUserMemoryRegion_SizeNotAMultipleOfTwoMiB_InvalidMemRegionSize(ulong size)
    {
        HugePages.Require(2);
        SimulatedEnclaveVm vm = NewVm();
        Mapping memory = HugeMapping(2); // 4 MiB mapped, so the range itself is accessible

        AssertDriverError(NeError.InvalidMemRegionSize, () => vm.SetUserMemoryRegion(0, size, memory.Address));
        Assert.Equal(0UL, vm.DonatedBytes);
    }

    [Theory]
    [InlineData(4096UL)]
    [InlineData(1UL << 20)]
    public void SetUserMemoryRegion_AddressNotTwoMiBAligned_UnalignedMemRegionAddr(ulong misalignment)
    {
        HugePages.Require(2);
        SimulatedEnclaveVm vm = NewVm();
        Mapping memory = HugeMapping(2); // [address, address + 2 MiB) stays inside the 4 MiB mapping

        AssertDriverError(NeError.UnalignedMemRegionAddr, () => vm.SetUserMemoryRegion(0, TwoMiB, memory.Address + (nint)misalignment));
        Assert.Equal(0UL, vm.DonatedBytes);
    }

    [Fact]
    public void SetUserMemoryRegion_RangeRunsPastTheMapping_InvalidMemRegionAddr()
    {
        HugePages.Require(2);
        SimulatedEnclaveVm vm = NewVm();
        Mapping memory = HugeMapping(2);
        memory.UnmapTail(TwoMiB); // the second 2 MiB of the range is no longer mapped

        AssertDriverError(NeError.InvalidMemRegionAddr, () => vm.SetUserMemoryRegion(0, 2 * TwoMiB, memory.Address));

        // The mapped half alone is accepted.
        vm.SetUserMemoryRegion(0, TwoMiB, memory.Address);
        Assert.Equal(TwoMiB, vm.DonatedBytes);
    }

    [Fact]
    public void SetUserMemoryRegion_KernelHalfAddress_InvalidMemRegionAddr()
    {
        SimulatedEnclaveVm vm = NewVm();

        // 2 MiB aligned, but above the x86_64 user address space (TASK_SIZE), so access_ok() fails.
        AssertDriverError(NeError.InvalidMemRegionAddr, () => vm.SetUserMemoryRegion(0, TwoMiB, unchecked((nint)0xFFFF_8000_0000_0000UL)));
    }

    [Theory]
    [InlineData(0, 2)] // the same range again
    [InlineData(1, 1)] // its second half
    [InlineData(0, 1)] // its first half
    public void SetUserMemoryRegion_OverlapsADonatedRegion_MemRegionAlreadyUsed(int firstPage, int pages)
    {
        HugePages.Require(2);
        SimulatedEnclaveVm vm = NewVm();
        Mapping memory = HugeMapping(2);
        vm.SetUserMemoryRegion(0, 2 * TwoMiB, memory.Address);

        AssertDriverError(NeError.MemRegionAlreadyUsed, () => vm.SetUserMemoryRegion(0, (ulong)pages * TwoMiB, memory.Address + (nint)((ulong)firstPage * TwoMiB)));
        Assert.Equal(2 * TwoMiB, vm.DonatedBytes);
    }

    [Fact]
    public void SetUserMemoryRegion_OrdinaryFourKiBPages_MemNotHugePage()
    {
        SimulatedEnclaveVm vm = NewVm();
        var memory = Mapping.Ordinary(3 * TwoMiB);
        _mappings.Add(memory);
        memory.Fill(0, memory.Size, 0x5A); // populated, as the launcher's pages are before donation
        nint aligned = (nint)(((ulong)memory.Address + TwoMiB - 1) & ~(TwoMiB - 1)); // a 2 MiB aligned 2 MiB inside it

        AssertDriverError(NeError.MemNotHugePage, () => vm.SetUserMemoryRegion(0, TwoMiB, aligned));
    }

    [Fact]
    public void SetUserMemoryRegion_MoreRangesThanTheSlotAllows_MemMaxRegions()
    {
        HugePages.Require(3);
        SimulatedEnclaveVm vm = NewVm(Simulator(new SimulatorConfig { MaxMemoryRegions = 2 }));
        nint first = HugePage(), second = HugePage(), third = HugePage();
        vm.SetUserMemoryRegion(0, TwoMiB, first);
        vm.SetUserMemoryRegion(0, TwoMiB, second);

        AssertDriverError(NeError.MemMaxRegions, () => vm.SetUserMemoryRegion(0, TwoMiB, third));
        Assert.Equal(2, vm.Regions.Count);
    }

    [Fact]
    public void SetUserMemoryRegion_OneRegionOfMorePagesThanTheSlotAllows_MemMaxRegions()
    {
        HugePages.Require(3);
        SimulatedEnclaveVm vm = NewVm(Simulator(new SimulatorConfig { MaxMemoryRegions = 2 }));
        Mapping memory = HugeMapping(3);

        // The driver sends one SLOT_ADD_MEM per physically contiguous range; the simulator counts each hugepage as one.
        AssertDriverError(NeError.MemMaxRegions, () => vm.SetUserMemoryRegion(0, memory.Size, memory.Address));
        Assert.Empty(vm.Regions);
    }

    [Fact]
    public void ReadDonated_TwoRegions_ReturnsTheirBytesAsDonatedInDonationOrder()
    {
        HugePages.Require(2);
        SimulatedEnclaveVm vm = NewVm();
        Mapping memory = HugeMapping(2);
        memory.Fill(0, TwoMiB, 0xAA);
        memory.Fill(TwoMiB, TwoMiB, 0xBB);
        vm.SetUserMemoryRegion(0, TwoMiB, memory.Address + (nint)TwoMiB); // the 0xBB page first
        vm.SetUserMemoryRegion(0, TwoMiB, memory.Address);
        memory.Fill(0, 2 * TwoMiB, 0x00); // what the parent writes after donation is not the enclave's

        byte[] donated = new byte[4];
        vm.ReadDonated(TwoMiB - 2, donated);

        Assert.Equal([0xBB, 0xBB, 0xAA, 0xAA], donated);
        Assert.Equal([(memory.Address + (nint)TwoMiB, TwoMiB), (memory.Address, TwoMiB)], vm.Regions);
    }

    [Fact]
    public void StartEnclave_NoMemoryAdded_NoMemRegionsAdded()
    {
        SimulatedEnclaveVm vm = NewVm();
        vm.AddVcpu(2);
        vm.AddVcpu(3);

        AssertDriverError(NeError.NoMemRegionsAdded, () => vm.StartEnclave(0, 0));
    }

    [Fact]
    public void StartEnclave_NoVcpusAdded_NoVcpusAdded()
    {
        HugePages.Require(MinimumPages);
        SimulatedEnclaveVm vm = NewVm();
        DonateMinimum(vm);

        AssertDriverError(NeError.NoVcpusAdded, () => vm.StartEnclave(0, 0));
    }

    [Fact]
    public void StartEnclave_TwoMiBShortOfSixtyFourMiB_EnclaveMemMinSize()
    {
        HugePages.Require(MinimumPages - 1);
        SimulatedEnclaveVm vm = NewVm();
        Mapping memory = HugeMapping(MinimumPages - 1); // 62 MiB
        vm.SetUserMemoryRegion(0, memory.Size, memory.Address);
        vm.AddVcpu(2);
        vm.AddVcpu(3);

        AssertDriverError(NeError.EnclaveMemMinSize, () => vm.StartEnclave(0, 0));
    }

    [Fact]
    public void StartEnclave_HalfACore_FullCoresNotUsed()
    {
        HugePages.Require(MinimumPages);
        SimulatedEnclaveVm vm = NewVm();
        DonateMinimum(vm);
        vm.AddVcpu(2); // CPU 3, its sibling, is not added

        AssertDriverError(NeError.FullCoresNotUsed, () => vm.StartEnclave(0, 0));

        // Adding the sibling completes the core, and the enclave starts.
        vm.AddVcpu(3);
        Assert.Equal(16UL, vm.StartEnclave(0, 0));
    }

    [Fact]
    public void ResourceIoctls_AfterStart_NotInInitState()
    {
        HugePages.Require(MinimumPages + 1);
        SimulatedEnclaveVm vm = ReadyVm();
        vm.StartEnclave(0, 0);
        nint another = HugePage();

        AssertDriverError(NeError.NotInInitState, () => vm.AddVcpu(4));
        AssertDriverError(NeError.NotInInitState, () => vm.AddVcpu(0));
        AssertDriverError(NeError.NotInInitState, () => vm.GetImageLoadInfo(NitroEnclaves.EifImageFlag));
        AssertDriverError(NeError.NotInInitState, () => vm.SetUserMemoryRegion(0, TwoMiB, another));
        AssertDriverError(NeError.NotInInitState, () => vm.StartEnclave(0, 0));
        Assert.Equal([2, 3], vm.Vcpus);
    }

    [Theory]
    [InlineData(8u)]    // the parent has CPUs 0-7 (SimulatorConfig.Cpus)
    [InlineData(1000u)]
    public void AddVcpu_IdBeyondTheParentsCpus_InvalidVcpu(uint cpu)
    {
        SimulatedEnclaveVm vm = NewVm();

        AssertDriverError(NeError.InvalidVcpu, () => vm.AddVcpu(cpu));
        Assert.Empty(vm.Vcpus);
    }

    [Theory]
    [InlineData(1u)] // CPU 0's sibling: never in the pool
    [InlineData(6u)] // exists, but outside this pool (2-5)
    public void AddVcpu_CpuNotInThePool_VcpuNotInCpuPool(uint cpu)
    {
        SimulatedEnclaveVm vm = NewVm(Simulator(new SimulatorConfig { CpuPool = "2-5" }));

        AssertDriverError(NeError.VcpuNotInCpuPool, () => vm.AddVcpu(cpu));
        Assert.Empty(vm.Vcpus);
    }

    [Fact]
    public void AddVcpu_SameCpuTwice_VcpuAlreadyUsed()
    {
        SimulatedEnclaveVm vm = NewVm();
        vm.AddVcpu(2);

        AssertDriverError(NeError.VcpuAlreadyUsed, () => vm.AddVcpu(2));
        Assert.Equal([2], vm.Vcpus);
    }

    [Fact]
    public void AddVcpu_CoreHeldByAnotherSlot_VcpuNotInCpuPool()
    {
        SimulatedEnclaveVm holder = NewVm();
        SimulatedEnclaveVm other = NewVm();
        holder.AddVcpu(2); // claims core 1: CPUs 2 and 3

        AssertDriverError(NeError.VcpuNotInCpuPool, () => other.AddVcpu(3));
        AssertDriverError(NeError.VcpuNotInCpuPool, () => other.AddVcpu(2));
        Assert.Equal(4u, other.AddVcpu(4)); // another core is free
    }

    [Fact]
    public void CreateVm_PoolUsedUp_NoCpusAvailableInPool()
    {
        SimulatedNitro sim = Simulator(new SimulatorConfig { CpuPool = "2-3" }); // one core
        SimulatedEnclaveVm holder = NewVm(sim);
        holder.AddVcpu(0);

        var ex = AssertDriverError(NeError.NoCpusAvailableInPool, () => sim.Platform.OpenDevice().CreateVm());
        Assert.Contains("NE_CREATE_VM", ex.Message);
        Assert.Single(sim.Device.OpenEnclaves);
    }

    [Fact]
    public void AddVcpuZero_PoolUsedUp_NoCpusAvailableInPool()
    {
        SimulatedNitro sim = Simulator(new SimulatorConfig { CpuPool = "2-5" }); // cores 1 and 2
        SimulatedEnclaveVm first = NewVm(sim);
        SimulatedEnclaveVm second = NewVm(sim);
        first.AddVcpu(2);
        first.AddVcpu(4);

        // Another slot holds every core.
        AssertDriverError(NeError.NoCpusAvailableInPool, () => second.AddVcpu(0));

        // The holder itself: auto-picking fills its two cores, then there is nothing left.
        Assert.Equal(3u, first.AddVcpu(0));
        Assert.Equal(5u, first.AddVcpu(0));
        AssertDriverError(NeError.NoCpusAvailableInPool, () => first.AddVcpu(0));
    }

    [Theory]
    [InlineData(1UL)]           // VMADDR_CID_LOCAL
    [InlineData(2UL)]           // VMADDR_CID_HOST
    [InlineData(3UL)]           // NE_PARENT_VM_CID
    [InlineData(4294967295UL)]  // U32_MAX
    [InlineData(4294967296UL)]  // > U32_MAX
    public void StartEnclave_ReservedCid_InvalidEnclaveCid(ulong cid)
    {
        HugePages.Require(MinimumPages);
        SimulatedEnclaveVm vm = ReadyVm();

        AssertDriverError(NeError.InvalidEnclaveCid, () => vm.StartEnclave(0, cid));

        // Nothing else was wrong: with CID 4, the first valid one, the same enclave starts.
        Assert.Equal(4UL, vm.StartEnclave(0, 4));
    }

    [Fact]
    public void AddVcpuZero_AfterOneCpu_FillsThatCoreBeforeTakingANewOne()
    {
        SimulatedEnclaveVm vm = NewVm();

        uint[] picked = [vm.AddVcpu(0), vm.AddVcpu(0), vm.AddVcpu(0), vm.AddVcpu(0)];

        Assert.Equal([2u, 3u, 4u, 5u], picked);
    }

    [Fact]
    public void AddVcpuZero_AfterAnExplicitCpu_PicksItsSibling()
    {
        SimulatedEnclaveVm vm = NewVm();
        vm.AddVcpu(5); // claims core 2 (CPUs 4 and 5)

        Assert.Equal(4u, vm.AddVcpu(0));
        Assert.Equal(2u, vm.AddVcpu(0)); // then the first free core
    }

    [Fact]
    public void StartEnclave_TwoLiveEnclavesWithAutomaticCids_Get16Then17()
    {
        HugePages.Require(2 * MinimumPages);
        SimulatedEnclaveVm first = ReadyVm();
        SimulatedEnclaveVm second = ReadyVm(cpus: [4, 5]);

        // Observed automatic CIDs (launch.md §1.3: nitro-cli #243, #602).
        Assert.Equal(16UL, first.StartEnclave(0, 0));
        Assert.Equal(17UL, second.StartEnclave(0, 0));
        Assert.Equal(17UL, second.Cid);
    }

    [Fact]
    public void Dispose_StartedSlot_FreesItsCoresAndCid()
    {
        HugePages.Require(2 * MinimumPages);
        SimulatedNitro sim = Simulator(new SimulatorConfig { CpuPool = "2-3" }); // one core, so the next slot needs the same one
        SimulatedEnclaveVm first = ReadyVm(sim);
        Assert.Equal(16UL, first.StartEnclave(0, 0));

        first.Dispose();

        Assert.Empty(sim.Device.OpenEnclaves);
        SimulatedEnclaveVm second = NewVm(sim); // CREATE_VM would fail with NE_ERR_NO_CPUS_AVAIL_IN_POOL if the core were still held
        Assert.Equal(2u, second.AddVcpu(0));
        Assert.Equal(3u, second.AddVcpu(0));
        DonateMinimum(second);
        Assert.Equal(16UL, second.StartEnclave(0, 0));
    }

    [Fact]
    public void Dispose_RightAfterADebugStart_LeavesNoConsoleSocket()
    {
        // The hypervisor thread opens the debug console's listener (CID 0, port CID + 10000) as it starts; a slot
        // closed at that very moment must still close it, or the next debug enclave with that CID cannot serve one.
        HugePages.Require(MinimumPages);
        Mapping memory = HugeMapping(MinimumPages);
        for (int attempt = 0; attempt < 10; attempt++)
        {
            SimulatedEnclaveVm vm = NewVm();
            vm.SetUserMemoryRegion(0, memory.Size, memory.Address);
            vm.AddVcpu(2);
            vm.AddVcpu(3);
            vm.StartEnclave(NitroEnclaves.DebugModeFlag, 0);

            vm.Dispose();

            Assert.Empty(Directory.GetFileSystemEntries(_sim.VsockFolder));
        }
    }

    [Fact]
    public void Ioctls_AfterDispose_Ebadf()
    {
        HugePages.Require(1);
        SimulatedEnclaveVm vm = NewVm();
        nint page = HugePage();

        vm.Dispose();

        Assert.Equal(Libc.EBADF, Assert.Throws<EnclaveException>(() => vm.AddVcpu(2)).Errno);
        Assert.Equal(Libc.EBADF, Assert.Throws<EnclaveException>(() => vm.GetImageLoadInfo(NitroEnclaves.EifImageFlag)).Errno);
        Assert.Equal(Libc.EBADF, Assert.Throws<EnclaveException>(() => vm.SetUserMemoryRegion(0, TwoMiB, page)).Errno);
        Assert.Equal(Libc.EBADF, Assert.Throws<EnclaveException>(() => vm.StartEnclave(0, 0)).Errno);
        Assert.Equal(Libc.EBADF, Assert.Throws<EnclaveException>(() => vm.WaitForEvent(TimeSpan.Zero)).Errno);
        Assert.Empty(_sim.Device.OpenEnclaves);
    }

    private static EnclaveException AssertDriverError(NeError expected, Action ioctl)
    {
        var ex = Assert.Throws<EnclaveException>(ioctl);
        Assert.Equal(LaunchError.IoctlFailure, ex.Error);
        Assert.Equal((int)expected, ex.Errno);
        Assert.Equal(expected, ex.DriverError);
        Assert.Contains(NeErrors.Message(expected), ex.Message);
        return ex;
    }

    private SimulatedNitro Simulator(SimulatorConfig config) => _scratch.Simulator(config);

    private SimulatedEnclaveVm NewVm(SimulatedNitro? sim = null)
    {
        IEnclaveVm vm = (sim ?? _sim).Platform.OpenDevice().CreateVm();
        _vms.Add(vm);
        return Assert.IsType<SimulatedEnclaveVm>(vm);
    }

    // A slot with 64 MiB of hugepages and one whole core: everything START needs.
    private SimulatedEnclaveVm ReadyVm(SimulatedNitro? sim = null, uint[]? cpus = null)
    {
        SimulatedEnclaveVm vm = NewVm(sim);
        DonateMinimum(vm);
        foreach (uint cpu in cpus ?? [2, 3])
            vm.AddVcpu(cpu);
        return vm;
    }

    private void DonateMinimum(SimulatedEnclaveVm vm)
    {
        Mapping memory = HugeMapping(MinimumPages);
        vm.SetUserMemoryRegion(0, memory.Size, memory.Address);
    }

    private nint HugePage()
    {
        nint page = HugeTlbMapper.Instance.Map(TwoMiB);
        Assert.NotEqual(0, page);
        _pages.Add(page);
        return page;
    }

    private Mapping HugeMapping(int pages)
    {
        var mapping = Mapping.HugePages(pages);
        _mappings.Add(mapping);
        return mapping;
    }
}

namespace Launcher;

/// <summary>
/// The driver's own errno values (<c>NE_ERR_*</c>, include/uapi/linux/nitro_enclaves.h), 256 to 275.
/// </summary>
public enum NeError
{
    /// <summary>The vCPU is already used by this enclave.</summary>
    VcpuAlreadyUsed = 256,

    /// <summary>The CPU is not in the pool, or its core belongs to another enclave.</summary>
    VcpuNotInCpuPool = 257,

    /// <summary>The core id is out of range.</summary>
    VcpuInvalidCpuCore = 258,

    /// <summary>The region size is not a multiple of 2 MiB.</summary>
    InvalidMemRegionSize = 259,

    /// <summary>The region's address range is not accessible.</summary>
    InvalidMemRegionAddr = 260,

    /// <summary>The region's address is not 2 MiB aligned.</summary>
    UnalignedMemRegionAddr = 261,

    /// <summary>The region overlaps one already added.</summary>
    MemRegionAlreadyUsed = 262,

    /// <summary>A page of the region is not a hugetlbfs page.</summary>
    MemNotHugePage = 263,

    /// <summary>A page is on another NUMA node than the CPU pool.</summary>
    MemDifferentNumaNode = 264,

    /// <summary>Too many physically contiguous ranges for the slot.</summary>
    MemMaxRegions = 265,

    /// <summary>START without memory.</summary>
    NoMemRegionsAdded = 266,

    /// <summary>START without vCPUs.</summary>
    NoVcpusAdded = 267,

    /// <summary>START with less than 64 MiB.</summary>
    EnclaveMemMinSize = 268,

    /// <summary>START with a core only partly added.</summary>
    FullCoresNotUsed = 269,

    /// <summary>The enclave has already started.</summary>
    NotInInitState = 270,

    /// <summary>The vCPU id is beyond the parent's CPUs.</summary>
    InvalidVcpu = 271,

    /// <summary>The CPU pool is empty or used up.</summary>
    NoCpusAvailableInPool = 272,

    /// <summary>The backing page size is not a multiple of 2 MiB.</summary>
    InvalidPageSize = 273,

    /// <summary>An ioctl's flags are invalid.</summary>
    InvalidFlagValue = 274,

    /// <summary>The enclave CID is 1, 2, 3, U32_MAX or above.</summary>
    InvalidEnclaveCid = 275,
}

/// <summary>Names and nitro-cli's sentences for <see cref="NeError"/> (nitro-cli <c>resource_manager.rs</c> <c>do_ioctl</c>).</summary>
public static class NeErrors
{
    /// <summary><c>NE_ERR_VCPU_ALREADY_USED</c>, the first driver-specific errno.</summary>
    public const int First = 256;

    /// <summary><c>NE_ERR_INVALID_ENCLAVE_CID</c>, the last.</summary>
    public const int Last = 275;

    /// <summary>The errno as an <see cref="NeError"/>, or null for a standard errno.</summary>
    public static NeError? FromErrno(int errno) => errno is >= First and <= Last ? (NeError)errno : null;

    /// <summary>The uapi macro name, e.g. <c>NE_ERR_FULL_CORES_NOT_USED</c>.</summary>
    public static string MacroName(NeError error) => error switch
    {
        NeError.VcpuAlreadyUsed => "NE_ERR_VCPU_ALREADY_USED",
        NeError.VcpuNotInCpuPool => "NE_ERR_VCPU_NOT_IN_CPU_POOL",
        NeError.VcpuInvalidCpuCore => "NE_ERR_VCPU_INVALID_CPU_CORE",
        NeError.InvalidMemRegionSize => "NE_ERR_INVALID_MEM_REGION_SIZE",
        NeError.InvalidMemRegionAddr => "NE_ERR_INVALID_MEM_REGION_ADDR",
        NeError.UnalignedMemRegionAddr => "NE_ERR_UNALIGNED_MEM_REGION_ADDR",
        NeError.MemRegionAlreadyUsed => "NE_ERR_MEM_REGION_ALREADY_USED",
        NeError.MemNotHugePage => "NE_ERR_MEM_NOT_HUGE_PAGE",
        NeError.MemDifferentNumaNode => "NE_ERR_MEM_DIFFERENT_NUMA_NODE",
        NeError.MemMaxRegions => "NE_ERR_MEM_MAX_REGIONS",
        NeError.NoMemRegionsAdded => "NE_ERR_NO_MEM_REGIONS_ADDED",
        NeError.NoVcpusAdded => "NE_ERR_NO_VCPUS_ADDED",
        NeError.EnclaveMemMinSize => "NE_ERR_ENCLAVE_MEM_MIN_SIZE",
        NeError.FullCoresNotUsed => "NE_ERR_FULL_CORES_NOT_USED",
        NeError.NotInInitState => "NE_ERR_NOT_IN_INIT_STATE",
        NeError.InvalidVcpu => "NE_ERR_INVALID_VCPU",
        NeError.NoCpusAvailableInPool => "NE_ERR_NO_CPUS_AVAIL_IN_POOL",
        NeError.InvalidPageSize => "NE_ERR_INVALID_PAGE_SIZE",
        NeError.InvalidFlagValue => "NE_ERR_INVALID_FLAG_VALUE",
        NeError.InvalidEnclaveCid => "NE_ERR_INVALID_ENCLAVE_CID",
        _ => throw new ArgumentOutOfRangeException(nameof(error)),
    };

    /// <summary>The sentence nitro-cli prints for the code.</summary>
    public static string Message(NeError error) => error switch
    {
        NeError.VcpuAlreadyUsed => "The provided vCPU is already used",
        NeError.VcpuNotInCpuPool => "The provided vCPU is not available in the CPU pool",
        NeError.VcpuInvalidCpuCore => "The vCPU core ID is invalid for the CPU pool",
        NeError.InvalidMemRegionSize => "The memory region's size is not a multiple of 2 MiB",
        NeError.InvalidMemRegionAddr => "The memory region's address is invalid",
        NeError.UnalignedMemRegionAddr => "The memory region's address is not aligned",
        NeError.MemRegionAlreadyUsed => "The memory region is already used",
        NeError.MemNotHugePage => "The memory region is not backed by contiguous physical huge page(s)",
        NeError.MemDifferentNumaNode => "The memory region's pages and the CPUs belong to different NUMA nodes",
        NeError.MemMaxRegions => "The maximum number of memory regions per enclave has been reached",
        NeError.NoMemRegionsAdded => "The enclave cannot start because no memory regions have been added",
        NeError.NoVcpusAdded => "The enclave cannot start because no vCPUs have been added",
        NeError.EnclaveMemMinSize => "The enclave's memory size is lower than the minimum supported",
        NeError.FullCoresNotUsed => "The enclave cannot start because full CPU cores have not been set",
        NeError.NotInInitState => "The enclave is in an incorrect state to set resources or start",
        NeError.InvalidVcpu => "The provided vCPU is out of range of the available CPUs",
        NeError.NoCpusAvailableInPool => "The enclave cannot be created because no CPUs are available in the pool",
        NeError.InvalidPageSize => "The memory region is not backed by page(s) multiple of 2 MiB",
        NeError.InvalidFlagValue => "The provided flags value in the ioctl arg data structure is invalid",
        NeError.InvalidEnclaveCid => "The provided enclave CID is invalid, being a well-known CID or the parent VM CID",
        _ => throw new ArgumentOutOfRangeException(nameof(error)),
    };

    /// <summary>
    /// What a failed ioctl's errno means: nitro-cli's sentence and the macro name for 256–275, else the C library's
    /// text and the errno (nitro-cli: "An error has occurred: …").
    /// </summary>
    public static string Describe(int errno) => FromErrno(errno) is { } error
        ? $"{Message(error)} ({MacroName(error)}, errno {errno})"
        : $"{System.Runtime.InteropServices.Marshal.GetPInvokeErrorMessage(errno)} (errno {errno})";
}

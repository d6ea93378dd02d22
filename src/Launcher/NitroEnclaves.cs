namespace Launcher;

/// <summary>
/// Constants of the Nitro Enclaves interface, each with its source: the uapi header
/// (<c>include/uapi/linux/nitro_enclaves.h</c>), the driver (<c>drivers/virt/nitro_enclaves/ne_misc_dev.c</c>) and
/// nitro-cli 1.5.0 (<c>eif_loader/src/lib.rs</c>, <c>src/enclave_proc/utils.rs</c>).
/// </summary>
public static class NitroEnclaves
{
    /// <summary>The misc device (driver <c>NE_DEV_NAME</c>).</summary>
    public const string DevicePath = "/dev/nitro_enclaves";

    /// <summary>The CPU pool, a kernel cpu-list string (driver module parameter <c>ne_cpus</c>).</summary>
    public const string CpuPoolParameterPath = "/sys/module/nitro_enclaves/parameters/ne_cpus";

    /// <summary><c>NE_EIF_IMAGE</c>: the only accepted <c>ne_image_load_info.flags</c>.</summary>
    public const ulong EifImageFlag = 0x1;

    /// <summary><c>NE_IMAGE_LOAD_MAX_FLAG_VAL</c>: image load flags must be below it (and not 0).</summary>
    public const ulong ImageLoadMaxFlag = 0x2;

    /// <summary><c>NE_DEFAULT_MEMORY_REGION</c>: the only accepted memory region flags.</summary>
    public const ulong DefaultMemoryRegionFlag = 0x0;

    /// <summary><c>NE_MEMORY_REGION_MAX_FLAG_VAL</c>.</summary>
    public const ulong MemoryRegionMaxFlag = 0x1;

    /// <summary><c>NE_ENCLAVE_PRODUCTION_MODE</c>.</summary>
    public const ulong ProductionModeFlag = 0x0;

    /// <summary><c>NE_ENCLAVE_DEBUG_MODE</c>: console output is available; attestation PCRs are zero.</summary>
    public const ulong DebugModeFlag = 0x1;

    /// <summary><c>NE_ENCLAVE_START_MAX_FLAG_VAL</c>.</summary>
    public const ulong StartMaxFlag = 0x2;

    /// <summary><c>NE_EIF_LOAD_OFFSET</c> (driver): the EIF's place in enclave memory, 8 MiB.</summary>
    public const ulong EifLoadOffset = 8UL << 20;

    /// <summary><c>NE_MIN_ENCLAVE_MEM_SIZE</c> (driver): the least memory an enclave starts with, 64 MiB.</summary>
    public const ulong MinimumMemory = 64UL << 20;

    /// <summary><c>NE_MIN_MEM_REGION_SIZE</c> (driver): region sizes and addresses are multiples of 2 MiB.</summary>
    public const ulong MemoryRegionGranule = 2UL << 20;

    /// <summary><c>NE_PARENT_VM_CID</c> (driver) = <c>VMADDR_CID_PARENT</c>: the parent instance, never an enclave's CID.</summary>
    public const uint ParentCid = 3;

    /// <summary><c>VMADDR_CID_HOST</c> (linux/vm_sockets.h); the driver rejects enclave CIDs up to it.</summary>
    public const uint HostCid = 2;

    /// <summary><c>VMADDR_CID_HYPERVISOR</c>: the console is served from here.</summary>
    public const uint HypervisorCid = 0;

    /// <summary><c>ENCLAVE_READY_VSOCK_PORT</c> (nitro-cli <c>eif_loader</c>; the init connects here).</summary>
    public const uint HeartbeatPort = 9000;

    /// <summary><c>HEART_BEAT</c>: the byte the init sends and the parent echoes.</summary>
    public const byte HeartbeatByte = 0xB7;

    /// <summary><c>CID_TO_CONSOLE_PORT_OFFSET</c> (nitro-cli <c>src/enclave_proc/utils.rs</c>): console port = CID + 10000.</summary>
    public const uint ConsolePortOffset = 10000;

    /// <summary>
    /// True for an enclave CID the driver refuses with <c>NE_ERR_INVALID_ENCLAVE_CID</c> (driver
    /// <c>ne_start_enclave_ioctl</c>): 1, 2 (<c>≤ VMADDR_CID_HOST</c>), 3 (the parent), <c>U32_MAX</c> and anything
    /// above. 0 is valid: it asks for an automatic CID.
    /// </summary>
    public static bool IsInvalidEnclaveCid(ulong cid) =>
        cid is > 0 and <= HostCid || cid == ParentCid || cid >= uint.MaxValue;
}

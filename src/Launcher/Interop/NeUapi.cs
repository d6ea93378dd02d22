using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Launcher.Interop;

// Mirrors of include/uapi/linux/nitro_enclaves.h (torvalds/linux; the same file ships in aws-nitro-enclaves-cli
// include/uapi/linux/nitro_enclaves.h). Every field is __u64, naturally aligned, no padding; a test pins the sizes.

/// <summary><c>struct ne_image_load_info</c> (16 bytes): in <c>flags</c>, out <c>memory_offset</c>.</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct NeImageLoadInfo
{
    internal ulong Flags;         // NE_EIF_IMAGE
    internal ulong MemoryOffset;  // where the EIF must be in enclave memory
}

/// <summary><c>struct ne_user_memory_region</c> (24 bytes), all in.</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct NeUserMemoryRegion
{
    internal ulong Flags;          // NE_DEFAULT_MEMORY_REGION
    internal ulong MemorySize;     // bytes, a multiple of 2 MiB
    internal ulong UserspaceAddr;  // 2 MiB aligned, hugetlbfs-backed
}

/// <summary><c>struct ne_enclave_start_info</c> (16 bytes): in <c>flags</c>, in/out <c>enclave_cid</c>.</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct NeEnclaveStartInfo
{
    internal ulong Flags;       // NE_ENCLAVE_PRODUCTION_MODE or NE_ENCLAVE_DEBUG_MODE
    internal ulong EnclaveCid;  // 0: the hypervisor picks one and the driver writes it back
}

/// <summary>The five ioctls of <c>nitro_enclaves.h</c>, derived from <c>_IOR</c>/<c>_IOW</c>/<c>_IOWR</c> and the mirror structs.</summary>
internal static class NeIoctl
{
    /// <summary><c>NE_MAGIC</c>.</summary>
    private const byte Magic = 0xAE;

    /// <summary><c>NE_CREATE_VM _IOR(NE_MAGIC, 0x20, __u64)</c>, on the device fd; returns the enclave fd, writes the slot uid.</summary>
    internal static readonly uint CreateVm = Ioc.Read(Magic, 0x20, sizeof(ulong));

    /// <summary><c>NE_ADD_VCPU _IOWR(NE_MAGIC, 0x21, __u32)</c>: in/out vCPU id (0 = the driver picks).</summary>
    internal static readonly uint AddVcpu = Ioc.ReadWrite(Magic, 0x21, sizeof(uint));

    /// <summary><c>NE_GET_IMAGE_LOAD_INFO _IOWR(NE_MAGIC, 0x22, struct ne_image_load_info)</c>.</summary>
    internal static readonly uint GetImageLoadInfo = Ioc.ReadWrite(Magic, 0x22, Unsafe.SizeOf<NeImageLoadInfo>());

    /// <summary><c>NE_SET_USER_MEMORY_REGION _IOW(NE_MAGIC, 0x23, struct ne_user_memory_region)</c>.</summary>
    internal static readonly uint SetUserMemoryRegion = Ioc.Write(Magic, 0x23, Unsafe.SizeOf<NeUserMemoryRegion>());

    /// <summary><c>NE_START_ENCLAVE _IOWR(NE_MAGIC, 0x24, struct ne_enclave_start_info)</c>.</summary>
    internal static readonly uint StartEnclave = Ioc.ReadWrite(Magic, 0x24, Unsafe.SizeOf<NeEnclaveStartInfo>());
}

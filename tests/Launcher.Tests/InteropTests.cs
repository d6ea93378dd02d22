using System.IO.Pipes;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Launcher.Driver;
using Launcher.Interop;

namespace Launcher.Tests;

/// <summary>
/// The ioctl layer: derived numbers, UAPI mirror sizes, and every error path through the real P/Invoke calls with a
/// descriptor that is not open (EBADF) or not the device (ENOTTY). No Nitro hardware is needed (STYLE.md §1.4, rule 11).
/// </summary>
public sealed class InteropTests
{
    // A descriptor number far above anything this process opens; the tests check that it is really closed.
    private const int ClosedFd = 987654;

    // errno.h (asm-generic/errno-base.h)
    private const int ENOENT = 2;
    private const int EBADF = 9;
    private const int EACCES = 13;
    private const int EISDIR = 21;
    private const int ENOTTY = 25;

    // --- ioctl numbers ------------------------------------------------------------------------------------------

    [Fact]
    public void NeIoctl_CreateVm_IsTheUapiNumber()
    {
        // source: include/uapi/linux/nitro_enclaves.h NE_CREATE_VM _IOR(0xAE, 0x20, __u64); spec/launch.md §1.2
        Assert.Equal(0x8008AE20u, NeIoctl.CreateVm);
    }

    [Fact]
    public void NeIoctl_AddVcpu_IsTheUapiNumber()
    {
        // source: nitro_enclaves.h NE_ADD_VCPU _IOWR(0xAE, 0x21, __u32); spec/launch.md §1.2
        Assert.Equal(0xC004AE21u, NeIoctl.AddVcpu);
    }

    [Fact]
    public void NeIoctl_GetImageLoadInfo_IsTheUapiNumber()
    {
        // source: nitro_enclaves.h NE_GET_IMAGE_LOAD_INFO _IOWR(0xAE, 0x22, struct ne_image_load_info); spec/launch.md §1.2
        Assert.Equal(0xC010AE22u, NeIoctl.GetImageLoadInfo);
    }

    [Fact]
    public void NeIoctl_SetUserMemoryRegion_IsTheUapiNumber()
    {
        // source: nitro_enclaves.h NE_SET_USER_MEMORY_REGION _IOW(0xAE, 0x23, struct ne_user_memory_region); spec/launch.md §1.2
        Assert.Equal(0x4018AE23u, NeIoctl.SetUserMemoryRegion);
    }

    [Fact]
    public void NeIoctl_StartEnclave_IsTheUapiNumber()
    {
        // source: nitro_enclaves.h NE_START_ENCLAVE _IOWR(0xAE, 0x24, struct ne_enclave_start_info); spec/launch.md §1.2
        Assert.Equal(0xC010AE24u, NeIoctl.StartEnclave);
    }

    [Theory]
    // source: linux/kvm.h KVM_GET_API_VERSION _IO(KVMIO = 0xAE, 0x00)
    [InlineData(0xAE, 0x00, 0x0000AE00u)]
    // source: linux/kvm.h KVM_CREATE_VM _IO(KVMIO, 0x01)
    [InlineData(0xAE, 0x01, 0x0000AE01u)]
    // source: linux/vm_sockets.h IOCTL_VM_SOCKETS_GET_LOCAL_CID _IO(7, 0xb9)
    [InlineData(0x07, 0xB9, 0x000007B9u)]
    public void IocNone_KnownKernelMacros_EncodeAsTheKernelDoes(byte type, byte nr, uint expected)
    {
        Assert.Equal(expected, Ioc.None(type, nr));
    }

    [Fact]
    public void IocRead_FsIocGetFlags_EncodesAsTheKernelDoes()
    {
        // source: linux/fs.h FS_IOC_GETFLAGS _IOR('f', 1, long) = 0x80086601 on 64-bit
        Assert.Equal(0x80086601u, Ioc.Read((byte)'f', 1, sizeof(long)));
    }

    [Fact]
    public void IocWrite_KvmSetUserMemoryRegion_EncodesAsTheKernelDoes()
    {
        // source: linux/kvm.h KVM_SET_USER_MEMORY_REGION _IOW(KVMIO, 0x46, struct kvm_userspace_memory_region (32 bytes))
        Assert.Equal(0x4020AE46u, Ioc.Write(0xAE, 0x46, 32));
    }

    [Fact]
    public void IocReadWrite_SameArguments_IsTheUnionOfReadAndWrite()
    {
        // asm-generic/ioctl.h: _IOC_READ | _IOC_WRITE = 3 in the two direction bits.
        Assert.Equal(Ioc.Read(0xAE, 0x24, 16) | Ioc.Write(0xAE, 0x24, 16), Ioc.ReadWrite(0xAE, 0x24, 16));
        Assert.Equal(3u, Ioc.ReadWrite(0xAE, 0x24, 16) >> 30);
    }

    [Fact]
    public void IocRead_LargestSize_FillsTheFourteenSizeBits()
    {
        // asm-generic/ioctl.h: _IOC_SIZEBITS = 14, so 16383 is the largest size; _IOC_READ = 2 << 30.
        Assert.Equal(0xBFFF0000u, Ioc.Read(0, 0, (1 << 14) - 1));
    }

    [Theory]
    [InlineData(1 << 14)]      // one past _IOC_SIZEBITS (asm-generic/ioctl.h _IOC_TYPECHECK)
    [InlineData(int.MaxValue)]
    [InlineData(-1)]
    public void IocEncode_SizeOutOfRange_Throws(int size)
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => Ioc.Read(0xAE, 0x20, size));
        Assert.Throws<ArgumentOutOfRangeException>(() => Ioc.Write(0xAE, 0x20, size));
        Assert.Throws<ArgumentOutOfRangeException>(() => Ioc.ReadWrite(0xAE, 0x20, size));
    }

    // --- struct layouts -----------------------------------------------------------------------------------------

    [Fact]
    public void NeImageLoadInfo_Layout_MatchesTheUapi()
    {
        // source: nitro_enclaves.h struct ne_image_load_info { __u64 flags; __u64 memory_offset; }; spec/launch.md §1.3
        Assert.Equal(16, Unsafe.SizeOf<NeImageLoadInfo>());
        Assert.Equal(16, Marshal.SizeOf<NeImageLoadInfo>());
        Assert.Equal(0, Marshal.OffsetOf<NeImageLoadInfo>(nameof(NeImageLoadInfo.Flags)).ToInt32());
        Assert.Equal(8, Marshal.OffsetOf<NeImageLoadInfo>(nameof(NeImageLoadInfo.MemoryOffset)).ToInt32());
    }

    [Fact]
    public void NeUserMemoryRegion_Layout_MatchesTheUapi()
    {
        // source: nitro_enclaves.h struct ne_user_memory_region { __u64 flags; __u64 memory_size; __u64 userspace_addr; }
        Assert.Equal(24, Unsafe.SizeOf<NeUserMemoryRegion>());
        Assert.Equal(24, Marshal.SizeOf<NeUserMemoryRegion>());
        Assert.Equal(0, Marshal.OffsetOf<NeUserMemoryRegion>(nameof(NeUserMemoryRegion.Flags)).ToInt32());
        Assert.Equal(8, Marshal.OffsetOf<NeUserMemoryRegion>(nameof(NeUserMemoryRegion.MemorySize)).ToInt32());
        Assert.Equal(16, Marshal.OffsetOf<NeUserMemoryRegion>(nameof(NeUserMemoryRegion.UserspaceAddr)).ToInt32());
    }

    [Fact]
    public void NeEnclaveStartInfo_Layout_MatchesTheUapi()
    {
        // source: nitro_enclaves.h struct ne_enclave_start_info { __u64 flags; __u64 enclave_cid; }
        Assert.Equal(16, Unsafe.SizeOf<NeEnclaveStartInfo>());
        Assert.Equal(16, Marshal.SizeOf<NeEnclaveStartInfo>());
        Assert.Equal(0, Marshal.OffsetOf<NeEnclaveStartInfo>(nameof(NeEnclaveStartInfo.Flags)).ToInt32());
        Assert.Equal(8, Marshal.OffsetOf<NeEnclaveStartInfo>(nameof(NeEnclaveStartInfo.EnclaveCid)).ToInt32());
    }

    [Fact]
    public void SockaddrVm_Layout_MatchesTheUapi()
    {
        // source: linux/vm_sockets.h struct sockaddr_vm: family @0, reserved1 @2, port @4, cid @8, flags @12,
        // zero[3] @13, 16 bytes; spec/launch.md §2.5
        Assert.Equal(16, Unsafe.SizeOf<SockaddrVm>());
        Assert.Equal(16, Marshal.SizeOf<SockaddrVm>());
        Assert.Equal(0, Marshal.OffsetOf<SockaddrVm>(nameof(SockaddrVm.Family)).ToInt32());
        Assert.Equal(2, Marshal.OffsetOf<SockaddrVm>(nameof(SockaddrVm.Reserved1)).ToInt32());
        Assert.Equal(4, Marshal.OffsetOf<SockaddrVm>(nameof(SockaddrVm.Port)).ToInt32());
        Assert.Equal(8, Marshal.OffsetOf<SockaddrVm>(nameof(SockaddrVm.Cid)).ToInt32());
        Assert.Equal(12, Marshal.OffsetOf<SockaddrVm>(nameof(SockaddrVm.Flags)).ToInt32());
        Assert.Equal(13, Marshal.OffsetOf<SockaddrVm>(nameof(SockaddrVm.Zero0)).ToInt32());
        Assert.Equal(15, Marshal.OffsetOf<SockaddrVm>(nameof(SockaddrVm.Zero2)).ToInt32());
    }

    [Fact]
    public void SockaddrVmOf_CidAndPort_SetsFamilyAfVsockAndZeroesTheRest()
    {
        // source: linux/socket.h AF_VSOCK = 40
        SockaddrVm address = SockaddrVm.Of(3, 9000);
        Assert.Equal((ushort)40, address.Family);
        Assert.Equal(3u, address.Cid);
        Assert.Equal(9000u, address.Port);
        Assert.Equal(0, address.Reserved1 | address.Flags | address.Zero0 | address.Zero1 | address.Zero2);
    }

    [Fact]
    public void PollFdAndTimeVal_Layout_MatchTheCLibrary()
    {
        // source: poll.h struct pollfd { int fd; short events; short revents; } (8 bytes);
        // bits/types/struct_timeval.h on 64-bit Linux: two 8-byte longs (16 bytes)
        Assert.Equal(8, Marshal.SizeOf<Libc.PollFd>());
        Assert.Equal(4, Marshal.OffsetOf<Libc.PollFd>(nameof(Libc.PollFd.Events)).ToInt32());
        Assert.Equal(6, Marshal.OffsetOf<Libc.PollFd>(nameof(Libc.PollFd.Revents)).ToInt32());
        Assert.Equal(16, Marshal.SizeOf<Libc.TimeVal>());
    }

    // --- error paths through the real P/Invoke layer: a descriptor that is not open (EBADF) ----------------------

    [Fact]
    public void CreateVm_ClosedDescriptor_ThrowsIoctlFailureWithEbadf()
    {
        using var device = new NitroEnclavesDevice(ClosedDescriptor());
        EnclaveException ex = Assert.Throws<EnclaveException>(() => device.CreateVm());
        AssertIoctlFailure(ex, EBADF, "NE_CREATE_VM");
    }

    [Fact]
    public void AddVcpu_ClosedDescriptor_ThrowsIoctlFailureWithEbadfNamingTheCpu()
    {
        using var enclave = new NitroEnclave(ClosedDescriptor(), slotUid: 0);
        EnclaveException ex = Assert.Throws<EnclaveException>(() => enclave.AddVcpu(5));
        AssertIoctlFailure(ex, EBADF, "NE_ADD_VCPU(5)");
    }

    [Fact]
    public void GetImageLoadInfo_ClosedDescriptor_ThrowsIoctlFailureWithEbadf()
    {
        using var enclave = new NitroEnclave(ClosedDescriptor(), slotUid: 0);
        EnclaveException ex = Assert.Throws<EnclaveException>(() => enclave.GetImageLoadInfo(NitroEnclaves.EifImageFlag));
        AssertIoctlFailure(ex, EBADF, "NE_GET_IMAGE_LOAD_INFO");
    }

    [Fact]
    public void SetUserMemoryRegion_ClosedDescriptor_ThrowsIoctlFailureWithEbadfNamingTheRegion()
    {
        using var enclave = new NitroEnclave(ClosedDescriptor(), slotUid: 0);
        EnclaveException ex = Assert.Throws<EnclaveException>(
            () => enclave.SetUserMemoryRegion(NitroEnclaves.DefaultMemoryRegionFlag, 2UL << 20, 0x40000000));
        AssertIoctlFailure(ex, EBADF, "NE_SET_USER_MEMORY_REGION(0x40000000, 2097152 bytes)");
    }

    [Fact]
    public void StartEnclave_ClosedDescriptor_ThrowsIoctlFailureWithEbadf()
    {
        using var enclave = new NitroEnclave(ClosedDescriptor(), slotUid: 0);
        EnclaveException ex = Assert.Throws<EnclaveException>(() => enclave.StartEnclave(NitroEnclaves.DebugModeFlag, 0));
        AssertIoctlFailure(ex, EBADF, "NE_START_ENCLAVE");
    }

    [Fact]
    public void WaitForEvent_ClosedDescriptor_ThrowsEnclaveEventWaitError()
    {
        // poll(2) reports POLLNVAL for a descriptor that is not open.
        using var enclave = new NitroEnclave(ClosedDescriptor(), slotUid: 0);
        EnclaveException ex = Assert.Throws<EnclaveException>(() => enclave.WaitForEvent(TimeSpan.FromMilliseconds(50)));
        Assert.Equal(LaunchError.EnclaveEventWaitError, ex.Error);
        Assert.Equal(EBADF, ex.Errno);
    }

    [Fact]
    public void SlotUid_Constructed_IsKept()
    {
        using var enclave = new NitroEnclave(ClosedDescriptor(), slotUid: 0x1234_5678_9ABC);
        Assert.Equal(0x1234_5678_9ABCUL, enclave.SlotUid);
    }

    // --- a real descriptor that is not the device (ENOTTY) ------------------------------------------------------

    [Fact]
    public void AddVcpu_DescriptorThatIsNotTheDevice_ThrowsIoctlFailureWithEnotty()
    {
        using var enclave = new NitroEnclave(OpenDevNull(), slotUid: 0);
        EnclaveException ex = Assert.Throws<EnclaveException>(() => enclave.AddVcpu(0));
        AssertIoctlFailure(ex, ENOTTY, "NE_ADD_VCPU(0)");
    }

    [Fact]
    public void AllEnclaveIoctls_DescriptorThatIsNotTheDevice_ThrowEnotty()
    {
        using var enclave = new NitroEnclave(OpenDevNull(), slotUid: 0);
        Assert.Equal(ENOTTY, Assert.Throws<EnclaveException>(() => enclave.GetImageLoadInfo(NitroEnclaves.EifImageFlag)).Errno);
        Assert.Equal(ENOTTY, Assert.Throws<EnclaveException>(() => enclave.SetUserMemoryRegion(0, 2UL << 20, 0x200000)).Errno);
        Assert.Equal(ENOTTY, Assert.Throws<EnclaveException>(() => enclave.StartEnclave(0, 0)).Errno);
    }

    [Fact]
    public void CreateVm_OpenedFileThatIsNotTheDevice_ThrowsIoctlFailureWithEnotty()
    {
        using NitroEnclavesDevice device = NitroEnclavesDevice.Open("/dev/null");
        EnclaveException ex = Assert.Throws<EnclaveException>(() => device.CreateVm());
        AssertIoctlFailure(ex, ENOTTY, "NE_CREATE_VM");
    }

    [Fact]
    public void WaitForEvent_ReadableDescriptorWithoutHangUp_ReturnsFalse()
    {
        // /dev/null is always readable (POLLIN) but never reports POLLHUP: no enclave event.
        using var enclave = new NitroEnclave(OpenDevNull(), slotUid: 0);
        Assert.False(enclave.WaitForEvent(TimeSpan.FromMilliseconds(50)));
    }

    [Fact]
    public void WaitForEvent_QuietDescriptor_ReturnsFalseAfterTheTimeout()
    {
        using var pipe = new AnonymousPipeServerStream(PipeDirection.In);
        using var enclave = new NitroEnclave(new SafeFd((int)pipe.SafePipeHandle.DangerousGetHandle(), ownsHandle: false), slotUid: 0);
        long start = Environment.TickCount64;
        Assert.False(enclave.WaitForEvent(TimeSpan.FromMilliseconds(200)));
        Assert.InRange(Environment.TickCount64 - start, 150, 10_000);
    }

    [Fact]
    public void WaitForEvent_HungUpDescriptor_ReturnsTrue()
    {
        // The driver reports an enclave's out-of-band stop as POLLHUP (spec/launch.md §1.1); a pipe whose writer is
        // gone reports the same.
        using var pipe = new AnonymousPipeServerStream(PipeDirection.In);
        pipe.DisposeLocalCopyOfClientHandle();
        using var enclave = new NitroEnclave(new SafeFd((int)pipe.SafePipeHandle.DangerousGetHandle(), ownsHandle: false), slotUid: 0);
        Assert.True(enclave.WaitForEvent(TimeSpan.FromSeconds(5)));
    }

    [Fact]
    public void WaitForEvent_AfterDispose_ThrowsEnclaveEventWaitErrorNotObjectDisposed()
    {
        // A supervisor watches the fd while terminate closes it on another thread: the watcher must get the
        // launcher's exception (which it handles), not ObjectDisposedException (which would end the process).
        var enclave = new NitroEnclave(OpenDevNull(), slotUid: 0);
        enclave.Dispose();
        EnclaveException ex = Assert.Throws<EnclaveException>(() => enclave.WaitForEvent(TimeSpan.FromMilliseconds(50)));
        Assert.Equal(LaunchError.EnclaveEventWaitError, ex.Error);
    }

    // --- opening the device -------------------------------------------------------------------------------------

    [Fact]
    public void Open_MissingDevice_ThrowsFileOperationFailureSayingTheDriverIsNotLoaded()
    {
        const string path = "/nonexistent/nitro_enclaves";
        EnclaveException ex = Assert.Throws<EnclaveException>(() => NitroEnclavesDevice.Open(path));
        Assert.Equal(LaunchError.FileOperationFailure, ex.Error); // E19 (nitro-cli document_errors.rs)
        Assert.Equal(ENOENT, ex.Errno);
        Assert.Contains(path, ex.Message);
        Assert.Contains("driver is not loaded", ex.Message);
        Assert.Contains("dnf install aws-nitro-enclaves-cli", ex.Message);
        Assert.Contains("allocator", ex.Message);
        Assert.StartsWith("[ E19 ] File operation failure. ", ex.ToCliLine());
    }

    [Fact]
    public void Open_Directory_ThrowsFileOperationFailureWithTheErrno()
    {
        // open(2) of a directory for writing fails with EISDIR.
        string folder = TestEnvironment.TemporaryFolder("dev");
        try
        {
            EnclaveException ex = Assert.Throws<EnclaveException>(() => NitroEnclavesDevice.Open(folder));
            Assert.Equal(LaunchError.FileOperationFailure, ex.Error);
            Assert.Equal(EISDIR, ex.Errno);
            Assert.Contains($"(errno {EISDIR})", ex.Message);
        }
        finally
        {
            Directory.Delete(folder);
        }
    }

    [Fact]
    public void OpenFailure_PermissionDenied_TellsHowToJoinTheNeGroup()
    {
        // Tests run as root, so EACCES cannot be provoked; the message is checked directly.
        string message = NitroEnclavesDevice.OpenFailure(NitroEnclaves.DevicePath, EACCES);
        Assert.Contains(NitroEnclaves.DevicePath, message);
        Assert.Contains("permission denied", message);
        Assert.Contains("usermod -aG ne", message);
    }

    [Fact]
    public void SafeFd_Dispose_ClosesAnOwnedDescriptor()
    {
        int fd = Libc.Open("/dev/null", Libc.O_RDONLY | Libc.O_CLOEXEC, 0);
        Assert.True(fd >= 0, $"open /dev/null: errno {Marshal.GetLastPInvokeError()}");
        var handle = new SafeFd(fd, ownsHandle: true);
        Assert.True(File.Exists($"/proc/self/fd/{fd}"));
        handle.Dispose();
        Assert.False(File.Exists($"/proc/self/fd/{fd}"));
    }

    private static SafeFd ClosedDescriptor()
    {
        Assert.False(File.Exists($"/proc/self/fd/{ClosedFd}"), $"fd {ClosedFd} is unexpectedly open");
        return new SafeFd(ClosedFd, ownsHandle: false);
    }

    private static SafeFd OpenDevNull()
    {
        int fd = Libc.Open("/dev/null", Libc.O_RDWR | Libc.O_CLOEXEC, 0);
        Assert.True(fd >= 0, $"open /dev/null: errno {Marshal.GetLastPInvokeError()}");
        return new SafeFd(fd, ownsHandle: true);
    }

    private static void AssertIoctlFailure(EnclaveException ex, int errno, string operation)
    {
        Assert.Equal(LaunchError.IoctlFailure, ex.Error); // E29: nitro-cli reports every ioctl failure so (spec/launch.md §2.2)
        Assert.Equal(errno, ex.Errno);
        Assert.Null(ex.DriverError);
        Assert.StartsWith(operation + " failed: ", ex.Message);
        Assert.Contains($"(errno {errno})", ex.Message);
    }
}

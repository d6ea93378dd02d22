using System.Runtime.InteropServices;
using Launcher.Interop;

namespace Launcher.Driver;

/// <summary>
/// <c>/dev/nitro_enclaves</c> (misc device of drivers/virt/nitro_enclaves). Owns the device fd; the enclave fds it
/// hands out live on their own (the device fd may be closed once the enclave exists).
/// </summary>
public sealed class NitroEnclavesDevice : INitroEnclavesDevice
{
    private readonly SafeFd _fd;

    internal NitroEnclavesDevice(SafeFd fd)
    {
        _fd = fd;
    }

    /// <summary>
    /// Opens the device read-write, close-on-exec. A missing device means the driver is not loaded (or, in a
    /// container, the device was not passed in): the message says how to fix either.
    /// </summary>
    /// <exception cref="EnclaveException">E19 naming the device and the reason.</exception>
    public static NitroEnclavesDevice Open(string path = NitroEnclaves.DevicePath)
    {
        int fd = Libc.Open(path, Libc.O_RDWR | Libc.O_CLOEXEC, 0);
        if (fd < 0)
        {
            int errno = Marshal.GetLastPInvokeError();
            throw new EnclaveException(LaunchError.FileOperationFailure, OpenFailure(path, errno), errno);
        }

        return new NitroEnclavesDevice(new SafeFd(fd, ownsHandle: true));
    }

    /// <summary>Why the device could not be opened and what to do (nitro-cli #644, #518, #369).</summary>
    internal static string OpenFailure(string path, int errno) => errno switch
    {
        Libc.ENOENT => $"'{path}' Open: no such device: the Nitro Enclaves driver is not loaded. {Host.HostInfo.DriverMissingAdvice}",
        13 => $"'{path}' Open: permission denied: run as root or as a member of the device's group " +
            "(nitro-cli's packages use group 'ne': usermod -aG ne $USER, then log in again)",
        _ => $"'{path}' Open: {Marshal.GetPInvokeErrorMessage(errno)} (errno {errno})",
    };

    /// <inheritdoc/>
    public IEnclaveVm CreateVm()
    {
        ulong slotUid = 0;
        int enclaveFd = Libc.Ioctl(_fd, NeIoctl.CreateVm, ref slotUid);
        if (enclaveFd < 0)
            throw EnclaveException.Ioctl("NE_CREATE_VM", Marshal.GetLastPInvokeError());
        return new NitroEnclave(new SafeFd(enclaveFd, ownsHandle: true), slotUid);
    }

    /// <inheritdoc/>
    public void Dispose() => _fd.Dispose();
}

/// <summary>An enclave fd from <c>NE_CREATE_VM</c>: closing it ends the enclave (driver <c>ne_enclave_release</c>).</summary>
public sealed class NitroEnclave : IEnclaveVm
{
    private readonly SafeFd _fd;

    internal NitroEnclave(SafeFd fd, ulong slotUid)
    {
        _fd = fd;
        SlotUid = slotUid;
    }

    /// <inheritdoc/>
    public ulong SlotUid { get; }

    /// <inheritdoc/>
    public uint AddVcpu(uint vcpuId)
    {
        if (Libc.Ioctl(_fd, NeIoctl.AddVcpu, ref vcpuId) < 0)
        {
            // errno first: the interpolated message is evaluated before a later argument (see KernelVsock.Listen).
            int errno = Marshal.GetLastPInvokeError();
            throw EnclaveException.Ioctl($"NE_ADD_VCPU({vcpuId})", errno);
        }

        return vcpuId; // the driver writes back the CPU it picked when 0 was passed
    }

    /// <inheritdoc/>
    public ulong GetImageLoadInfo(ulong flags)
    {
        var info = new NeImageLoadInfo { Flags = flags };
        if (Libc.Ioctl(_fd, NeIoctl.GetImageLoadInfo, ref info) < 0)
            throw EnclaveException.Ioctl("NE_GET_IMAGE_LOAD_INFO", Marshal.GetLastPInvokeError());
        return info.MemoryOffset;
    }

    /// <inheritdoc/>
    public void SetUserMemoryRegion(ulong flags, ulong size, nint userspaceAddress)
    {
        // The driver pins the pages behind this range (get_user_pages) until the enclave fd is released; the caller
        // keeps the mapping until after Dispose (EnclaveMemory is disposed after the enclave, as nitro-cli does).
        var region = new NeUserMemoryRegion { Flags = flags, MemorySize = size, UserspaceAddr = unchecked((ulong)userspaceAddress) };
        if (Libc.Ioctl(_fd, NeIoctl.SetUserMemoryRegion, ref region) < 0)
        {
            int errno = Marshal.GetLastPInvokeError();
            throw EnclaveException.Ioctl($"NE_SET_USER_MEMORY_REGION(0x{unchecked((ulong)userspaceAddress):x}, {size} bytes)", errno);
        }
    }

    /// <inheritdoc/>
    public ulong StartEnclave(ulong flags, ulong enclaveCid)
    {
        var info = new NeEnclaveStartInfo { Flags = flags, EnclaveCid = enclaveCid };
        if (Libc.Ioctl(_fd, NeIoctl.StartEnclave, ref info) < 0)
            throw EnclaveException.Ioctl("NE_START_ENCLAVE", Marshal.GetLastPInvokeError());
        return info.EnclaveCid;
    }

    /// <inheritdoc/>
    public bool WaitForEvent(TimeSpan timeout)
    {
        // nitro-cli watches the fd with epoll for EPOLLIN | EPOLLERR | EPOLLHUP and treats HUP as "the enclave is
        // gone" (src/enclave_proc/mod.rs try_handle_enclave_event); the driver's poll reports only EPOLLHUP.
        bool added = false;
        try
        {
            try
            {
                _fd.DangerousAddRef(ref added);
            }
            catch (ObjectDisposedException)
            {
                // Terminated from another thread while this one watched: the same answer poll gives a closed fd.
                throw new EnclaveException(LaunchError.EnclaveEventWaitError, "poll on the enclave descriptor: it is closed (the enclave was terminated)", Libc.EBADF);
            }

            var pfd = new Libc.PollFd { Fd = _fd.Fd, Events = Libc.POLLIN };
            int milliseconds = timeout == Timeout.InfiniteTimeSpan ? -1 : (int)Math.Min(int.MaxValue, Math.Ceiling(timeout.TotalMilliseconds));
            int rc = Libc.Poll(ref pfd, 1, milliseconds);
            if (rc < 0)
            {
                int errno = Marshal.GetLastPInvokeError();
                if (errno == Libc.EINTR)
                    return false;
                throw new EnclaveException(LaunchError.EnclaveEventWaitError, $"poll on the enclave descriptor failed: {NeErrors.Describe(errno)}", errno);
            }

            if ((pfd.Revents & Libc.POLLNVAL) != 0)
                throw new EnclaveException(LaunchError.EnclaveEventWaitError, "poll on the enclave descriptor: not an open descriptor (POLLNVAL)", Libc.EBADF);
            return rc > 0 && (pfd.Revents & (Libc.POLLHUP | Libc.POLLERR)) != 0;
        }
        finally
        {
            if (added)
                _fd.DangerousRelease();
        }
    }

    /// <summary>Closes the enclave fd: the driver stops the enclave and frees its slot.</summary>
    public void Dispose() => _fd.Dispose();
}

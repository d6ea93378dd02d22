using System.Runtime.InteropServices;
using Launcher.Interop;

namespace Launcher.Local;

/// <summary>
/// The guest's memory as QEMU shares it with a vhost-user backend (<c>VHOST_USER_SET_MEM_TABLE</c>, QEMU
/// docs/interop/vhost-user.rst "Memory region description"): each region is a file descriptor (the machine's memfd
/// RAM) mapped here shared, so that descriptors' guest-physical addresses and the rings' QEMU-virtual addresses
/// translate to pointers in this process. Every access is bounds-checked against the region it falls in: the guest
/// is not trusted.
/// </summary>
internal sealed class GuestMemory : IDisposable
{
    private readonly List<Region> _regions = [];

    /// <summary>One region of <c>VhostUserMemoryRegion</c>: guest-physical start, size, QEMU's address, offset in the fd.</summary>
    internal readonly record struct RegionInfo(ulong GuestPhysical, ulong Size, ulong UserAddress, ulong MmapOffset);

    private sealed record Region(RegionInfo Info, nint Mapping, ulong MappingLength);

    /// <summary>Maps the regions; the fds are consumed (closed here) whether or not mapping succeeds.</summary>
    /// <exception cref="IOException">A region cannot be mapped.</exception>
    internal static GuestMemory Map(IReadOnlyList<RegionInfo> regions, IReadOnlyList<int> fds)
    {
        var memory = new GuestMemory();
        try
        {
            for (int i = 0; i < regions.Count; i++)
            {
                RegionInfo info = regions[i];
                if (info.Size == 0 || info.MmapOffset > ulong.MaxValue - info.Size || info.GuestPhysical > ulong.MaxValue - info.Size || info.UserAddress > ulong.MaxValue - info.Size)
                    throw new IOException($"vhost-user: memory region {i} is malformed (guest 0x{info.GuestPhysical:x}, size {info.Size}, offset {info.MmapOffset})");
                ulong length = info.MmapOffset + info.Size;

                // A mapping past the end of its file maps, but touching that part raises SIGBUS (mmap(2)), which would
                // kill this process: the region must lie inside the fd's file (QEMU's memfd is the whole RAM).
                long fileLength;
                using (var handle = new Microsoft.Win32.SafeHandles.SafeFileHandle(fds[i], ownsHandle: false))
                    fileLength = RandomAccess.GetLength(handle);
                if ((ulong)fileLength < length)
                    throw new IOException($"vhost-user: memory region {i} ends at byte {length} of its file (offset {info.MmapOffset} + size {info.Size}), but the file has {fileLength} bytes");
                nint mapping = Libc.Mmap(0, (nuint)length, Libc.PROT_READ | Libc.PROT_WRITE, Libc.MAP_SHARED, fds[i], 0);
                if (mapping == Libc.MAP_FAILED)
                {
                    int errno = Marshal.GetLastPInvokeError();
                    throw new IOException($"vhost-user: mmap of memory region {i} ({length} bytes) failed: {Marshal.GetPInvokeErrorMessage(errno)} (errno {errno})");
                }

                memory._regions.Add(new Region(info, mapping, length));
            }

            return memory;
        }
        catch
        {
            memory.Dispose();
            throw;
        }
        finally
        {
            foreach (int fd in fds)
                Libc.Close(fd);
        }
    }

    /// <summary>The regions (for messages and tests).</summary>
    internal IReadOnlyList<RegionInfo> Regions => _regions.Select(r => r.Info).ToList();

    /// <summary>A pointer to <paramref name="length"/> bytes at guest-physical <paramref name="address"/>, or 0 when they are not all in one region.</summary>
    internal nint FromGuest(ulong address, ulong length) => Translate(address, length, userAddress: false);

    /// <summary>A pointer to <paramref name="length"/> bytes at QEMU's virtual <paramref name="address"/> (vring addresses), or 0.</summary>
    internal nint FromUser(ulong address, ulong length) => Translate(address, length, userAddress: true);

    // The region holding all of [address, address + length) in the given address space (subtractions only: no
    // overflow whatever the guest asks for), as a pointer into its mapping; 0 when no region holds it all.
    private nint Translate(ulong address, ulong length, bool userAddress)
    {
        foreach (Region region in _regions)
        {
            RegionInfo info = region.Info;
            ulong start = userAddress ? info.UserAddress : info.GuestPhysical;
            if (address >= start && length <= info.Size && address - start <= info.Size - length)
                return region.Mapping + (nint)(info.MmapOffset + (address - start));
        }

        return 0;
    }

    /// <summary>Unmaps every region.</summary>
    public void Dispose()
    {
        foreach (Region region in _regions)
            Libc.Munmap(region.Mapping, (nuint)region.MappingLength);
        _regions.Clear();
    }
}

using System.Numerics;
using System.Runtime.InteropServices;
using Launcher.Interop;
using Microsoft.Win32.SafeHandles;

namespace Launcher.Memory;

/// <summary>One mapping donated to the enclave: one hugepage, as nitro-cli maps them.</summary>
/// <param name="Address">Start of the mapping (aligned to its page size).</param>
/// <param name="Size">Bytes (= <paramref name="PageSize"/>).</param>
/// <param name="PageSize">The hugepage size backing it.</param>
public readonly record struct MemoryRegion(nint Address, ulong Size, ulong PageSize);

/// <summary>Maps and unmaps hugepages: <see cref="HugeTlbMapper"/> on the host; tests may count or refuse.</summary>
public interface IHugePageMapper
{
    /// <summary>Maps one page of <paramref name="pageSize"/> bytes; returns 0 when the kernel has none to give.</summary>
    /// <exception cref="EnclaveException">E25 for a size the kernel does not offer; E42 for any other mmap failure.</exception>
    nint Map(ulong pageSize);

    /// <summary>Unmaps what <see cref="Map"/> returned.</summary>
    /// <exception cref="EnclaveException">E43 when munmap fails.</exception>
    void Unmap(nint address, ulong pageSize);
}

/// <summary>
/// Anonymous private hugetlb mappings, one page each:
/// <c>mmap(NULL, size, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS|MAP_HUGETLB|log2(size) &lt;&lt; MAP_HUGE_SHIFT, -1, 0)</c>
/// (nitro-cli <c>resource_manager.rs</c> <c>ResourceAllocator::allocate</c>). The pages come from the pools reserved in
/// /sys/kernel/mm/hugepages (the allocator service does that on EC2); a mapping fails with ENOMEM when the pool is empty.
/// </summary>
public sealed class HugeTlbMapper : IHugePageMapper
{
    /// <summary>The mapper for this host.</summary>
    public static HugeTlbMapper Instance { get; } = new();

    /// <inheritdoc/>
    public nint Map(ulong pageSize)
    {
        if (!BitOperations.IsPow2(pageSize) || pageSize < NitroEnclaves.MemoryRegionGranule)
            throw new EnclaveException(LaunchError.NoSuchHugepageFlag, $"{pageSize} bytes is not a hugepage size the driver accepts (a power of two of at least 2 MiB)");
        int flags = Libc.MAP_PRIVATE | Libc.MAP_ANONYMOUS | Libc.MAP_HUGETLB | (BitOperations.Log2(pageSize) << Libc.MAP_HUGE_SHIFT);
        nint address = Libc.Mmap(0, (nuint)pageSize, Libc.PROT_READ | Libc.PROT_WRITE, flags, -1, 0);
        if (address != Libc.MAP_FAILED)
            return address;
        int errno = Marshal.GetLastPInvokeError();
        return errno switch
        {
            Libc.ENOMEM => 0,   // the pool of this size is empty (or reserved by others)
            Libc.EINVAL => throw new EnclaveException(LaunchError.NoSuchHugepageFlag, $"the kernel has no {HugePageNames(pageSize)} hugepages (mmap: {Marshal.GetPInvokeErrorMessage(errno)})", errno),
            _ => throw new EnclaveException(LaunchError.EnclaveMmapError, $"mmap of a {HugePageNames(pageSize)} hugepage failed: {Marshal.GetPInvokeErrorMessage(errno)} (errno {errno})", errno),
        };
    }

    /// <inheritdoc/>
    public void Unmap(nint address, ulong pageSize)
    {
        if (Libc.Munmap(address, (nuint)pageSize) != 0)
        {
            int errno = Marshal.GetLastPInvokeError();
            throw new EnclaveException(LaunchError.EnclaveMunmapError, $"munmap of 0x{(ulong)address:x} ({pageSize} bytes) failed: {Marshal.GetPInvokeErrorMessage(errno)} (errno {errno})", errno);
        }
    }

    private static string HugePageNames(ulong size) => Host.HugePageSizes.Format(size);
}

/// <summary>
/// The memory of one enclave: hugepage regions in donation order, largest first. The EIF is written into their
/// concatenation at the load offset before they are donated; they stay mapped until the enclave fd is closed, then
/// <see cref="Dispose"/> unmaps them (nitro-cli terminates in the same order: close, then munmap).
/// </summary>
public sealed class EnclaveMemory : IDisposable
{
    /// <summary>The most bytes one read moves into a region (a span's length is an int).</summary>
    private const int MaxChunk = 1 << 30;

    private readonly IHugePageMapper _mapper;
    private readonly List<MemoryRegion> _regions;
    private bool _disposed;

    internal EnclaveMemory(IHugePageMapper mapper, List<MemoryRegion> regions)
    {
        _mapper = mapper;
        _regions = regions;
    }

    /// <summary>The regions, in the order they are donated.</summary>
    public IReadOnlyList<MemoryRegion> Regions => _regions;

    /// <summary>Their total size (may exceed the request when only large pages were free, nitro-cli#602).</summary>
    public ulong TotalBytes => _regions.Aggregate(0UL, (sum, r) => sum + r.Size);

    /// <summary>
    /// Copies <paramref name="length"/> bytes of <paramref name="file"/> into the concatenation of the regions starting
    /// at <paramref name="offset"/>, spilling across region boundaries (nitro-cli <c>write_eif_to_regions</c>; the kernel
    /// sample's <c>ne_load_enclave_image</c>). Reads go straight into the mapped pages, 1 GiB at most at a time.
    /// </summary>
    /// <exception cref="EnclaveException">E34 when the image does not fit; E35 when the file cannot be read in full.</exception>
    public void WriteImage(SafeFileHandle file, long length, ulong offset, string path)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        ulong total = TotalBytes;
        if (offset > total || (ulong)length > total - offset)
        {
            throw new EnclaveException(LaunchError.MemoryOverflow,
                $"{path} ({length} bytes) at offset {offset >> 20} MiB needs {(offset + (ulong)length + (1UL << 20) - 1) >> 20} MiB of enclave memory; the enclave has {total >> 20} MiB");
        }

        ulong regionStart = 0;
        foreach (MemoryRegion region in _regions)
        {
            ulong regionEnd = regionStart + region.Size;
            ulong writeStart = Math.Max(offset, regionStart);
            if (writeStart < regionEnd)
            {
                ulong fileOffset = writeStart - offset;
                if (fileOffset >= (ulong)length)
                    break;
                ulong count = Math.Min(regionEnd - writeStart, (ulong)length - fileOffset);
                Fill(region, writeStart - regionStart, file, (long)fileOffset, count, path);
            }

            regionStart = regionEnd;
        }
    }

    /// <summary>
    /// Reads the concatenation of the regions from <paramref name="offset"/> into <paramref name="destination"/>
    /// (for checks and tests: what the hypervisor would see).
    /// </summary>
    public void Read(ulong offset, Span<byte> destination)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        ulong regionStart = 0;
        int done = 0;
        foreach (MemoryRegion region in _regions)
        {
            ulong regionEnd = regionStart + region.Size;
            ulong position = offset + (ulong)done;
            if (done < destination.Length && position < regionEnd && position >= regionStart)
            {
                int count = (int)Math.Min((ulong)(destination.Length - done), regionEnd - position);
                RegionSpan(region, position - regionStart, count).CopyTo(destination[done..]);
                done += count;
            }

            regionStart = regionEnd;
        }

        if (done != destination.Length)
            throw new ArgumentOutOfRangeException(nameof(offset), $"{destination.Length} bytes at {offset} run past the {TotalBytes} bytes of enclave memory");
    }

    /// <summary>Unmaps every region; the first failure is thrown after all were tried.</summary>
    /// <exception cref="EnclaveException">E43.</exception>
    public void Release()
    {
        if (_disposed)
            return;
        _disposed = true;
        EnclaveException? first = null;
        foreach (MemoryRegion region in _regions)
        {
            try
            {
                _mapper.Unmap(region.Address, region.Size);
            }
            catch (EnclaveException ex)
            {
                first ??= ex;
            }
        }

        _regions.Clear();
        if (first is not null)
            throw first;
    }

    /// <summary>Unmaps every region (see <see cref="Release"/>); never throws.</summary>
    public void Dispose()
    {
        try
        {
            Release();
        }
        catch (EnclaveException)
        {
            // Dispose runs on failure paths; Release is the call that reports.
        }
    }

    private static void Fill(MemoryRegion region, ulong regionOffset, SafeFileHandle file, long fileOffset, ulong count, string path)
    {
        while (count > 0)
        {
            int chunk = (int)Math.Min(count, MaxChunk);
            Span<byte> target = RegionSpan(region, regionOffset, chunk);
            int read;
            try
            {
                read = RandomAccess.Read(file, target, fileOffset);
            }
            catch (IOException ex)
            {
                throw new EnclaveException(LaunchError.EifParsingError, $"{path}: reading {chunk} bytes at offset {fileOffset} into enclave memory failed: {ex.Message}", innerException: ex);
            }

            if (read <= 0)
                throw new EnclaveException(LaunchError.EifParsingError, $"{path}: the file ended at offset {fileOffset} while it was copied into enclave memory (it changed after it was checked)");
            regionOffset += (ulong)read;
            fileOffset += read;
            count -= (ulong)read;
        }
    }

    private static unsafe Span<byte> RegionSpan(MemoryRegion region, ulong regionOffset, int count)
    {
        // Sound: the region is a live mapping of region.Size bytes owned by this object (unmapped only in Release),
        // and every caller keeps regionOffset + count within region.Size.
        if (regionOffset > region.Size || (ulong)count > region.Size - regionOffset)
            throw new ArgumentOutOfRangeException(nameof(count));
        return new Span<byte>((byte*)region.Address + regionOffset, count);
    }
}

namespace Launcher.Memory;

/// <summary>
/// Allocates enclave memory as hugepages, the way nitro-cli does (<c>resource_manager.rs</c>
/// <c>ResourceAllocator::allocate</c>), with the page sizes under the caller's control (nitro-cli#602).
/// </summary>
public static class HugePageAllocator
{
    /// <summary>
    /// Maps hugepages until they cover <paramref name="bytes"/>:
    /// pass 1, from the largest size to the smallest, maps pages of a size while the remaining need is at least that
    /// size, moving on at the first failure; pass 2, only if something is still needed, from the smallest size to the
    /// largest, maps while anything is needed. Then the regions are sorted largest first and only the shortest prefix
    /// that covers the request is kept. The result may be larger than asked when only large pages were free.
    /// </summary>
    /// <param name="bytes">The memory asked for.</param>
    /// <param name="pageSizes">The sizes to use (any order).</param>
    /// <param name="mapper">The mapper.</param>
    /// <param name="shortage">Text for the E27 message: what is free and how to reserve more.</param>
    /// <exception cref="EnclaveException">E27 when the pages cannot be had (nothing stays mapped); E42/E25 from the mapper.</exception>
    public static EnclaveMemory Allocate(ulong bytes, IReadOnlyCollection<ulong> pageSizes, IHugePageMapper mapper, Func<ulong, string>? shortage = null)
    {
        ArgumentOutOfRangeException.ThrowIfZero(bytes);
        ArgumentOutOfRangeException.ThrowIfZero(pageSizes.Count);
        ulong[] descending = pageSizes.Distinct().OrderDescending().ToArray();
        var regions = new List<MemoryRegion>();
        try
        {
            ulong remaining = bytes;
            foreach (ulong size in descending)
            {
                while (remaining >= size && mapper.Map(size) is var address && address != 0)
                {
                    regions.Add(new MemoryRegion(address, size, size));
                    remaining -= size;
                }
            }

            if (remaining > 0)
            {
                foreach (ulong size in descending.Reverse())
                {
                    while (remaining > 0 && mapper.Map(size) is var address && address != 0)
                    {
                        regions.Add(new MemoryRegion(address, size, size));
                        remaining = remaining > size ? remaining - size : 0;
                    }
                }
            }

            if (remaining > 0)
            {
                ulong got = bytes - remaining;
                throw new EnclaveException(LaunchError.InsufficientMemoryAvailable,
                    $"--memory is {bytes >> 20} MiB, which is more than the available hugepage memory ({got >> 20} MiB could be mapped)" +
                    (shortage is null ? string.Empty : $"; {shortage(bytes)}"));
            }

            // Largest first (stable for equal sizes), then the shortest prefix covering the request; the rest is unmapped.
            List<MemoryRegion> sorted = regions.OrderByDescending(r => r.Size).ToList();
            var kept = new List<MemoryRegion>();
            ulong covered = 0;
            foreach (MemoryRegion region in sorted)
            {
                if (covered < bytes)
                {
                    kept.Add(region);
                    covered += region.Size;
                    continue;
                }

                mapper.Unmap(region.Address, region.Size);
                regions.Remove(region);
            }

            return new EnclaveMemory(mapper, kept);
        }
        catch
        {
            foreach (MemoryRegion region in regions)
            {
                try
                {
                    mapper.Unmap(region.Address, region.Size);
                }
                catch (EnclaveException)
                {
                    // Already failing; the first error is the one reported.
                }
            }

            throw;
        }
    }
}

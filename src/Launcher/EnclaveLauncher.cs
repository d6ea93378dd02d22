using Launcher.Driver;
using Launcher.Host;
using Launcher.Memory;
using Launcher.Vsock;
using Microsoft.Win32.SafeHandles;

namespace Launcher;

/// <summary>
/// Launches enclaves on a <see cref="NitroPlatform"/> the way nitro-cli's run-enclave does
/// (src/enclave_proc/commands.rs <c>run_enclaves</c>, resource_manager.rs), with every check it can make done first,
/// before the driver is touched: the request, the EIF (format, CRC, architecture, signature and certificate), the
/// CPU pool and whole cores, the memory rules and the free hugepages. Then: create the slot, map hugepages, write
/// the EIF at the load offset across them, donate them, add the vCPUs, listen for the heartbeat, start, wait for
/// the heartbeat. Any failure releases what was taken so far (listener, enclave fd, mappings) before it is thrown.
/// </summary>
/// <remarks>
/// Every call on the returned enclave must come from this process: the driver checks that the caller's memory map
/// is the one that created the enclave (driver <c>ne_add_vcpu_ioctl</c>; EIO otherwise).
/// </remarks>
public sealed class EnclaveLauncher(NitroPlatform platform)
{
    /// <summary>Progress lines (nitro-cli prints "Start allocating memory...", "Started enclave with ..." to stderr).</summary>
    public Action<string>? Log { get; init; }

    /// <summary>The clock for certificate validity (tests pin it).</summary>
    public Func<DateTimeOffset> Now { get; init; } = () => DateTimeOffset.UtcNow;

    /// <summary>Checks everything that can be checked without the driver; returns the plan the launch follows.</summary>
    /// <exception cref="EnclaveException">The first problem, with nitro-cli's code (E01–E03, E19–E27, E35, E59).</exception>
    public LaunchPlan Check(LaunchRequest request)
    {
        // Arguments (nitro-cli src/common/commands_parser.rs).
        if (request.CpuCount is null && request.CpuIds is null)
            throw new EnclaveException(LaunchError.MissingArgument, "give either --cpu-count or --cpu-ids");
        if (request.CpuCount is not null && request.CpuIds is not null)
            throw new EnclaveException(LaunchError.ConflictingArgument, "--cpu-count and --cpu-ids cannot be used together");
        if (request.CpuCount is <= 0)
            throw new EnclaveException(LaunchError.InvalidArgument, $"--cpu-count must be at least 1 (got {request.CpuCount})");
        if (request.CpuIds is { Count: 0 })
            throw new EnclaveException(LaunchError.MissingArgument, "--cpu-ids needs at least one CPU");
        if (NitroEnclaves.IsInvalidEnclaveCid(request.EnclaveCid))
        {
            throw new EnclaveException(LaunchError.InvalidArgument,
                $"--enclave-cid {request.EnclaveCid} is reserved: 1 and 2 are the local and host CIDs, 3 is the parent instance, and {uint.MaxValue} and above are not CIDs (use 0 or leave it out for an automatic CID)");
        }

        if (request.MemoryMiB == 0)
            throw new EnclaveException(LaunchError.InsufficientMemoryRequested, "--memory is 0 MiB; it must be greater than 0");
        if (request.MemoryMiB > (ulong.MaxValue >> 21))
            throw new EnclaveException(LaunchError.InvalidArgument, $"--memory {request.MemoryMiB} MiB is too large");

        // The image (before the driver: a bad EIF is otherwise an opaque boot failure, nitro-cli#243).
        EnclaveImage image = EnclaveImage.Check(request.EifPath, platform.Architecture, Now());

        // Memory rules (nitro-cli EnclaveHandle::new: 4 × the EIF, #196; driver NE_MIN_ENCLAVE_MEM_SIZE).
        ulong requested = request.MemoryMiB << 20;
        ulong eifMiB = ((ulong)image.Length + (1UL << 20) - 1) >> 20;
        if ((ulong)image.Length * 4 > requested)
        {
            throw new EnclaveException(LaunchError.InsufficientMemoryRequested,
                $"--memory is {request.MemoryMiB} MiB, but based on the EIF file size ({image.Path}, {image.Length} bytes), the minimum memory should be {eifMiB * 4} MiB (4 × the EIF, which the kernel unpacks in enclave memory)");
        }

        if (requested < NitroEnclaves.MinimumMemory)
        {
            throw new EnclaveException(LaunchError.InsufficientMemoryRequested,
                $"--memory is {request.MemoryMiB} MiB; the driver's minimum is {NitroEnclaves.MinimumMemory >> 20} MiB (NE_MIN_ENCLAVE_MEM_SIZE)");
        }

        IReadOnlyList<int> cpus = CheckCpus(request);
        ulong[] pageSizes = CheckHugePages(request, requested);
        return new LaunchPlan(request, image, requested, cpus, pageSizes);
    }

    /// <summary>Checks, then launches; returns the running enclave once its heartbeat arrived.</summary>
    /// <exception cref="EnclaveException">The first failure, with nitro-cli's code; nothing stays allocated.</exception>
    public RunningEnclave Launch(LaunchRequest request) => Launch(Check(request));

    /// <summary>Launches a checked plan (see the class summary for the sequence).</summary>
    /// <exception cref="EnclaveException">The first failure, with nitro-cli's code; nothing stays allocated.</exception>
    public RunningEnclave Launch(LaunchPlan plan)
    {
        LaunchRequest request = plan.Request;
        IEnclaveVm? vm = null;
        EnclaveMemory? memory = null;
        IVsockListener? listener = null;
        try
        {
            using (INitroEnclavesDevice device = platform.OpenDevice())
                vm = device.CreateVm(); // the enclave fd keeps the slot; the device fd is not needed after this

            Log?.Invoke($"Start allocating memory... ({plan.MemoryBytes >> 20} MiB in {string.Join("/", plan.PageSizes.Select(HugePageSizes.Format))} hugepages)");
            memory = HugePageAllocator.Allocate(plan.MemoryBytes, plan.PageSizes, platform.Mapper, _ => ReserveAdvice(plan.MemoryBytes, plan.PageSizes));
            if (memory.TotalBytes > plan.MemoryBytes)
                Log?.Invoke($"allocated {memory.TotalBytes >> 20} MiB for the {plan.MemoryBytes >> 20} MiB asked: only larger hugepages were free (--hugepage-size chooses the size)");

            ulong offset = vm.GetImageLoadInfo(NitroEnclaves.EifImageFlag);
            WriteImage(plan.Image, memory, offset);
            foreach (MemoryRegion region in memory.Regions)
                vm.SetUserMemoryRegion(NitroEnclaves.DefaultMemoryRegionFlag, region.Size, region.Address);

            var cpuIds = new List<int>();
            if (request.CpuIds is not null)
            {
                foreach (int cpu in plan.CpuIds)
                    cpuIds.Add((int)vm.AddVcpu((uint)cpu));
            }
            else
            {
                for (int i = 0; i < request.CpuCount; i++)
                    cpuIds.Add((int)vm.AddVcpu(0));
            }

            ulong memoryBytes = memory.TotalBytes;
            TimeSpan timeout = request.HeartbeatTimeout ?? Heartbeat.Timeout((ulong)plan.Image.Length, memoryBytes);
            var heartbeatAddress = new VsockAddress(NitroEnclaves.ParentCid, NitroEnclaves.HeartbeatPort);
            listener = Heartbeat.Listen(platform.Vsock, heartbeatAddress, timeout, Log); // before START (nitro-cli PR #134)

            ulong flags = request.DebugMode ? NitroEnclaves.DebugModeFlag : NitroEnclaves.ProductionModeFlag;
            ulong cid = vm.StartEnclave(flags, request.EnclaveCid);
            Log?.Invoke($"Started enclave with enclave-cid: {cid}, memory: {memoryBytes >> 20} MiB, cpu-ids: [{string.Join(", ", cpuIds)}]");

            IEnclaveVm started = vm;
            Heartbeat.Await(listener, (uint)cid, timeout, () => started.WaitForEvent(TimeSpan.Zero), Log);
            listener.Dispose();
            listener = null;

            var description = new EnclaveDescription
            {
                EnclaveName = request.EffectiveName,
                EnclaveId = $"{platform.Host.InstanceId()}-enc{vm.SlotUid:x}",
                ProcessId = Environment.ProcessId,
                EnclaveCid = cid,
                CpuIds = cpuIds,
                MemoryMiB = memoryBytes >> 20,
                State = EnclaveState.Running,
                DebugMode = request.DebugMode,
                Measurements = plan.Image.Measurements,
                MetadataJson = plan.Image.MetadataJson,
                EifPath = Path.GetFullPath(plan.Image.Path),
                Platform = platform.Kind,
                StartedAt = Now(),
            };
            var running = new RunningEnclave(vm, memory, platform.Vsock, description);
            vm = null;
            memory = null;
            return running;
        }
        finally
        {
            // On failure: stop listening, close the enclave fd (the driver stops the enclave and frees its slot and
            // cores), then unmap the memory it had pinned — nitro-cli's order.
            listener?.Dispose();
            vm?.Dispose();
            memory?.Dispose();
        }
    }

    private static void WriteImage(EnclaveImage image, EnclaveMemory memory, ulong offset)
    {
        SafeFileHandle file;
        try
        {
            file = File.OpenHandle(image.Path, FileMode.Open, FileAccess.Read, FileShare.Read);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            throw new EnclaveException(LaunchError.FileOperationFailure, $"'{image.Path}' Open: {ex.Message}", innerException: ex);
        }

        using (file)
        {
            long length = RandomAccess.GetLength(file);
            if (length != image.Length)
                throw new EnclaveException(LaunchError.EifParsingError, $"{image.Path}: the file changed after it was checked ({image.Length} bytes, now {length})");
            memory.WriteImage(file, length, offset, image.Path);
        }

        // What is donated is what was checked: the copy's CRC must be the header's (a file rewritten in place between
        // the check and the copy would otherwise boot with other PCRs than the ones reported).
        uint crc = EnclaveImage.CrcOf(image.Length, (position, chunk) => memory.Read(offset + (ulong)position, chunk));
        if (crc != image.Crc)
            throw new EnclaveException(LaunchError.EifParsingError, $"{image.Path}: the copy in enclave memory has CRC 0x{crc:x8}, the header says 0x{image.Crc:x8} (the file changed while it was copied)");
    }

    private IReadOnlyList<int> CheckCpus(LaunchRequest request)
    {
        SortedSet<int> pool = platform.Host.ReadCpuPool();
        string poolText = CpuList.Format(pool);
        if (pool.Count == 0)
        {
            throw new EnclaveException(LaunchError.InsufficientCpus,
                $"the CPU pool ({platform.Host.CpuPoolPath}) is empty: set cpu_count in /etc/nitro_enclaves/allocator.yaml and restart nitro-enclaves-allocator");
        }

        // Cores as the pool holds them: each pool CPU with its thread siblings.
        var coreOf = pool.ToDictionary(cpu => cpu, cpu => platform.Host.ThreadSiblings(cpu));
        if (request.CpuIds is { } ids)
        {
            var seen = new HashSet<int>();
            var duplicates = ids.Where(id => !seen.Add(id)).Distinct().ToList();
            if (duplicates.Count > 0)
                throw new EnclaveException(LaunchError.InvalidCpuConfiguration, $"--cpu-ids {string.Join(" ", ids)} contains CPU(s) {string.Join(", ", duplicates)} more than once");
            foreach (int id in ids)
            {
                if (!pool.Contains(id))
                {
                    throw new EnclaveException(LaunchError.NoSuchCpuAvailableInPool,
                        $"--cpu-ids contains CPU {id}, which is not in the CPU pool ({poolText}); add it to cpu_pool in /etc/nitro_enclaves/allocator.yaml and restart nitro-enclaves-allocator");
                }
            }

            // The driver claims a whole core per CPU and refuses to start with part of one (NE_ERR_FULL_CORES_NOT_USED).
            foreach (int id in ids)
            {
                var missing = coreOf[id].Where(sibling => !seen.Contains(sibling)).ToList();
                if (missing.Count > 0)
                {
                    throw new EnclaveException(LaunchError.InvalidCpuConfiguration,
                        $"--cpu-ids: CPU {id} shares its core with CPU(s) {string.Join(", ", missing)}, and an enclave takes whole cores: add {string.Join(", ", missing)} (or use --cpu-count)");
                }
            }

            return ids.ToList();
        }

        int count = request.CpuCount!.Value;
        if (count > pool.Count)
        {
            throw new EnclaveException(LaunchError.InsufficientCpus,
                $"--cpu-count is {count}, which is more than the configured CPU pool size ({pool.Count}: {poolText}); raise cpu_count in /etc/nitro_enclaves/allocator.yaml and restart nitro-enclaves-allocator");
        }

        int threadsPerCore = coreOf.Values.Max(core => core.Count);
        if (count % threadsPerCore != 0)
        {
            throw new EnclaveException(LaunchError.InvalidCpuConfiguration,
                $"--cpu-count is {count}, but the pool's cores have {threadsPerCore} threads each and an enclave takes whole cores: use a multiple of {threadsPerCore}");
        }

        return Array.Empty<int>();
    }

    private ulong[] CheckHugePages(LaunchRequest request, ulong requested)
    {
        IReadOnlyList<HugePageSize> offered = platform.Host.HugePages();
        if (offered.Count == 0)
            throw new EnclaveException(LaunchError.InsufficientMemoryAvailable, "this kernel offers no hugepages (/sys/kernel/mm/hugepages is empty); enclave memory must be hugepages (CONFIG_HUGETLBFS)");
        IEnumerable<HugePageSize> usable = offered.Where(size => size.Bytes % NitroEnclaves.MemoryRegionGranule == 0);
        if (request.HugePageSize is { } chosen)
        {
            if (!offered.Any(size => size.Bytes == chosen))
                throw new EnclaveException(LaunchError.NoSuchHugepageFlag, $"--hugepage-size {HugePageSizes.Format(chosen)}: this kernel offers {string.Join(", ", offered.Select(s => s.Name))}");
            if (chosen % NitroEnclaves.MemoryRegionGranule != 0)
                throw new EnclaveException(LaunchError.NoSuchHugepageFlag, $"--hugepage-size {HugePageSizes.Format(chosen)}: the driver needs pages that are a multiple of 2 MiB");
            usable = usable.Where(size => size.Bytes == chosen);
        }

        HugePageSize[] sizes = usable.ToArray();
        ulong free = sizes.Aggregate(0UL, (sum, size) => sum + (size.Free * size.Bytes));
        if (free < requested)
        {
            throw new EnclaveException(LaunchError.InsufficientMemoryAvailable,
                $"--memory is {requested >> 20} MiB, which is more than the available hugepage memory ({free >> 20} MiB free); {ReserveAdvice(requested, sizes.Select(s => s.Bytes).ToArray())}");
        }

        return sizes.Select(size => size.Bytes).ToArray();
    }

    private string ReserveAdvice(ulong requested, IReadOnlyCollection<ulong> pageSizes)
    {
        var state = platform.Host.HugePages().Where(s => pageSizes.Contains(s.Bytes)).ToList();
        string free = string.Join(", ", state.Select(s => $"{s.Name}: {s.Free} of {s.Total} free"));
        HugePageSize smallest = state.Count > 0 ? state.MinBy(s => s.Bytes) : new HugePageSize(NitroEnclaves.MemoryRegionGranule, 0, 0);
        ulong pages = smallest.Total + ((requested + smallest.Bytes - 1) / smallest.Bytes) - smallest.Free;
        return $"hugepages {free}. Reserve more: raise memory_mib in /etc/nitro_enclaves/allocator.yaml and restart nitro-enclaves-allocator, " +
            $"or echo {pages} | sudo tee /sys/kernel/mm/hugepages/{smallest.Folder}/nr_hugepages";
    }
}

/// <summary>A checked launch: the request, the checked image, and what will be allocated.</summary>
/// <param name="Request">The request.</param>
/// <param name="Image">The checked EIF.</param>
/// <param name="MemoryBytes">Memory to allocate.</param>
/// <param name="CpuIds">The explicit CPUs (empty for a count).</param>
/// <param name="PageSizes">The hugepage sizes to use, largest first.</param>
public sealed record LaunchPlan(LaunchRequest Request, EnclaveImage Image, ulong MemoryBytes, IReadOnlyList<int> CpuIds, IReadOnlyList<ulong> PageSizes);

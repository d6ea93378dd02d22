using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json.Nodes;
using EifFormat;
using Launcher.Driver;
using Launcher.Interop;
using Launcher.Vsock;

namespace Launcher.Simulation;

/// <summary>
/// A stand-in for <c>/dev/nitro_enclaves</c> and the hypervisor behind it, enforcing the driver's documented checks
/// (launch.md §1.3–§1.5; driver <c>ne_misc_dev.c</c>): the state machine (resources only in INIT), flag values, 2 MiB
/// sizes and alignment, accessible hugetlb-backed memory, no overlaps, the region limit, the CPU pool, whole cores and
/// auto-picking by core, the 64 MiB minimum, CID rules and the same-process rule. It keeps a copy of each donated
/// region as it was at donation (what the hypervisor would get), and at START it reads the EIF from that copy at the
/// 8 MiB load offset with the strict reader, as the hypervisor parses it. No enclave code runs: a started enclave
/// sends the heartbeat (or fails as <see cref="SimulatorConfig.Boot"/> says) and, in debug mode, serves a console
/// that reports what the hypervisor found.
/// </summary>
public sealed class SimulatedNitroDevice
{
    private readonly SimulatedNitro _simulator;
    private readonly ConcurrentDictionary<string, int> _failures = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<ulong, SimulatedEnclaveVm> _open = new();

    internal SimulatedNitroDevice(SimulatedNitro simulator)
    {
        _simulator = simulator;
    }

    /// <summary>The slots of this process whose enclave fd is still open.</summary>
    public IReadOnlyCollection<SimulatedEnclaveVm> OpenEnclaves => _open.Values.ToList();

    /// <summary>The simulator.</summary>
    internal SimulatedNitro Simulator => _simulator;

    /// <summary>Makes the next call of <paramref name="ioctl"/> (e.g. <c>NE_ADD_VCPU</c>) fail with <paramref name="errno"/>.</summary>
    public void FailNext(string ioctl, int errno) => _failures[ioctl] = errno;

    /// <summary>A handle the launcher may dispose without closing the simulator.</summary>
    internal INitroEnclavesDevice Share() => new Handle(this);

    internal SimulatedEnclaveVm CreateVm()
    {
        ThrowInjected("NE_CREATE_VM");
        SimulatorConfig config = _simulator.Config;
        var pool = Host.CpuList.Parse(config.CpuPool, "CpuPool");
        ulong slot = _simulator.UpdateState(state =>
        {
            var slots = (JsonObject)state["Slots"]!;
            var claimed = ClaimedCpus(slots, exceptSlot: null);
            if (pool.All(claimed.Contains))
                throw EnclaveException.Ioctl("NE_CREATE_VM", (int)NeError.NoCpusAvailableInPool);
            ulong uid = SimulatedNitro.Number(state["NextSlot"]!);
            state["NextSlot"] = uid + 1;
            slots[uid.ToString(System.Globalization.CultureInfo.InvariantCulture)] = new JsonObject
            {
                ["Pid"] = Environment.ProcessId,
                ["Cpus"] = new JsonArray(),
                ["Cid"] = 0,
            };
            return uid;
        });
        var vm = new SimulatedEnclaveVm(this, slot, pool);
        _open[slot] = vm;
        return vm;
    }

    internal void Closed(SimulatedEnclaveVm vm) => _open.TryRemove(vm.SlotUid, out _);

    internal void ThrowInjected(string ioctl)
    {
        if (_failures.TryRemove(ioctl, out int errno))
            throw EnclaveException.Ioctl(ioctl, errno);
    }

    internal static HashSet<int> ClaimedCpus(JsonObject slots, string? exceptSlot)
    {
        var claimed = new HashSet<int>();
        foreach (var (key, value) in slots)
        {
            if (key == exceptSlot)
                continue;
            foreach (JsonNode? cpu in value!["Cpus"]!.AsArray())
                claimed.Add((int)SimulatedNitro.Number(cpu!));
        }

        return claimed;
    }

    private sealed class Handle(SimulatedNitroDevice device) : INitroEnclavesDevice
    {
        public IEnclaveVm CreateVm() => device.CreateVm();

        public void Dispose()
        {
        }
    }
}

/// <summary>One simulated enclave slot (see <see cref="SimulatedNitroDevice"/>).</summary>
public sealed class SimulatedEnclaveVm : IEnclaveVm
{
    private const ulong Granule = NitroEnclaves.MemoryRegionGranule;

    private readonly SimulatedNitroDevice _device;
    private readonly SortedSet<int> _pool;
    private readonly int _creator = Environment.ProcessId;
    private readonly object _gate = new();
    private readonly List<DonatedRegion> _regions = [];
    private readonly SortedSet<int> _added = [];
    private readonly SortedSet<int> _claimedCores = [];
    private readonly ManualResetEventSlim _stopped = new(false);
    private readonly CancellationTokenSource _closing = new();
    private readonly StringBuilder _console = new();
    private int _ranges;
    private bool _started;
    private bool _disposed;
    private Thread? _hypervisor;
    private IVsockListener? _consoleListener;
    private List<ProcessMemoryMap.Mapping>? _mappings;

    internal SimulatedEnclaveVm(SimulatedNitroDevice device, ulong slotUid, SortedSet<int> pool)
    {
        _device = device;
        SlotUid = slotUid;
        _pool = pool;
    }

    /// <inheritdoc/>
    public ulong SlotUid { get; }

    /// <summary>The CID after START.</summary>
    public ulong Cid { get; private set; }

    /// <summary>The flags START was given.</summary>
    public ulong StartFlags { get; private set; }

    /// <summary>The vCPUs added, in order.</summary>
    public IReadOnlyCollection<int> Vcpus
    {
        get
        {
            lock (_gate)
                return _added.ToList();
        }
    }

    /// <summary>The donated regions: address, size, in donation order.</summary>
    public IReadOnlyList<(nint Address, ulong Size)> Regions
    {
        get
        {
            lock (_gate)
                return _regions.Select(r => (r.Address, r.Size)).ToList();
        }
    }

    /// <summary>What the simulated hypervisor printed so far (its console).</summary>
    public string ConsoleText
    {
        get
        {
            lock (_console)
                return _console.ToString();
        }
    }

    private SimulatorConfig Config => _device.Simulator.Config;

    private string SlotKey => SlotUid.ToString(System.Globalization.CultureInfo.InvariantCulture);

    /// <summary>Reads the donated memory as it was at donation (concatenated in donation order) from <paramref name="offset"/>.</summary>
    public void ReadDonated(ulong offset, Span<byte> destination)
    {
        lock (_gate)
        {
            ulong start = 0;
            int done = 0;
            foreach (DonatedRegion region in _regions)
            {
                ulong end = start + region.Size;
                ulong position = offset + (ulong)done;
                if (done < destination.Length && position >= start && position < end)
                {
                    int count = (int)Math.Min((ulong)(destination.Length - done), end - position);
                    region.Span(position - start, count).CopyTo(destination[done..]);
                    done += count;
                }

                start = end;
            }

            if (done != destination.Length)
                throw new ArgumentOutOfRangeException(nameof(offset), "past the donated memory");
        }
    }

    /// <summary>The total donated bytes.</summary>
    public ulong DonatedBytes
    {
        get
        {
            lock (_gate)
                return _regions.Aggregate(0UL, (sum, r) => sum + r.Size);
        }
    }

    /// <summary>Makes the running enclave stop by itself (as after a shutdown inside it): POLLHUP for the owner.</summary>
    public void Stop(string why)
    {
        Print($"the enclave stopped: {why}");
        _stopped.Set();
        _closing.Cancel();
    }

    /// <inheritdoc/>
    public uint AddVcpu(uint vcpuId)
    {
        Enter("NE_ADD_VCPU");
        int threads = Config.ThreadsPerCore;
        lock (_gate)
        {
            return _device.Simulator.UpdateState(state =>
            {
                var slots = (JsonObject)state["Slots"]!;
                HashSet<int> others = SimulatedNitroDevice.ClaimedCpus(slots, SlotKey);
                int cpu;
                if (vcpuId == 0)
                {
                    // Driver ne_get_cpu_from_cpu_pool: first a free sibling of a core this enclave holds, else a new core.
                    int? sibling = _claimedCores.SelectMany(core => Enumerable.Range(core * threads, threads)).Where(c => !_added.Contains(c)).Cast<int?>().FirstOrDefault();
                    if (sibling is { } s)
                    {
                        cpu = s;
                    }
                    else
                    {
                        int? core = _pool.Select(c => c / threads).Distinct()
                            .Where(k => !_claimedCores.Contains(k) && Enumerable.Range(k * threads, threads).All(c => _pool.Contains(c) && !others.Contains(c)))
                            .Cast<int?>().FirstOrDefault();
                        if (core is null)
                            throw Fail("NE_ADD_VCPU(0)", NeError.NoCpusAvailableInPool);
                        cpu = core.Value * threads;
                        _claimedCores.Add(core.Value);
                    }
                }
                else
                {
                    cpu = (int)vcpuId;
                    if (vcpuId >= (uint)Config.Cpus)
                        throw Fail($"NE_ADD_VCPU({vcpuId})", NeError.InvalidVcpu);
                    if (!_pool.Contains(cpu))
                        throw Fail($"NE_ADD_VCPU({vcpuId})", NeError.VcpuNotInCpuPool);
                    if (_added.Contains(cpu))
                        throw Fail($"NE_ADD_VCPU({vcpuId})", NeError.VcpuAlreadyUsed);
                    if (others.Contains(cpu))
                        throw Fail($"NE_ADD_VCPU({vcpuId})", NeError.VcpuNotInCpuPool);
                    _claimedCores.Add(cpu / threads);
                }

                _added.Add(cpu);
                var claimedCpus = new JsonArray();
                foreach (int c in _claimedCores.SelectMany(core => Enumerable.Range(core * threads, threads)))
                    claimedCpus.Add(c);
                slots[SlotKey]!["Cpus"] = claimedCpus;
                return (uint)cpu;
            });
        }
    }

    /// <inheritdoc/>
    public ulong GetImageLoadInfo(ulong flags)
    {
        Enter("NE_GET_IMAGE_LOAD_INFO");
        if (flags == 0 || flags >= NitroEnclaves.ImageLoadMaxFlag)
            throw Fail("NE_GET_IMAGE_LOAD_INFO", NeError.InvalidFlagValue);
        return NitroEnclaves.EifLoadOffset;
    }

    /// <inheritdoc/>
    public void SetUserMemoryRegion(ulong flags, ulong size, nint userspaceAddress)
    {
        // userspace_addr is a __u64: an address in the upper half is a negative nint, not an overflow.
        ulong address = unchecked((ulong)userspaceAddress);
        string op = $"NE_SET_USER_MEMORY_REGION(0x{address:x}, {size} bytes)";
        Enter("NE_SET_USER_MEMORY_REGION");
        if (flags >= NitroEnclaves.MemoryRegionMaxFlag)
            throw Fail(op, NeError.InvalidFlagValue);
        if (size == 0 || size % Granule != 0)
            throw Fail(op, NeError.InvalidMemRegionSize);
        if (address % Granule != 0)
            throw Fail(op, NeError.UnalignedMemRegionAddr);
        if (address > ulong.MaxValue - size)
            throw Fail(op, NeError.InvalidMemRegionAddr);
        lock (_gate)
        {
            if (_regions.Any(r => address < (ulong)r.Address + r.Size && (ulong)r.Address < address + size))
                throw Fail(op, NeError.MemRegionAlreadyUsed);
            List<ProcessMemoryMap.Mapping> mappings = MappingsOf(address, size);
            if (!ProcessMemoryMap.Covers(mappings, address, size))
                throw Fail(op, NeError.InvalidMemRegionAddr);
            if (mappings.Any(m => m.KernelPageSize < Granule))
                throw Fail(op, NeError.MemNotHugePage); // 4 KiB pages: PageHuge() is false
            if (mappings.Any(m => m.KernelPageSize % Granule != 0))
                throw Fail(op, NeError.InvalidPageSize);

            // The driver merges physically adjacent pages into ranges; contiguity cannot be seen from here, so each
            // hugepage counts as one range (the worst case).
            ulong pages = size / mappings.Min(m => m.KernelPageSize);
            if (_ranges + (long)pages > Config.MaxMemoryRegions)
                throw Fail(op, NeError.MemMaxRegions);
            _ranges += (int)pages;
            _regions.Add(DonatedRegion.Copy(userspaceAddress, size));
        }
    }

    /// <inheritdoc/>
    public ulong StartEnclave(ulong flags, ulong enclaveCid)
    {
        Enter("NE_START_ENCLAVE");
        if (flags >= NitroEnclaves.StartMaxFlag)
            throw Fail("NE_START_ENCLAVE", NeError.InvalidFlagValue);
        lock (_gate)
        {
            if (_regions.Count == 0)
                throw Fail("NE_START_ENCLAVE", NeError.NoMemRegionsAdded);
            if (_added.Count == 0)
                throw Fail("NE_START_ENCLAVE", NeError.NoVcpusAdded);
            if (_regions.Aggregate(0UL, (sum, r) => sum + r.Size) < NitroEnclaves.MinimumMemory)
                throw Fail("NE_START_ENCLAVE", NeError.EnclaveMemMinSize);
            int threads = Config.ThreadsPerCore;
            if (_claimedCores.Any(core => Enumerable.Range(core * threads, threads).Any(c => !_added.Contains(c))))
                throw Fail("NE_START_ENCLAVE", NeError.FullCoresNotUsed);
            if (NitroEnclaves.IsInvalidEnclaveCid(enclaveCid))
                throw Fail("NE_START_ENCLAVE", NeError.InvalidEnclaveCid);

            Cid = _device.Simulator.UpdateState(state =>
            {
                var slots = (JsonObject)state["Slots"]!;
                var used = slots.Where(s => s.Key != SlotKey).Select(s => SimulatedNitro.Number(s.Value!["Cid"]!)).ToHashSet();
                ulong cid = enclaveCid;
                if (cid == 0)
                {
                    // Observed automatic CIDs start at 16 (nitro-cli #243, #602); the hypervisor's rule is not published.
                    cid = 16;
                    while (used.Contains(cid))
                        cid++;
                }
                else if (used.Contains(cid))
                {
                    // Not documented for the hypervisor; the simulator refuses a CID another enclave holds.
                    throw EnclaveException.Ioctl("NE_START_ENCLAVE", Libc.EBUSY);
                }

                slots[SlotKey]!["Cid"] = cid;
                return cid;
            });
            StartFlags = flags;
            _started = true;
        }

        _hypervisor = new Thread(RunHypervisor) { IsBackground = true, Name = $"simulated enclave {SlotUid}" };
        _hypervisor.Start();
        return Cid;
    }

    /// <inheritdoc/>
    public bool WaitForEvent(TimeSpan timeout)
    {
        if (_disposed)
            throw new EnclaveException(LaunchError.EnclaveEventWaitError, "poll on the enclave descriptor: not an open descriptor (POLLNVAL)", Libc.EBADF);
        return _stopped.Wait(timeout);
    }

    /// <summary>Closes the slot: stops the enclave, frees its cores, CID and memory copies (driver <c>ne_enclave_release</c>).</summary>
    public void Dispose()
    {
        lock (_gate)
        {
            if (_disposed)
                return;
            _disposed = true;
        }

        _closing.Cancel();
        _hypervisor?.Join(TimeSpan.FromSeconds(10));
        _consoleListener?.Dispose(); // after the join: the hypervisor thread is what creates it
        lock (_gate)
        {
            foreach (DonatedRegion region in _regions)
                region.Free();
            _regions.Clear();
        }

        _device.Simulator.UpdateState(state => ((JsonObject)state["Slots"]!).Remove(SlotKey));
        _device.Closed(this);
    }

    // The mappings behind a range, from the last read of smaps while that read covers the range and the range is
    // still mapped (mincore), else from a new read: a launch donates hundreds of hugepages mapped before the first
    // donation, and reading smaps for each took seconds.
    private List<ProcessMemoryMap.Mapping> MappingsOf(ulong address, ulong size)
    {
        if (_mappings is { } cached && ProcessMemoryMap.Covers(ProcessMemoryMap.Overlapping(cached, address, size), address, size)
            && ProcessMemoryMap.IsMapped(address, size))
        {
            return ProcessMemoryMap.Overlapping(cached, address, size);
        }

        _mappings = ProcessMemoryMap.All();
        return ProcessMemoryMap.Overlapping(_mappings, address, size);
    }

    private void Enter(string ioctl)
    {
        if (_disposed)
            throw EnclaveException.Ioctl(ioctl, Libc.EBADF);
        if (Environment.ProcessId != _creator)
            throw EnclaveException.Ioctl(ioctl, Libc.EIO); // driver: the caller's mm must be the creator's
        _device.ThrowInjected(ioctl);
        if (_started)
            throw Fail(ioctl, NeError.NotInInitState);
    }

    private static EnclaveException Fail(string operation, NeError error) => EnclaveException.Ioctl(operation, (int)error);

    private void Print(string line)
    {
        lock (_console)
        {
            _console.Append("[sim] ").Append(line).Append('\n');
            Monitor.PulseAll(_console);
        }
    }

    // The hypervisor's side of a started enclave: parse the EIF from donated memory, serve the console (debug mode),
    // "boot", heartbeat, run.
    private void RunHypervisor()
    {
        CancellationToken closing = _closing.Token;
        var enclaveVsock = new SimulatedVsock(_device.Simulator.VsockFolder, (uint)Cid);
        try
        {
            if ((StartFlags & NitroEnclaves.DebugModeFlag) != 0)
            {
                var hypervisor = new SimulatedVsock(_device.Simulator.VsockFolder, NitroEnclaves.HypervisorCid);
                _consoleListener = hypervisor.Listen(new VsockAddress(NitroEnclaves.HypervisorCid, (uint)Cid + NitroEnclaves.ConsolePortOffset));
                new Thread(ServeConsole) { IsBackground = true, Name = $"simulated console {SlotUid}" }.Start();
            }

            string mode = (StartFlags & NitroEnclaves.DebugModeFlag) != 0 ? "debug" : "production";
            Print($"Nitro Enclaves simulator: slot {SlotUid}, CID {Cid}, {mode} mode, " +
                $"vCPUs [{string.Join(", ", Vcpus)}], {DonatedBytes >> 20} MiB in {Regions.Count} regions");
            if (!InspectImage())
            {
                Stop("no bootable EIF at the load offset");
                return;
            }

            if (closing.WaitHandle.WaitOne(Config.BootMilliseconds))
                return;
            switch (Config.Boot)
            {
                case SimulatedBoot.Crash:
                    Stop("simulated kernel panic before the heartbeat");
                    return;
                case SimulatedBoot.Silent:
                    Print("simulated boot hangs: no heartbeat");
                    closing.WaitHandle.WaitOne();
                    return;
                case SimulatedBoot.WrongByte:
                case SimulatedBoot.Heartbeat:
                    SendHeartbeat(enclaveVsock, Config.Boot == SimulatedBoot.WrongByte ? (byte)0x00 : NitroEnclaves.HeartbeatByte);
                    break;
            }

            Print("no enclave code runs in the simulator; the enclave stays up until it is terminated");
            if (Config.RunMilliseconds is { } run)
            {
                if (!closing.WaitHandle.WaitOne(run))
                    Stop($"it shut itself down after {run} ms (RunMilliseconds)");
            }
        }
        catch (Exception ex) when (ex is IOException or EnclaveException or ObjectDisposedException)
        {
            Print($"hypervisor error: {ex.Message}");
            if (!closing.IsCancellationRequested)
                Stop("hypervisor error");
        }
    }

    private bool InspectImage()
    {
        ulong offset = NitroEnclaves.EifLoadOffset;
        ulong available = DonatedBytes > offset ? DonatedBytes - offset : 0;
        if (available < (ulong)EifHeader.EncodedSize)
        {
            Print($"no EIF: the donated memory ends before offset 0x{offset:x} + {EifHeader.EncodedSize}");
            return false;
        }

        byte[] header = new byte[EifHeader.EncodedSize];
        ReadDonated(offset, header);
        if (!header.AsSpan(0, 4).SequenceEqual(EifConstants.Magic))
        {
            Print($"no EIF at 0x{offset:x}: magic {Convert.ToHexString(header, 0, 4)}");
            return false;
        }

        // The image's length: the end of its last section (header table), bounded by the donated memory.
        EifHeader parsed = EifHeader.Read(header);
        ulong end = (ulong)EifHeader.EncodedSize;
        for (int i = 0; i < parsed.NumSections && i < EifConstants.MaxSections; i++)
        {
            ulong sectionOffset = parsed.Table.Offsets[i], sectionSize = parsed.Table.Sizes[i];
            if (sectionOffset > available || sectionSize > available - sectionOffset)
            {
                Print($"EIF at 0x{offset:x}: section {i} ('section_offsets' {sectionOffset}, 'section_sizes' {sectionSize}) runs past the donated memory ({available} bytes)");
                return false;
            }

            end = Math.Max(end, sectionOffset + (ulong)EifSectionHeader.EncodedSize + sectionSize);
        }

        if (end > available)
        {
            Print($"EIF at 0x{offset:x} runs past the donated memory ({end} bytes, {available} available)");
            return false;
        }

        try
        {
            using var image = new DonatedStream(this, offset, (long)end);
            using var reader = new EifReader(image, leaveOpen: false);
            EifDigests digests = reader.ComputeDigests();
            EifSection cmdline = reader.FindSection(EifSectionType.Cmdline)!.Value;
            using var cmdlineStream = reader.OpenSection(cmdline.Index);
            using var text = new StreamReader(cmdlineStream, Encoding.UTF8);
            Print($"EIF at 0x{offset:x}: version {reader.Header.Version}, {reader.Sections.Count} sections, {reader.RamdiskCount} ramdisks, {end} bytes, CRC {(digests.CrcMatches ? "ok" : "MISMATCH")}");
            Print($"kernel command line: {text.ReadToEnd().TrimEnd('\0')}");
            Print($"PCR0 {Pcr.ToHex(digests.Measurements.Pcr0)}");
            return digests.CrcMatches;
        }
        catch (EifFormatException ex)
        {
            Print($"invalid EIF at 0x{offset:x}: {ex.Message}");
            return false;
        }
    }

    private void SendHeartbeat(SimulatedVsock vsock, byte value)
    {
        var parent = new VsockAddress(NitroEnclaves.ParentCid, NitroEnclaves.HeartbeatPort);
        using VsockConnection connection = vsock.Connect(parent, TimeSpan.FromSeconds(10));
        connection.Stream.WriteByte(value);
        connection.Stream.Flush();
        connection.Stream.ReadTimeout = 10_000;
        int echo = connection.Stream.ReadByte();
        string answer = echo == value ? "echoed" : echo < 0 ? "got end of stream" : $"got 0x{echo:X2}";
        Print($"heartbeat 0x{value:X2} to {parent}: {answer}");
    }

    private void ServeConsole()
    {
        IVsockListener? listener = _consoleListener;
        if (listener is null)
            return;
        while (!_closing.IsCancellationRequested)
        {
            VsockConnection? connection;
            try
            {
                connection = listener.Accept(TimeSpan.FromMilliseconds(200));
            }
            catch (Exception ex) when (ex is ObjectDisposedException or EnclaveException or System.Net.Sockets.SocketException)
            {
                return;
            }

            if (connection is not null)
                new Thread(() => StreamConsole(connection)) { IsBackground = true }.Start();
        }
    }

    private void StreamConsole(VsockConnection connection)
    {
        using (connection)
        {
            int sent = 0;
            try
            {
                while (true)
                {
                    string chunk;
                    lock (_console)
                    {
                        while (_console.Length == sent && !_closing.IsCancellationRequested)
                            Monitor.Wait(_console, 200);
                        chunk = _console.ToString(sent, _console.Length - sent);
                        sent = _console.Length;
                    }

                    if (chunk.Length > 0)
                    {
                        connection.Stream.Write(Encoding.UTF8.GetBytes(chunk));
                        connection.Stream.Flush();
                    }

                    if (_closing.IsCancellationRequested)
                        return; // end of stream: the enclave is gone
                }
            }
            catch (IOException)
            {
                // The reader went away.
            }
        }
    }

    /// <summary>A donated region's bytes as they were when donated (native memory, freed on close).</summary>
    private sealed class DonatedRegion
    {
        private nint _copy;

        private DonatedRegion(nint address, ulong size, nint copy)
        {
            Address = address;
            Size = size;
            _copy = copy;
        }

        internal nint Address { get; }

        internal ulong Size { get; }

        internal static unsafe DonatedRegion Copy(nint address, ulong size)
        {
            // Sound: the caller checked that [address, address + size) is mapped in this process (smaps), and the
            // copy is a fresh allocation of the same size.
            nint copy = (nint)NativeMemory.Alloc((nuint)size);
            Buffer.MemoryCopy((void*)address, (void*)copy, size, size);
            return new DonatedRegion(address, size, copy);
        }

        internal unsafe Span<byte> Span(ulong offset, int count)
        {
            // Sound: the copy is Size bytes until Free, and callers stay within it.
            if (offset > Size || (ulong)count > Size - offset || _copy == 0)
                throw new ArgumentOutOfRangeException(nameof(count));
            return new Span<byte>((byte*)_copy + offset, count);
        }

        internal unsafe void Free()
        {
            if (_copy != 0)
                NativeMemory.Free((void*)_copy);
            _copy = 0;
        }
    }

    /// <summary>A read-only seekable stream over the donated copy, for the strict reader.</summary>
    private sealed class DonatedStream(SimulatedEnclaveVm vm, ulong start, long length) : Stream
    {
        private long _position;

        public override bool CanRead => true;

        public override bool CanSeek => true;

        public override bool CanWrite => false;

        public override long Length => length;

        public override long Position
        {
            get => _position;
            set => _position = value;
        }

        public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

        public override int Read(Span<byte> buffer)
        {
            int count = (int)Math.Clamp(length - _position, 0, buffer.Length);
            if (count == 0)
                return 0;
            vm.ReadDonated(start + (ulong)_position, buffer[..count]);
            _position += count;
            return count;
        }

        public override long Seek(long offset, SeekOrigin origin) => _position = origin switch
        {
            SeekOrigin.Begin => offset,
            SeekOrigin.Current => _position + offset,
            _ => length + offset,
        };

        public override void Flush()
        {
        }

        public override void SetLength(long value) => throw new NotSupportedException();

        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    }
}

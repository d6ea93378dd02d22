using System.Buffers.Binary;
using System.Globalization;
using System.Runtime.InteropServices;
using EifFormat;
using EifFormat.Json;
using EifFormat.Signing;
using EifTests.Shared;
using Launcher.Interop;
using Launcher.Memory;
using Launcher.Simulation;
using IoCrc32 = System.IO.Hashing.Crc32;

namespace Launcher.Tests;

/// <summary>EIFs made for the launch tests with <see cref="EifWriter"/> (the golden EIFs are only 8 KB).</summary>
internal static class TestImages
{
    /// <summary>The x86_64 kernel command line nitro-cli's build-enclave writes (launch.md §3.1; cli blobs/x86_64/cmdline).</summary>
    internal const string Cmdline =
        "reboot=k panic=30 pci=off nomodules console=ttyS0 i8042.noaux i8042.nomux i8042.nopnp i8042.dumbkbd random.trust_cpu=on";

    /// <summary>
    /// Writes an EIF to <paramref name="path"/>: a 4 KiB "kernel" and two ramdisks (1 KiB, then
    /// <paramref name="ramdiskBytes"/>) of seeded random bytes, the metadata section, and a signature section when
    /// <paramref name="signature"/> is given. Returns what the writer reports (length, CRC, PCRs).
    /// </summary>
    internal static EifWriteResult Write(
        string path, int ramdiskBytes, int seed = 1, bool arm64 = false, byte[]? kernel = null, EifSectionSource? signature = null)
    {
        var spec = new EifImageSpec
        {
            Kernel = EifSectionSource.FromBytes(kernel ?? RandomBytes(4096, seed), "kernel"),
            Cmdline = Cmdline,
            Ramdisks =
            [
                EifSectionSource.FromBytes(RandomBytes(1024, seed + 1), "bootstrap ramdisk"),
                EifSectionSource.FromBytes(RandomBytes(ramdiskBytes, seed + 2), "customer ramdisk"),
            ],
            Metadata = new EifMetadata("launch-test", "1.0", new EifBuildInfo("2024-01-01T00:00:00+00:00", "eif", "0.1.0", "Linux", "6.12"), JNull.Instance, JNull.Instance),
            Signature = signature,
            Arm64 = arm64,
        };
        return spec.WriteFile(path);
    }

    /// <summary>Writes an EIF signed with <paramref name="identity"/>'s key and certificate (see <see cref="Write"/>).</summary>
    internal static EifWriteResult WriteSigned(string path, TestPki.Identity identity, int ramdiskBytes = 2048, int seed = 1, byte[]? kernel = null)
    {
        EifSigningKey key = SigningKey(identity);
        return Write(path, ramdiskBytes, seed, kernel: kernel,
            signature: EifSectionSource.AfterMeasurement(pcr0 => EifSigner.CreateSection(identity.CertificatePem, key, pcr0), "signature"));
    }

    /// <summary>The signing key of a test identity (the library loads keys from PEM files only).</summary>
    internal static EifSigningKey SigningKey(TestPki.Identity identity)
    {
        string path = Path.Join(Path.GetTempPath(), $"eif-launch-key-{Guid.NewGuid():N}.pem");
        File.WriteAllText(path, identity.KeyPem());
        try
        {
            return EifSigningKey.Load(path, () => null);
        }
        finally
        {
            File.Delete(path);
        }
    }

    /// <summary>Recomputes an EIF's CRC (everything but its own four bytes, eif-format spec §2.3) after a deliberate change.</summary>
    internal static void FixCrc(byte[] file)
    {
        var crc = new IoCrc32();
        crc.Append(file.AsSpan(0, EifHeader.CrcCoveredSize));
        crc.Append(file.AsSpan(EifHeader.EncodedSize));
        BinaryPrimitives.WriteUInt32BigEndian(file.AsSpan(EifHeader.CrcCoveredSize), crc.GetCurrentHashAsUInt32());
    }

    internal static byte[] RandomBytes(int length, int seed)
    {
        byte[] bytes = new byte[length];
        new Random(seed).NextBytes(bytes);
        return bytes;
    }
}

/// <summary>
/// Memory mapped directly with mmap for the driver tests: several hugepages in one mapping (contiguous addresses, as
/// QEMU donates its RAM block), or ordinary 4 KiB pages. Unmapped on dispose, or in part with <see cref="UnmapTail"/>.
/// </summary>
internal sealed class Mapping : IDisposable
{
    private const ulong TwoMiB = NitroEnclaves.MemoryRegionGranule;

    // linux/mman.h: MAP_HUGE_2MB = 21 << MAP_HUGE_SHIFT (launch.md §2.3).
    private const int MapHuge2Mb = 21 << Libc.MAP_HUGE_SHIFT;

    private ulong _mapped;

    private Mapping(nint address, ulong size)
    {
        Address = address;
        _mapped = size;
        Size = size;
    }

    internal nint Address { get; }

    internal ulong Size { get; }

    /// <summary><paramref name="pages"/> 2 MiB hugepages in one mapping (2 MiB aligned, as every hugetlb mapping is).</summary>
    internal static Mapping HugePages(int pages)
    {
        ulong size = (ulong)pages * TwoMiB;
        nint address = Libc.Mmap(0, (nuint)size, Libc.PROT_READ | Libc.PROT_WRITE, Libc.MAP_PRIVATE | Libc.MAP_ANONYMOUS | Libc.MAP_HUGETLB | MapHuge2Mb, -1, 0);
        if (address == Libc.MAP_FAILED)
            throw new InvalidOperationException($"mmap of {pages} hugepages failed: errno {Marshal.GetLastPInvokeError()}");
        return new Mapping(address, size);
    }

    /// <summary>Ordinary anonymous memory (4 KiB pages).</summary>
    internal static Mapping Ordinary(ulong size)
    {
        nint address = Libc.Mmap(0, (nuint)size, Libc.PROT_READ | Libc.PROT_WRITE, Libc.MAP_PRIVATE | Libc.MAP_ANONYMOUS, -1, 0);
        if (address == Libc.MAP_FAILED)
            throw new InvalidOperationException($"mmap of {size} bytes failed: errno {Marshal.GetLastPInvokeError()}");
        return new Mapping(address, size);
    }

    /// <summary>Unmaps everything past the first <paramref name="keep"/> bytes.</summary>
    internal void UnmapTail(ulong keep)
    {
        if (Libc.Munmap(Address + (nint)keep, (nuint)(_mapped - keep)) != 0)
            throw new InvalidOperationException($"munmap failed: errno {Marshal.GetLastPInvokeError()}");
        _mapped = keep;
    }

    /// <summary>Fills the mapping from <paramref name="offset"/> with <paramref name="value"/>.</summary>
    internal unsafe void Fill(ulong offset, ulong count, byte value) =>
        new Span<byte>((byte*)Address + offset, checked((int)count)).Fill(value); // sound: callers stay inside the mapped part

    public void Dispose()
    {
        if (_mapped > 0)
            Libc.Munmap(Address, (nuint)_mapped);
        _mapped = 0;
    }
}

/// <summary>
/// A hugepage mapper around <see cref="HugeTlbMapper"/> that counts, can pretend the kernel ran out after some pages
/// (mmap's ENOMEM, which <see cref="IHugePageMapper.Map"/> reports as 0) or fail outright (E42), and can serve a size
/// the host does not have (<see cref="FourMiBPages"/>) as two contiguous 2 MiB hugepages.
/// </summary>
internal sealed class TestMapper : IHugePageMapper
{
    private const ulong TwoMiB = NitroEnclaves.MemoryRegionGranule;
    private readonly Dictionary<nint, Mapping> _multiPage = [];

    /// <summary>After this many successful maps every map returns 0 (the pool is empty).</summary>
    public int? RunOutAfter { get; init; }

    /// <summary>After this many successful maps the next map throws E42 (an mmap error other than ENOMEM).</summary>
    public int? FailAfter { get; init; }

    /// <summary>How many 4 MiB pages to hand out (as two 2 MiB hugepages each) before returning 0 for that size.</summary>
    public int FourMiBPages { get; init; }

    public int Mapped { get; private set; }

    public int Unmapped { get; private set; }

    public nint Map(ulong pageSize)
    {
        if (RunOutAfter is { } limit && Mapped >= limit)
            return 0;
        if (FailAfter is { } failAt && Mapped >= failAt)
            throw new EnclaveException(LaunchError.EnclaveMmapError, $"mmap of a {pageSize >> 20} MiB hugepage failed: injected by the test (errno {Libc.EFAULT})", Libc.EFAULT);
        nint address;
        if (pageSize == 2 * TwoMiB)
        {
            if (_multiPage.Count >= FourMiBPages)
                return 0;
            var mapping = Mapping.HugePages(2);
            _multiPage[mapping.Address] = mapping;
            address = mapping.Address;
        }
        else
        {
            address = HugeTlbMapper.Instance.Map(pageSize);
            if (address == 0)
                return 0;
        }

        Mapped++;
        return address;
    }

    public void Unmap(nint address, ulong pageSize)
    {
        Unmapped++;
        if (_multiPage.Remove(address, out Mapping? mapping))
            mapping.Dispose();
        else
            HugeTlbMapper.Instance.Unmap(address, pageSize);
    }
}

/// <summary>
/// What this process holds that a launch could leak: open file descriptors (fd → target, /proc/self/fd), hugetlb
/// mappings (/proc/self/smaps entries whose KernelPageSize is 2048 kB or more) and the hugetlb memory in them
/// (Private_Hugetlb + Shared_Hugetlb); and the free 2 MiB hugepages, with the hugetlb memory other processes hold
/// (/proc/&lt;pid&gt;/smaps_rollup) so that another test run on the same machine does not look like a leak.
/// </summary>
internal sealed record ProcessResources(
    IReadOnlySet<string> Descriptors, int HugeTlbMappings, ulong HugeTlbBytes, ulong OwnHugeTlbKilobytes, HugePageBalance Balance)
{
    internal static ProcessResources Take()
    {
        var descriptors = new HashSet<string>(StringComparer.Ordinal);
        foreach (string entry in Directory.EnumerateFileSystemEntries("/proc/self/fd"))
        {
            string? target;
            try
            {
                target = new FileInfo(entry).LinkTarget;
            }
            catch (IOException)
            {
                continue; // closed while listed
            }

            // Not the launcher's: the enumeration's own descriptor on /proc/<pid>/fd, and assemblies the runtime opens
            // (and keeps open) the first time a code path needs them.
            if (target is null || (target.StartsWith("/proc/", StringComparison.Ordinal) && target.EndsWith("/fd", StringComparison.Ordinal))
                || IsRuntimeFile(target))
            {
                continue;
            }

            descriptors.Add($"{Path.GetFileName(entry)} -> {target}");
        }

        int mappings = 0;
        ulong bytes = 0, hugetlbKilobytes = 0;
        ulong start = 0, end = 0;
        foreach (string line in File.ReadLines("/proc/self/smaps"))
        {
            int dash = line.IndexOf('-');
            int space = line.IndexOf(' ');
            if (dash > 0 && space > dash && ulong.TryParse(line.AsSpan(0, dash), NumberStyles.HexNumber, CultureInfo.InvariantCulture, out ulong s)
                && ulong.TryParse(line.AsSpan(dash + 1, space - dash - 1), NumberStyles.HexNumber, CultureInfo.InvariantCulture, out ulong e))
            {
                (start, end) = (s, e);
            }
            else if (line.StartsWith("KernelPageSize:", StringComparison.Ordinal))
            {
                if (Kilobytes(line) >= 2048)
                {
                    mappings++;
                    bytes += end - start;
                }
            }
            else if (line.StartsWith("Private_Hugetlb:", StringComparison.Ordinal) || line.StartsWith("Shared_Hugetlb:", StringComparison.Ordinal))
            {
                hugetlbKilobytes += Kilobytes(line);
            }
        }

        return new ProcessResources(descriptors, mappings, bytes, hugetlbKilobytes, HugePageBalance.Take());
    }

    /// <summary>
    /// Asserts that nothing is held beyond <paramref name="before"/>: no descriptor that was not open then, no more
    /// hugetlb mappings or hugetlb memory, the same free hugepages (allowing for what other processes took or gave
    /// back meanwhile). This process's resources are checked at once, without waiting: everything a failed launch
    /// took must be released before the exception reaches the caller, and a wait would let the garbage collector's
    /// finalizers close leaked sockets (and unlink their files) and hide the leak.
    /// </summary>
    internal static void AssertBackTo(ProcessResources before)
    {
        ProcessResources now = Take();
        Assert.Empty(now.Descriptors.Except(before.Descriptors).Order(StringComparer.Ordinal));
        Assert.True(now.Descriptors.Count <= before.Descriptors.Count, $"{now.Descriptors.Count} descriptors open, {before.Descriptors.Count} before");
        Assert.True(now.HugeTlbMappings <= before.HugeTlbMappings, $"{now.HugeTlbMappings} hugetlb mappings, {before.HugeTlbMappings} before");
        Assert.True(now.HugeTlbBytes <= before.HugeTlbBytes, $"{now.HugeTlbBytes} bytes of hugetlb mappings, {before.HugeTlbBytes} before");
        Assert.True(now.OwnHugeTlbKilobytes <= before.OwnHugeTlbKilobytes, $"{now.OwnHugeTlbKilobytes} kB of hugetlb memory held, {before.OwnHugeTlbKilobytes} kB before");
        before.Balance.AssertBack();
    }

    private static ulong Kilobytes(string line) =>
        ulong.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture);

    private static bool IsRuntimeFile(string target) =>
        (target.EndsWith(".dll", StringComparison.Ordinal) || target.EndsWith(".so", StringComparison.Ordinal))
        && (target.StartsWith(Path.GetDirectoryName(typeof(object).Assembly.Location)!, StringComparison.Ordinal)
            || target.StartsWith(AppContext.BaseDirectory, StringComparison.Ordinal));
}

/// <summary>
/// <see cref="HugePages.Free"/> together with the hugetlb memory every other process holds, so that "the free
/// hugepages are back" can be checked while another test run on the machine maps and unmaps hugepages.
/// </summary>
/// <param name="Free">free_hugepages of the 2 MiB pool.</param>
/// <param name="OthersKilobytes">Private_Hugetlb + Shared_Hugetlb of every other process.</param>
internal readonly record struct HugePageBalance(long Free, ulong OthersKilobytes)
{
    private const long PageKilobytes = 2048;

    /// <summary>Free pages plus the pages others hold: constant unless this process keeps some.</summary>
    internal long FreeWithoutOthers => Free + (long)(OthersKilobytes / PageKilobytes);

    internal static HugePageBalance Take()
    {
        long free = HugePages.Free;
        ulong others = 0;
        string self = Environment.ProcessId.ToString(CultureInfo.InvariantCulture);
        foreach (string process in Directory.EnumerateDirectories("/proc"))
        {
            string pid = Path.GetFileName(process);
            if (pid == self || !pid.All(char.IsAsciiDigit))
                continue;
            try
            {
                foreach (string line in File.ReadLines(Path.Join(process, "smaps_rollup")))
                {
                    if (line.StartsWith("Private_Hugetlb:", StringComparison.Ordinal) || line.StartsWith("Shared_Hugetlb:", StringComparison.Ordinal))
                        others += ulong.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture);
                }
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                // The process ended, or is a kernel thread.
            }
        }

        return new HugePageBalance(free, others);
    }

    /// <summary>
    /// Asserts the free hugepages are back to this balance. The two counters cannot be read at one instant, so a
    /// mismatch is read again for up to 2 s (this process's own hugetlb memory is checked separately, at once).
    /// </summary>
    internal void AssertBack()
    {
        long deadline = Environment.TickCount64 + 2000;
        HugePageBalance now = Take();
        while (now.FreeWithoutOthers != FreeWithoutOthers && Environment.TickCount64 < deadline)
        {
            Thread.Sleep(20);
            now = Take();
        }

        Assert.True(now.FreeWithoutOthers == FreeWithoutOthers,
            $"{now.Free} free 2 MiB hugepages ({now.OthersKilobytes} kB held by other processes), {Free} before ({OthersKilobytes} kB held by others)");
    }
}

/// <summary>
/// Opens what the process opens once and keeps (the runtime's socket engine, an epoll descriptor, opened on the first
/// socket operation), by one complete launch and termination with a console, before any test counts descriptors.
/// </summary>
internal static class ProcessWarmUp
{
    private static readonly Lazy<bool> Done = new(Run);

    internal static void Ensure() => _ = Done.Value;

    private static bool Run()
    {
        HugePages.Require(32);
        using var scratch = new TestScratch();
        SimulatedNitro sim = scratch.Simulator();
        using RunningEnclave enclave = new EnclaveLauncher(sim.Platform).Launch(new LaunchRequest
        {
            EifPath = TestEnvironment.Golden("synth_sha384_named.eif"),
            MemoryMiB = 64,
            CpuCount = 2,
            DebugMode = true,
            HeartbeatTimeout = TimeSpan.FromSeconds(10),
        });
        using (Stream console = enclave.OpenConsole(TimeSpan.FromSeconds(5)))
            console.ReadTimeout = 1000;
        enclave.Terminate();
        return true;
    }
}

/// <summary>Simulators and folders a test class creates, removed when the test ends.</summary>
internal sealed class TestScratch : IDisposable
{
    private readonly List<string> _folders = [];

    /// <summary>A simulator in a fresh folder (<see cref="TestEnvironment.Simulator"/>), removed on dispose.</summary>
    internal SimulatedNitro Simulator(SimulatorConfig? config = null)
    {
        SimulatedNitro sim = TestEnvironment.Simulator(config);
        _folders.Add(sim.Folder);
        return sim;
    }

    /// <summary>A fresh folder, removed on dispose.</summary>
    internal string Folder(string prefix)
    {
        string folder = TestEnvironment.TemporaryFolder(prefix);
        _folders.Add(folder);
        return folder;
    }

    public void Dispose()
    {
        foreach (string folder in _folders)
        {
            try
            {
                Directory.Delete(folder, recursive: true);
            }
            catch (IOException)
            {
                // A socket file still bound by a thread that is ending; /tmp is cleaned eventually.
            }
        }
    }
}

using System.Globalization;
using System.Runtime.InteropServices;
using Launcher.Memory;
using Microsoft.Win32.SafeHandles;

namespace Launcher.Tests;

/// <summary>
/// <see cref="HugePageAllocator"/> against a fake mapper (nitro-cli's two passes and trimming, resource_manager.rs
/// <c>ResourceAllocator::allocate</c>, spec/launch.md §2.3), and <see cref="EnclaveMemory"/> over ordinary aligned heap
/// memory (the image write of spec/launch.md §2.4). The tests on real hugepages are in <see cref="HugePageMemoryTests"/>.
/// </summary>
public sealed class MemoryTests
{
    private const ulong MiB = 1UL << 20;
    private const ulong TwoMiB = 2 * MiB;   // MAP_HUGE_2MB (x86_64), NE_MIN_MEM_REGION_SIZE
    private const ulong OneGiB = 1UL << 30; // MAP_HUGE_1GB (x86_64)

    // --- HugePageAllocator: pass 1 ------------------------------------------------------------------------------

    [Fact]
    public void Allocate_EnoughOfEachSize_TakesLargestPagesFirst()
    {
        var mapper = new FakeMapper((OneGiB, 3), (TwoMiB, 10));
        using EnclaveMemory memory = HugePageAllocator.Allocate(2 * OneGiB + 4 * MiB, [TwoMiB, OneGiB], mapper);
        Assert.Equal(new[] { OneGiB, OneGiB, TwoMiB, TwoMiB }, memory.Regions.Select(r => r.Size));
        Assert.Equal(new[] { OneGiB, OneGiB, TwoMiB, TwoMiB }, mapper.Attempts);   // no map beyond the need
        Assert.Equal(2 * OneGiB + 4 * MiB, memory.TotalBytes);
        Assert.Empty(mapper.Unmaps);
        Assert.All(memory.Regions, r => Assert.Equal(r.Size, r.PageSize));
        Assert.All(memory.Regions, r => Assert.Equal(0UL, (ulong)r.Address % r.PageSize));
        Assert.Equal(memory.Regions.Select(r => r.Address).Order(), mapper.Live.Keys.Order());
    }

    [Fact]
    public void Allocate_LargePagesRunOut_MovesToTheNextSizeAtTheFirstFailure()
    {
        var mapper = new FakeMapper((OneGiB, 1), (TwoMiB, 1024));
        using EnclaveMemory memory = HugePageAllocator.Allocate(3 * OneGiB, [OneGiB, TwoMiB], mapper);
        Assert.Equal(OneGiB, memory.Regions[0].Size);
        Assert.Equal(1 + 1024, memory.Regions.Count);
        Assert.All(memory.Regions.Skip(1), r => Assert.Equal(TwoMiB, r.Size));
        Assert.Equal(2, mapper.Attempts.Count(size => size == OneGiB));   // one success, one failure, then 2 MiB pages
        Assert.Equal(3 * OneGiB, memory.TotalBytes);
        Assert.Empty(mapper.Unmaps);
    }

    [Fact]
    public void Allocate_DuplicateSizes_AreTriedOnce()
    {
        var mapper = new FakeMapper((TwoMiB, 10));
        using EnclaveMemory memory = HugePageAllocator.Allocate(4 * MiB, [TwoMiB, TwoMiB], mapper);
        Assert.Equal(new[] { TwoMiB, TwoMiB }, mapper.Attempts);
        Assert.Equal(4 * MiB, memory.TotalBytes);
    }

    [Fact]
    public void Allocate_RequestNotAMultipleOfThePageSize_RoundsUpInPass2()
    {
        var mapper = new FakeMapper((TwoMiB, 10));
        using EnclaveMemory memory = HugePageAllocator.Allocate(5 * MiB, [TwoMiB], mapper);
        Assert.Equal(3, memory.Regions.Count);
        Assert.Equal(6 * MiB, memory.TotalBytes);
    }

    // --- pass 2 and trimming ------------------------------------------------------------------------------------

    [Fact]
    public void Allocate_OnlyOneGigabytePageLeft_Pass2TakesTheWholePage()
    {
        // nitro-cli#602 (spec/launch.md §2.3): with only 1 GiB pages reserved, --memory 256 takes a whole 1 GiB.
        var mapper = new FakeMapper((OneGiB, 1), (TwoMiB, 0));
        using EnclaveMemory memory = HugePageAllocator.Allocate(256 * MiB, [OneGiB, TwoMiB], mapper);
        MemoryRegion region = Assert.Single(memory.Regions);
        Assert.Equal(OneGiB, region.Size);
        Assert.Equal(OneGiB, memory.TotalBytes);
        // Pass 1 skips 1 GiB (need < page) and fails on 2 MiB; pass 2 goes smallest first: 2 MiB fails, 1 GiB succeeds.
        Assert.Equal(new[] { TwoMiB, TwoMiB, OneGiB }, mapper.Attempts);
    }

    [Fact]
    public void Allocate_Pass2OvershootsWithALargePage_KeepsOnlyTheLargePageAndUnmapsTheSmallOnes()
    {
        var mapper = new FakeMapper((OneGiB, 1), (TwoMiB, 2));
        using EnclaveMemory memory = HugePageAllocator.Allocate(5 * MiB, [OneGiB, TwoMiB], mapper);
        // Mapped 2 MiB, 2 MiB (pass 1), then 1 GiB (pass 2); largest first, 1 GiB alone covers 5 MiB.
        Assert.Equal(OneGiB, Assert.Single(memory.Regions).Size);
        Assert.Equal(new[] { TwoMiB, TwoMiB }, mapper.Unmaps.Select(u => u.Size));
        Assert.Equal(new[] { memory.Regions[0].Address }, mapper.Live.Keys);
    }

    [Fact]
    public void Allocate_TrimmedRegions_AreTheShortestLargestFirstPrefix()
    {
        var mapper = new FakeMapper((OneGiB, 2), (TwoMiB, 1));
        using EnclaveMemory memory = HugePageAllocator.Allocate(OneGiB + 3 * MiB, [OneGiB, TwoMiB], mapper);
        // Pass 1: 1 GiB, 2 MiB (then 2 MiB fails, 1 MiB still needed); pass 2: 2 MiB fails, 1 GiB succeeds.
        // Sorted: 1 GiB, 1 GiB, 2 MiB; the two 1 GiB pages cover the request, the 2 MiB page is unmapped.
        Assert.Equal(new[] { OneGiB, OneGiB }, memory.Regions.Select(r => r.Size));
        Assert.Equal(mapper.Maps[0].Address, memory.Regions[0].Address);   // stable: the first 1 GiB page stays first
        Assert.Equal(TwoMiB, Assert.Single(mapper.Unmaps).Size);
        Assert.Equal(2, mapper.Live.Count);
        Assert.Equal(2 * OneGiB, memory.TotalBytes);
    }

    // --- failures -----------------------------------------------------------------------------------------------

    [Fact]
    public void Allocate_NotEnoughPages_ThrowsInsufficientMemoryAvailableWithNothingMapped()
    {
        var mapper = new FakeMapper((TwoMiB, 3));
        ulong askedFor = 0;
        EnclaveException ex = Assert.Throws<EnclaveException>(() => HugePageAllocator.Allocate(10 * MiB, [TwoMiB], mapper, bytes =>
        {
            askedFor = bytes;
            return "reserve more 2M pages";
        }));
        Assert.Equal(LaunchError.InsufficientMemoryAvailable, ex.Error); // E27 (spec/launch.md §2.3)
        Assert.Empty(mapper.Live);
        Assert.Equal(3, mapper.Unmaps.Count);
        Assert.Equal(10 * MiB, askedFor);
        Assert.Contains("10 MiB", ex.Message);
        Assert.Contains("6 MiB could be mapped", ex.Message);
        Assert.EndsWith("; reserve more 2M pages", ex.Message);
    }

    [Fact]
    public void Allocate_NoPagesAtAllAndNoShortageText_ThrowsInsufficientMemoryAvailable()
    {
        var mapper = new FakeMapper((TwoMiB, 0), (OneGiB, 0));
        EnclaveException ex = Assert.Throws<EnclaveException>(() => HugePageAllocator.Allocate(64 * MiB, [TwoMiB, OneGiB], mapper));
        Assert.Equal(LaunchError.InsufficientMemoryAvailable, ex.Error);
        Assert.Contains("0 MiB could be mapped", ex.Message);
        Assert.DoesNotContain(";", ex.Message);
        Assert.Empty(mapper.Maps);
    }

    [Fact]
    public void Allocate_MapperFailsInTheMiddle_UnmapsEverythingAndRethrows()
    {
        var failure = new EnclaveException(LaunchError.EnclaveMmapError, "mmap failed", 1);
        var mapper = new FakeMapper((TwoMiB, 10)) { FailOnAttempt = 3, Failure = failure };
        EnclaveException ex = Assert.Throws<EnclaveException>(() => HugePageAllocator.Allocate(10 * MiB, [TwoMiB], mapper));
        Assert.Same(failure, ex);
        Assert.Equal(2, mapper.Maps.Count);
        Assert.Empty(mapper.Live);
        Assert.Equal(mapper.Maps.Select(m => m.Address).Order(), mapper.Unmaps.Select(u => u.Address).Order());
    }

    [Fact]
    public void Allocate_MapperThrowsSomethingElse_UnmapsEverythingAndRethrows()
    {
        var mapper = new FakeMapper((OneGiB, 1), (TwoMiB, 10)) { FailOnAttempt = 4, Failure = new InvalidOperationException("bug") };
        Assert.Throws<InvalidOperationException>(() => HugePageAllocator.Allocate(OneGiB + 10 * MiB, [OneGiB, TwoMiB], mapper));
        Assert.Equal(3, mapper.Maps.Count);
        Assert.Empty(mapper.Live);
    }

    [Fact]
    public void Allocate_UnmapAlsoFailsWhileCleaningUp_ReportsTheFirstError()
    {
        var failure = new EnclaveException(LaunchError.EnclaveMmapError, "mmap failed", 1);
        var mapper = new FakeMapper((TwoMiB, 10)) { FailOnAttempt = 3, Failure = failure, FailUnmap = true };
        Assert.Same(failure, Assert.Throws<EnclaveException>(() => HugePageAllocator.Allocate(10 * MiB, [TwoMiB], mapper)));
        Assert.Equal(2, mapper.Unmaps.Count);   // both were tried despite the failures
    }

    [Fact]
    public void Allocate_UnsupportedPageSize_PropagatesNoSuchHugepageFlag()
    {
        var mapper = new FakeMapper((TwoMiB, 10));   // the fake throws E25 for sizes it does not know, as HugeTlbMapper does
        EnclaveException ex = Assert.Throws<EnclaveException>(() => HugePageAllocator.Allocate(OneGiB, [OneGiB, TwoMiB], mapper));
        Assert.Equal(LaunchError.NoSuchHugepageFlag, ex.Error);
        Assert.Empty(mapper.Live);
    }

    [Fact]
    public void Allocate_ZeroBytesOrNoSizes_ThrowsArgumentOutOfRange()
    {
        var mapper = new FakeMapper((TwoMiB, 10));
        Assert.Throws<ArgumentOutOfRangeException>(() => HugePageAllocator.Allocate(0, [TwoMiB], mapper));
        Assert.Throws<ArgumentOutOfRangeException>(() => HugePageAllocator.Allocate(TwoMiB, [], mapper));
        Assert.Empty(mapper.Attempts);
    }

    // --- EnclaveMemory lifetime ---------------------------------------------------------------------------------

    [Fact]
    public void Release_MappedRegions_UnmapsEachOnceAndIsIdempotent()
    {
        var mapper = new FakeMapper((TwoMiB, 4));
        EnclaveMemory memory = HugePageAllocator.Allocate(8 * MiB, [TwoMiB], mapper);
        memory.Release();
        Assert.Empty(mapper.Live);
        Assert.Equal(4, mapper.Unmaps.Count);
        Assert.Empty(memory.Regions);
        memory.Release();
        memory.Dispose();
        Assert.Equal(4, mapper.Unmaps.Count);
        Assert.Empty(mapper.DoubleUnmaps);
    }

    [Fact]
    public void Release_UnmapFails_TriesEveryRegionThenThrowsTheFirstError()
    {
        var mapper = new FakeMapper((TwoMiB, 4));
        EnclaveMemory memory = HugePageAllocator.Allocate(8 * MiB, [TwoMiB], mapper);
        mapper.FailUnmap = true;
        EnclaveException ex = Assert.Throws<EnclaveException>(memory.Release);
        Assert.Equal(LaunchError.EnclaveMunmapError, ex.Error);
        Assert.Equal(4, mapper.Unmaps.Count);
        Assert.Equal(mapper.Unmaps[0].Address.ToString(CultureInfo.InvariantCulture), ex.Message);
    }

    [Fact]
    public void Dispose_UnmapFails_DoesNotThrow()
    {
        var mapper = new FakeMapper((TwoMiB, 2));
        EnclaveMemory memory = HugePageAllocator.Allocate(4 * MiB, [TwoMiB], mapper);
        mapper.FailUnmap = true;
        memory.Dispose();
        Assert.Equal(2, mapper.Unmaps.Count);
    }

    [Fact]
    public void WriteImageAndRead_AfterRelease_ThrowObjectDisposed()
    {
        var mapper = new FakeMapper((TwoMiB, 1));
        EnclaveMemory memory = HugePageAllocator.Allocate(TwoMiB, [TwoMiB], mapper);
        memory.Release();
        using ImageFile file = new([]);
        Assert.Throws<ObjectDisposedException>(() => memory.WriteImage(file.Handle, 0, 0, file.Path));
        Assert.Throws<ObjectDisposedException>(() => memory.Read(0, new byte[1]));
    }

    // --- EnclaveMemory.WriteImage over aligned heap memory (the same code path as hugepages, without the pool) ----

    [Fact]
    public void WriteImage_RegionsOfMixedSizes_SpillsAcrossThemInDonationOrder()
    {
        using var heap = new HeapMapper();
        using EnclaveMemory memory = heap.Memory(4 * MiB, TwoMiB, TwoMiB);
        byte[] image = RandomBytes((int)(4 * MiB) + 7, seed: 1);
        using ImageFile file = new(image);
        memory.WriteImage(file.Handle, image.Length, 3 * MiB, file.Path);

        // Region 0 (4 MiB) holds bytes [0, 1 MiB) at 3 MiB; region 1 holds [1 MiB, 3 MiB); region 2 starts with the rest.
        Assert.Equal(image.AsSpan(0, (int)MiB), heap.Bytes(memory.Regions[0]).Slice((int)(3 * MiB)));
        Assert.Equal(image.AsSpan((int)MiB, (int)TwoMiB), heap.Bytes(memory.Regions[1]));
        Assert.Equal(image.AsSpan((int)(3 * MiB)), heap.Bytes(memory.Regions[2])[..((int)MiB + 7)]);
        Assert.True(heap.Bytes(memory.Regions[0])[..(int)(3 * MiB)].IndexOfAnyExcept((byte)0) < 0);
        Assert.True(heap.Bytes(memory.Regions[2])[((int)MiB + 7)..].IndexOfAnyExcept((byte)0) < 0);

        byte[] back = new byte[image.Length];
        memory.Read(3 * MiB, back);
        Assert.Equal(image, back);
    }

    [Fact]
    public void WriteImage_ExactlyFills_Succeeds()
    {
        using var heap = new HeapMapper();
        using EnclaveMemory memory = heap.Memory(TwoMiB, TwoMiB);
        byte[] image = RandomBytes((int)(3 * MiB), seed: 2);
        using ImageFile file = new(image);
        memory.WriteImage(file.Handle, image.Length, MiB, file.Path);
        byte[] back = new byte[image.Length];
        memory.Read(MiB, back);
        Assert.Equal(image, back);
    }

    [Theory]
    [InlineData(3 * 1024 * 1024 + 1, 1024 * 1024)]   // one byte too many after a 1 MiB offset
    [InlineData(1, 4 * 1024 * 1024)]                 // offset at the very end, one byte
    [InlineData(0, 4 * 1024 * 1024 + 1)]             // offset past the end
    public void WriteImage_DoesNotFit_ThrowsMemoryOverflowAndWritesNothing(int length, long offset)
    {
        using var heap = new HeapMapper();
        using EnclaveMemory memory = heap.Memory(TwoMiB, TwoMiB);
        byte[] image = RandomBytes(length, seed: 3);
        using ImageFile file = new(image);
        EnclaveException ex = Assert.Throws<EnclaveException>(() => memory.WriteImage(file.Handle, image.Length, (ulong)offset, file.Path));
        Assert.Equal(LaunchError.MemoryOverflow, ex.Error); // E34 (nitro-cli document_errors.rs)
        Assert.Contains(file.Path, ex.Message);
        Assert.All(memory.Regions, r => Assert.True(heap.Bytes(r).IndexOfAnyExcept((byte)0) < 0));
    }

    [Fact]
    public void WriteImage_ZeroLength_WritesNothing()
    {
        using var heap = new HeapMapper();
        using EnclaveMemory memory = heap.Memory(TwoMiB);
        using ImageFile file = new([]);
        memory.WriteImage(file.Handle, 0, TwoMiB, file.Path);
        Assert.True(heap.Bytes(memory.Regions[0]).IndexOfAnyExcept((byte)0) < 0);
    }

    [Fact]
    public void WriteImage_FileShorterThanTheLength_ThrowsEifParsingError()
    {
        // The file shrank after its size was taken: the copy hits the end of file (E35, spec/launch.md §2.4).
        using var heap = new HeapMapper();
        using EnclaveMemory memory = heap.Memory(TwoMiB, TwoMiB);
        using ImageFile file = new(RandomBytes(1000, seed: 4));
        EnclaveException ex = Assert.Throws<EnclaveException>(() => memory.WriteImage(file.Handle, 5000, 0, file.Path));
        Assert.Equal(LaunchError.EifParsingError, ex.Error);
        Assert.Contains(file.Path, ex.Message);
    }

    [Fact]
    public void WriteImage_NegativeLength_ThrowsArgumentOutOfRange()
    {
        using var heap = new HeapMapper();
        using EnclaveMemory memory = heap.Memory(TwoMiB);
        using ImageFile file = new([1]);
        Assert.Throws<ArgumentOutOfRangeException>(() => memory.WriteImage(file.Handle, -1, 0, file.Path));
    }

    [Fact]
    public void Read_PastTheEnd_ThrowsArgumentOutOfRange()
    {
        using var heap = new HeapMapper();
        using EnclaveMemory memory = heap.Memory(TwoMiB);
        Assert.Throws<ArgumentOutOfRangeException>(() => memory.Read(TwoMiB - 1, new byte[2]));
        Assert.Throws<ArgumentOutOfRangeException>(() => memory.Read(TwoMiB, new byte[1]));
    }

    internal static byte[] RandomBytes(int length, int seed)
    {
        byte[] bytes = new byte[length];
        new Random(seed).NextBytes(bytes);
        return bytes;
    }

    /// <summary>
    /// Hands out fake addresses aligned to the page size from per-size pools, and records every call. Sizes it was not
    /// told about are refused with E25, as <see cref="HugeTlbMapper"/> refuses sizes the kernel does not offer.
    /// </summary>
    private sealed class FakeMapper : IHugePageMapper
    {
        private readonly Dictionary<ulong, int> _free = [];
        private ulong _next = 1UL << 40;   // 1 TiB: aligned for every size used here; never dereferenced

        public FakeMapper(params (ulong Size, int Count)[] pools)
        {
            foreach ((ulong size, int count) in pools)
                _free[size] = count;
        }

        public List<ulong> Attempts { get; } = [];

        public List<(nint Address, ulong Size)> Maps { get; } = [];

        public List<(nint Address, ulong Size)> Unmaps { get; } = [];

        public List<nint> DoubleUnmaps { get; } = [];

        public Dictionary<nint, ulong> Live { get; } = [];

        public int FailOnAttempt { get; init; }

        public Exception? Failure { get; init; }

        public bool FailUnmap { get; set; }

        public nint Map(ulong pageSize)
        {
            Attempts.Add(pageSize);
            if (Attempts.Count == FailOnAttempt)
                throw Failure!;
            if (!_free.TryGetValue(pageSize, out int free))
                throw new EnclaveException(LaunchError.NoSuchHugepageFlag, $"no {pageSize}-byte pages");
            if (free == 0)
                return 0;
            _free[pageSize] = free - 1;
            ulong address = (_next + pageSize - 1) / pageSize * pageSize;
            _next = address + pageSize;
            Maps.Add(((nint)address, pageSize));
            Live.Add((nint)address, pageSize);
            return (nint)address;
        }

        public void Unmap(nint address, ulong pageSize)
        {
            Unmaps.Add((address, pageSize));
            if (FailUnmap)
                throw new EnclaveException(LaunchError.EnclaveMunmapError, address.ToString(CultureInfo.InvariantCulture));
            if (!Live.Remove(address))
                DoubleUnmaps.Add(address);
            else
                _free[pageSize]++;
        }
    }

    /// <summary>Zeroed, 2 MiB-aligned native heap blocks standing in for hugepages (no pool needed).</summary>
    private sealed unsafe class HeapMapper : IHugePageMapper, IDisposable
    {
        private readonly HashSet<nint> _live = [];

        public nint Map(ulong pageSize)
        {
            void* block = NativeMemory.AlignedAlloc((nuint)pageSize, (nuint)TwoMiB);
            NativeMemory.Clear(block, (nuint)pageSize);
            _live.Add((nint)block);
            return (nint)block;
        }

        public void Unmap(nint address, ulong pageSize)
        {
            if (_live.Remove(address))
                NativeMemory.AlignedFree((void*)address);
        }

        public EnclaveMemory Memory(params ulong[] sizes) =>
            new(this, sizes.Select(size => new MemoryRegion(Map(size), size, size)).ToList());

        public Span<byte> Bytes(MemoryRegion region) => new((void*)region.Address, checked((int)region.Size));

        public void Dispose()
        {
            foreach (nint address in _live)
                NativeMemory.AlignedFree((void*)address);
            _live.Clear();
        }
    }
}

/// <summary>A temporary file holding an image; deleted with its folder on dispose.</summary>
internal sealed class ImageFile : IDisposable
{
    public ImageFile(byte[] content)
    {
        Folder = TestEnvironment.TemporaryFolder("img");
        Path = System.IO.Path.Join(Folder, "image.eif");
        File.WriteAllBytes(Path, content);
        Handle = File.OpenHandle(Path);
    }

    public string Folder { get; }

    public string Path { get; }

    public SafeFileHandle Handle { get; }

    public void Dispose()
    {
        Handle.Dispose();
        Directory.Delete(Folder, recursive: true);
    }
}

/// <summary>
/// Enclave memory on real 2 MiB hugepages (<see cref="HugeTlbMapper"/>): alignment, the image write across regions,
/// and unmapping, checked against /proc/self/smaps.
/// </summary>
[Collection(HugePagesCollection.Name)]
public sealed class HugePageMemoryTests
{
    private const ulong MiB = 1UL << 20;
    private const ulong TwoMiB = 2 * MiB;

    [Fact]
    public void HugeTlbMapperMap_TwoMiB_IsAlignedAndBackedByHugepages()
    {
        HugePages.Require(1);
        nint address = HugeTlbMapper.Instance.Map(TwoMiB);
        try
        {
            Assert.NotEqual(0, address);
            Assert.Equal(0UL, (ulong)address % TwoMiB);
            Smaps.Mapping? mapping = Smaps.Find(address);
            Assert.NotNull(mapping);
            Assert.Equal(2048, mapping.Value.KernelPageKb);   // hugetlb VMA: KernelPageSize 2048 kB
            Assert.Equal((ulong)address + TwoMiB, mapping.Value.End);
        }
        finally
        {
            HugeTlbMapper.Instance.Unmap(address, TwoMiB);
        }

        Assert.Null(Smaps.Find(address));
    }

    [Fact]
    public void WriteImage_NineMiBFileAtTheLoadOffset_ReadsBackExactly()
    {
        // spec/launch.md §2.4: the EIF goes at memory_offset (NE_EIF_LOAD_OFFSET = 8 MiB) in the concatenated regions;
        // with 2 MiB pages the first four regions are skipped entirely.
        HugePages.Require(9);
        byte[] image = MemoryTests.RandomBytes((int)(9 * MiB) + 12345, seed: 9);
        using ImageFile file = new(image);
        using EnclaveMemory memory = HugePageAllocator.Allocate(18 * MiB, [TwoMiB], HugeTlbMapper.Instance);
        Assert.Equal(9, memory.Regions.Count);

        memory.WriteImage(file.Handle, image.Length, NitroEnclaves.EifLoadOffset, file.Path);

        byte[] back = new byte[image.Length];
        memory.Read(NitroEnclaves.EifLoadOffset, back);
        Assert.Equal(image, back);
        byte[] before = new byte[NitroEnclaves.EifLoadOffset];
        memory.Read(0, before);
        Assert.True(before.AsSpan().IndexOfAnyExcept((byte)0) < 0, "bytes before the load offset were written");
        byte[] after = new byte[memory.TotalBytes - NitroEnclaves.EifLoadOffset - (ulong)image.Length];
        memory.Read(NitroEnclaves.EifLoadOffset + (ulong)image.Length, after);
        Assert.True(after.AsSpan().IndexOfAnyExcept((byte)0) < 0, "bytes after the image were written");
    }

    [Fact]
    public void WriteImage_FileLargerThanTheMemoryAfterTheOffset_ThrowsMemoryOverflow()
    {
        HugePages.Require(8);
        using ImageFile file = new(MemoryTests.RandomBytes((int)(9 * MiB), seed: 10));
        using EnclaveMemory memory = HugePageAllocator.Allocate(16 * MiB, [TwoMiB], HugeTlbMapper.Instance);
        EnclaveException ex = Assert.Throws<EnclaveException>(
            () => memory.WriteImage(file.Handle, 9 * (long)MiB, NitroEnclaves.EifLoadOffset, file.Path));
        Assert.Equal(LaunchError.MemoryOverflow, ex.Error); // E34
        Assert.Contains("17 MiB", ex.Message);              // what it needs
        Assert.Contains("16 MiB", ex.Message);              // what it has
    }

    [Fact]
    public void Release_RealHugepages_UnmapsEveryRegion()
    {
        HugePages.Require(4);
        EnclaveMemory memory = HugePageAllocator.Allocate(8 * MiB, [TwoMiB], HugeTlbMapper.Instance);
        nint[] addresses = memory.Regions.Select(r => r.Address).ToArray();
        Assert.Equal(4, addresses.Length);
        Assert.All(addresses, a => Assert.NotNull(Smaps.Find(a)));
        memory.Release();
        Assert.All(addresses, a => Assert.Null(Smaps.Find(a)));
    }

    [Theory]
    [InlineData(4UL << 20)]    // a power of two the x86_64 kernel has no hstate for: mmap EINVAL
    [InlineData(64UL << 10)]   // arm64's 64 KiB granule: below NE_MIN_MEM_REGION_SIZE (2 MiB)
    [InlineData(3UL << 20)]    // not a power of two
    [InlineData(0UL)]
    public void HugeTlbMapperMap_UnsupportedSize_ThrowsNoSuchHugepageFlag(ulong size)
    {
        EnclaveException ex = Assert.Throws<EnclaveException>(() => HugeTlbMapper.Instance.Map(size));
        Assert.Equal(LaunchError.NoSuchHugepageFlag, ex.Error); // E25 (nitro-cli document_errors.rs)
    }

    [Fact]
    public void HugeTlbMapperMap_EmptyPool_ReturnsZero()
    {
        // mmap of a hugetlb page fails with ENOMEM when its pool has no free page; the mapper reports that as 0.
        const string pool = "/sys/kernel/mm/hugepages/hugepages-1048576kB/free_hugepages";
        if (!File.Exists(pool))
            Assert.Skip("this kernel offers no 1 GiB hugepages");
        if (File.ReadAllText(pool).Trim() != "0")
            Assert.Skip("1 GiB hugepages are reserved on this host, so the pool is not empty");
        Assert.Equal(0, HugeTlbMapper.Instance.Map(1UL << 30));
    }

    [Fact]
    public void HugeTlbMapperUnmap_UnalignedAddress_ThrowsMunmapError()
    {
        // munmap(2) requires a page-aligned address (EINVAL).
        EnclaveException ex = Assert.Throws<EnclaveException>(() => HugeTlbMapper.Instance.Unmap(1, TwoMiB));
        Assert.Equal(LaunchError.EnclaveMunmapError, ex.Error); // E43
        Assert.Equal(22, ex.Errno);                             // EINVAL
    }

    /// <summary>The mappings of this process as /proc/self/smaps lists them.</summary>
    private static class Smaps
    {
        internal readonly record struct Mapping(ulong Start, ulong End, int KernelPageKb);

        /// <summary>The mapping that contains <paramref name="address"/>, or null.</summary>
        internal static Mapping? Find(nint address)
        {
            ulong target = (ulong)address;
            Mapping? current = null;
            foreach (string line in File.ReadLines("/proc/self/smaps"))
            {
                int dash = line.IndexOf('-');
                int space = line.IndexOf(' ');
                if (dash > 0 && space > dash
                    && ulong.TryParse(line.AsSpan(0, dash), NumberStyles.HexNumber, CultureInfo.InvariantCulture, out ulong start)
                    && ulong.TryParse(line.AsSpan(dash + 1, space - dash - 1), NumberStyles.HexNumber, CultureInfo.InvariantCulture, out ulong end))
                {
                    if (current is not null)
                        return current;
                    if (target >= start && target < end)
                        current = new Mapping(start, end, 0);
                }
                else if (current is { } found && line.StartsWith("KernelPageSize:", StringComparison.Ordinal))
                {
                    current = found with { KernelPageKb = int.Parse(line["KernelPageSize:".Length..].Replace("kB", "").Trim(), CultureInfo.InvariantCulture) };
                }
            }

            return current;
        }
    }
}

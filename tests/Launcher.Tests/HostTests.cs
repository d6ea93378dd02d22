using Launcher.Host;

namespace Launcher.Tests;

/// <summary>
/// What the launcher reads from the host: the kernel's cpu-list syntax, hugepage size names, and <see cref="HostInfo"/>
/// over a fake root folder laid out like /sys.
/// </summary>
public sealed class HostTests
{
    // --- CpuList ------------------------------------------------------------------------------------------------

    [Theory]
    // source: spec/launch.md §1.5 (ne_cpus examples "1,3", "2-3,6-7"); kernel lib/bitmap-str.c bitmap_parselist
    [InlineData("1,3", new[] { 1, 3 })]
    [InlineData("2-3,6-7", new[] { 2, 3, 6, 7 })]
    [InlineData(" 5\n", new[] { 5 })]
    [InlineData("0", new[] { 0 })]
    [InlineData(" 1 , 3 - 4 ", new[] { 1, 3, 4 })]
    [InlineData("3,1,1-2", new[] { 1, 2, 3 })]
    [InlineData("4-4", new[] { 4 })]
    public void Parse_ValidList_GivesTheCpus(string text, int[] expected)
    {
        Assert.Equal(expected, CpuList.Parse(text, "ne_cpus"));
    }

    [Theory]
    [InlineData("")]
    [InlineData("   ")]
    [InlineData("\n")]
    public void Parse_BlankText_IsEmpty(string text)
    {
        Assert.Empty(CpuList.Parse(text, "ne_cpus"));
    }

    [Theory]
    // source: aws-nitro-enclaves-cli src/common/document_errors.rs E24 "a CPU line interval is invalid (for instance, 0-3-7)"
    [InlineData("0-3-7")]
    [InlineData("a")]
    [InlineData("1,a")]
    [InlineData("1,,2")]
    [InlineData("-1")]
    [InlineData("1-")]
    [InlineData("+1")]
    [InlineData("1 2")]
    [InlineData("0x3")]
    public void Parse_Malformed_ThrowsCpuErrorNamingWhatWasRead(string text)
    {
        EnclaveException ex = Assert.Throws<EnclaveException>(() => CpuList.Parse(text, "the pool file"));
        Assert.Equal(LaunchError.CpuError, ex.Error);
        Assert.StartsWith("the pool file: ", ex.Message);
    }

    [Fact]
    public void Parse_RangeEndingBeforeItStarts_ThrowsCpuError()
    {
        EnclaveException ex = Assert.Throws<EnclaveException>(() => CpuList.Parse("3-1", "ne_cpus"));
        Assert.Equal(LaunchError.CpuError, ex.Error);
        Assert.Contains("'3-1'", ex.Message);
        Assert.Contains("ends before it starts", ex.Message);
    }

    [Fact]
    public void Parse_CpuAboveMaxCpu_ThrowsCpuError()
    {
        // CpuList.MaxCpu = 8191 (NR_CPUS 8192 on distribution kernels).
        Assert.Equal(8191, CpuList.MaxCpu);
        Assert.Equal([CpuList.MaxCpu], CpuList.Parse("8191", "ne_cpus"));
        Assert.Equal(LaunchError.CpuError, Assert.Throws<EnclaveException>(() => CpuList.Parse("8192", "ne_cpus")).Error);
        Assert.Equal(LaunchError.CpuError, Assert.Throws<EnclaveException>(() => CpuList.Parse("1-8192", "ne_cpus")).Error);
        Assert.Equal(LaunchError.CpuError, Assert.Throws<EnclaveException>(() => CpuList.Parse("99999999999", "ne_cpus")).Error);
    }

    [Theory]
    [InlineData(new[] { 1, 2, 3, 5 }, "1-3,5")]
    [InlineData(new[] { 5, 3, 1, 2, 2 }, "1-3,5")]
    [InlineData(new[] { 2, 3, 6, 7 }, "2-3,6-7")]
    [InlineData(new[] { 7 }, "7")]
    [InlineData(new[] { 1, 3 }, "1,3")]
    [InlineData(new int[0], "")]
    public void Format_Cpus_UsesKernelRanges(int[] cpus, string expected)
    {
        Assert.Equal(expected, CpuList.Format(cpus));
    }

    [Theory]
    [InlineData("1-3,5")]
    [InlineData("2-3,6-7")]
    [InlineData("0")]
    [InlineData("1,3,5-8191")]
    public void FormatParse_CanonicalList_RoundTrips(string text)
    {
        Assert.Equal(text, CpuList.Format(CpuList.Parse(text, "ne_cpus")));
    }

    // --- hugepage sizes -----------------------------------------------------------------------------------------

    [Theory]
    [InlineData("2M", 2UL << 20)]
    [InlineData("2MB", 2UL << 20)]
    [InlineData("2MiB", 2UL << 20)]
    [InlineData("2048K", 2UL << 20)]
    [InlineData("2048kB", 2UL << 20)]        // the sysfs folder spelling, hugepages-2048kB
    [InlineData("2m", 2UL << 20)]
    [InlineData(" 2M\n", 2UL << 20)]
    [InlineData("1G", 1UL << 30)]
    [InlineData("1GiB", 1UL << 30)]
    [InlineData("1GB", 1UL << 30)]
    [InlineData("16K", 16UL << 10)]
    [InlineData("512M", 512UL << 20)]        // nitro-cli HUGE_PAGE_MAP sizes (spec/launch.md §1.5)
    [InlineData("16G", 16UL << 30)]
    [InlineData("8589934592G", 1UL << 63)]   // the largest value that fits a u64
    public void HugePageSizesParse_ValidName_GivesBytes(string text, ulong expected)
    {
        Assert.Equal(expected, HugePageSizes.Parse(text));
    }

    [Theory]
    [InlineData("")]
    [InlineData("M")]
    [InlineData("MiB")]
    [InlineData("2")]
    [InlineData("2X")]
    [InlineData("2T")]
    [InlineData("0M")]
    [InlineData("-2M")]
    [InlineData("+2M")]
    [InlineData("2 M")]
    [InlineData("2iB")]
    [InlineData("1.5G")]
    [InlineData("two M")]
    [InlineData("8589934593G")]              // overflows a u64
    [InlineData("99999999999999999999999M")] // overflows the number itself
    public void HugePageSizesParse_BadValue_IsNull(string text)
    {
        Assert.Null(HugePageSizes.Parse(text));
    }

    [Theory]
    [InlineData(2UL << 20, "2M")]
    [InlineData(1UL << 30, "1G")]
    [InlineData(3UL << 30, "3G")]
    [InlineData(1536UL << 20, "1536M")]
    [InlineData(64UL << 10, "64K")]
    public void HugePageSizesFormat_Bytes_GivesTheShortName(ulong bytes, string expected)
    {
        Assert.Equal(expected, HugePageSizes.Format(bytes));
        Assert.Equal(bytes, HugePageSizes.Parse(expected));
    }

    [Fact]
    public void HugePageSize_NameAndFolder_FollowSysfs()
    {
        // source: Documentation/admin-guide/mm/hugetlbpage.rst: /sys/kernel/mm/hugepages/hugepages-<size>kB
        Assert.Equal("2M", new HugePageSize(2UL << 20, 0, 0).Name);
        Assert.Equal("hugepages-2048kB", new HugePageSize(2UL << 20, 0, 0).Folder);
        Assert.Equal("1G", new HugePageSize(1UL << 30, 0, 0).Name);
        Assert.Equal("hugepages-1048576kB", new HugePageSize(1UL << 30, 0, 0).Folder);
    }

    // --- HostInfo over a fake root ------------------------------------------------------------------------------

    [Fact]
    public void ReadCpuPool_PoolFile_GivesTheCpus()
    {
        using var root = new FakeRoot();
        root.Write(NitroEnclaves.CpuPoolParameterPath, "2-3,6-7\n");
        var host = new HostInfo(root.Path);
        Assert.True(host.DriverLoaded);
        Assert.Equal([2, 3, 6, 7], host.ReadCpuPool());
        Assert.Equal(Path.Join(root.Path, "sys/module/nitro_enclaves/parameters/ne_cpus"), host.CpuPoolPath);
    }

    [Fact]
    public void ReadCpuPool_EmptyPoolFile_IsEmpty()
    {
        // The driver's parameter reads as an empty line when no pool is set.
        using var root = new FakeRoot();
        root.Write(NitroEnclaves.CpuPoolParameterPath, "\n");
        Assert.Empty(new HostInfo(root.Path).ReadCpuPool());
    }

    [Fact]
    public void ReadCpuPool_MissingPoolFile_ThrowsFileOperationFailureAboutTheDriver()
    {
        using var root = new FakeRoot();
        var host = new HostInfo(root.Path);
        Assert.False(host.DriverLoaded);
        EnclaveException ex = Assert.Throws<EnclaveException>(() => host.ReadCpuPool());
        Assert.Equal(LaunchError.FileOperationFailure, ex.Error); // E19 (spec/launch.md §2.2: missing pool file → E19)
        Assert.Contains(host.CpuPoolPath, ex.Message);
        Assert.Contains("driver", ex.Message);
        Assert.Contains("not loaded", ex.Message);
        Assert.Contains(HostInfo.DriverMissingAdvice, ex.Message);
    }

    [Fact]
    public void ReadCpuPool_ModuleLoadedButNoParameterFile_ThrowsFileOperationFailure()
    {
        using var root = new FakeRoot();
        Directory.CreateDirectory(Path.Join(root.Path, "sys/module/nitro_enclaves/parameters"));
        var host = new HostInfo(root.Path);
        Assert.True(host.DriverLoaded);
        Assert.Equal(LaunchError.FileOperationFailure, Assert.Throws<EnclaveException>(() => host.ReadCpuPool()).Error);
    }

    [Fact]
    public void ReadCpuPool_MalformedPoolFile_ThrowsCpuErrorNamingThePath()
    {
        using var root = new FakeRoot();
        root.Write(NitroEnclaves.CpuPoolParameterPath, "0-3-7\n");
        var host = new HostInfo(root.Path);
        EnclaveException ex = Assert.Throws<EnclaveException>(() => host.ReadCpuPool());
        Assert.Equal(LaunchError.CpuError, ex.Error);
        Assert.Contains(host.CpuPoolPath, ex.Message);
    }

    [Fact]
    public void ReadCpuPool_PoolPathIsAFolder_ThrowsFileOperationFailure()
    {
        using var root = new FakeRoot();
        Directory.CreateDirectory(Path.Join(root.Path, NitroEnclaves.CpuPoolParameterPath));
        Assert.Equal(LaunchError.FileOperationFailure, Assert.Throws<EnclaveException>(() => new HostInfo(root.Path).ReadCpuPool()).Error);
    }

    [Fact]
    public void DriverMissingAdvice_Always_SaysHowToInstallTheDriver()
    {
        // nitro-cli #644, #518, #369: a bare E19 left users guessing.
        Assert.Contains("dnf install aws-nitro-enclaves-cli", HostInfo.DriverMissingAdvice);
        Assert.Contains("/etc/nitro_enclaves/allocator.yaml", HostInfo.DriverMissingAdvice);
        Assert.Contains("nitro-enclaves-allocator", HostInfo.DriverMissingAdvice);
        Assert.Contains(NitroEnclaves.DevicePath, HostInfo.DriverMissingAdvice);
    }

    [Fact]
    public void ThreadSiblings_TopologyFile_GivesTheCore()
    {
        using var root = new FakeRoot();
        root.Write("/sys/devices/system/cpu/cpu1/topology/thread_siblings_list", "1,3\n");
        root.Write("/sys/devices/system/cpu/cpu2/topology/thread_siblings_list", "2-3\n");
        var host = new HostInfo(root.Path);
        Assert.Equal([1, 3], host.ThreadSiblings(1));
        Assert.Equal([2, 3], host.ThreadSiblings(2));
    }

    [Fact]
    public void ThreadSiblings_ListWithoutTheCpu_AddsTheCpu()
    {
        using var root = new FakeRoot();
        root.Write("/sys/devices/system/cpu/cpu5/topology/thread_siblings_list", "7\n");
        Assert.Equal([5, 7], new HostInfo(root.Path).ThreadSiblings(5));
    }

    [Fact]
    public void ThreadSiblings_NoTopology_IsJustTheCpu()
    {
        using var root = new FakeRoot();
        Assert.Equal([4], new HostInfo(root.Path).ThreadSiblings(4));
    }

    [Fact]
    public void PossibleCpus_PossibleFile_GivesTheCpus()
    {
        using var root = new FakeRoot();
        root.Write("/sys/devices/system/cpu/possible", "0-3\n");
        Assert.Equal([0, 1, 2, 3], new HostInfo(root.Path).PossibleCpus());
    }

    [Fact]
    public void PossibleCpus_NoFile_IsEmpty()
    {
        using var root = new FakeRoot();
        Assert.Empty(new HostInfo(root.Path).PossibleCpus());
    }

    [Fact]
    public void HugePages_FakeSysfs_AreReadLargestFirstWithTheirCounters()
    {
        using var root = new FakeRoot();
        root.Write("/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages", "10\n");
        root.Write("/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages", "4\n");
        root.Write("/sys/kernel/mm/hugepages/hugepages-1048576kB/nr_hugepages", "2\n");
        root.Write("/sys/kernel/mm/hugepages/hugepages-1048576kB/free_hugepages", "1\n");
        root.Write("/sys/kernel/mm/hugepages/hugepages-32768kB/nr_hugepages", "0\n");
        root.Write("/sys/kernel/mm/hugepages/hugepages-32768kB/free_hugepages", "0\n");
        var host = new HostInfo("/nonexistent-root", memoryRoot: root.Path);
        Assert.Equal(
            [
                new HugePageSize(1UL << 30, 2, 1),
                new HugePageSize(32UL << 20, 0, 0),
                new HugePageSize(2UL << 20, 10, 4),
            ],
            host.HugePages());
    }

    [Fact]
    public void HugePages_MemoryRootOmitted_ReadsUnderRoot()
    {
        using var root = new FakeRoot();
        root.Write("/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages", "3\n");
        root.Write("/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages", "3\n");
        var host = new HostInfo(root.Path);
        Assert.Equal(root.Path, host.MemoryRoot);
        Assert.Equal([new HugePageSize(2UL << 20, 3, 3)], host.HugePages());
    }

    [Fact]
    public void HugePages_MemoryRootGiven_IgnoresRoot()
    {
        using var cpuRoot = new FakeRoot();
        using var memoryRoot = new FakeRoot();
        cpuRoot.Write("/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages", "99\n");
        memoryRoot.Write("/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages", "7\n");
        memoryRoot.Write("/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages", "5\n");
        var host = new HostInfo(cpuRoot.Path, memoryRoot.Path);
        Assert.Equal([new HugePageSize(2UL << 20, 7, 5)], host.HugePages());
    }

    [Fact]
    public void HugePages_MissingOrGarbledCounters_ReadAsZeroAndOddFoldersAreSkipped()
    {
        using var root = new FakeRoot();
        root.Write("/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages", "lots\n");
        Directory.CreateDirectory(Path.Join(root.Path, "sys/kernel/mm/hugepages/hugepages-xkB"));
        Directory.CreateDirectory(Path.Join(root.Path, "sys/kernel/mm/hugepages/other"));
        Assert.Equal([new HugePageSize(2UL << 20, 0, 0)], new HostInfo(root.Path).HugePages());
    }

    [Fact]
    public void HugePages_NoHugepageFolder_IsEmpty()
    {
        using var root = new FakeRoot();
        Assert.Empty(new HostInfo(root.Path).HugePages());
    }

    [Theory]
    [InlineData("i-0123456789abcdef0\n", "i-0123456789abcdef0")]
    [InlineData("  i-0123\t4567 89ab\r\n", "i-0123456789ab")]
    public void InstanceId_BoardAssetTag_IsTheTagWithoutWhitespace(string content, string expected)
    {
        using var root = new FakeRoot();
        root.Write("/sys/devices/virtual/dmi/id/board_asset_tag", content);
        Assert.Equal(expected, new HostInfo(root.Path).InstanceId());
    }

    [Fact]
    public void InstanceId_NoAssetTag_IsNitroCliPlaceholder()
    {
        // source: aws-nitro-enclaves-cli src/enclave_proc/utils.rs (placeholder instance id)
        using var root = new FakeRoot();
        Assert.Equal("i-0000000000000000", new HostInfo(root.Path).InstanceId());
    }

    [Fact]
    public void InstanceId_BlankAssetTag_IsNitroCliPlaceholder()
    {
        using var root = new FakeRoot();
        root.Write("/sys/devices/virtual/dmi/id/board_asset_tag", " \n");
        Assert.Equal("i-0000000000000000", new HostInfo(root.Path).InstanceId());
    }

    [Fact]
    public void Under_RealRootOrFakeRoot_PlacesTheSystemPath()
    {
        Assert.Equal("/sys/x", new HostInfo().Under("/sys/x"));
        Assert.Equal("/tmp/fake/sys/x", new HostInfo("/tmp/fake").Under("/sys/x"));
        Assert.Equal(NitroEnclaves.CpuPoolParameterPath, new HostInfo().CpuPoolPath);
    }

    /// <summary>A temporary folder laid out like the root file system; deleted on dispose.</summary>
    private sealed class FakeRoot : IDisposable
    {
        public string Path { get; } = TestEnvironment.TemporaryFolder("root");

        public void Write(string absolutePath, string content)
        {
            string file = System.IO.Path.Join(Path, absolutePath);
            Directory.CreateDirectory(System.IO.Path.GetDirectoryName(file)!);
            File.WriteAllText(file, content);
        }

        public void Dispose() => Directory.Delete(Path, recursive: true);
    }
}

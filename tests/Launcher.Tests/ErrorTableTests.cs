using System.Runtime.InteropServices;
using System.Text.RegularExpressions;

namespace Launcher.Tests;

/// <summary>
/// The driver's errno table (<c>NE_ERR_*</c> 256–275) and nitro-cli's numbered errors (E00–E59), as the CLI prints them.
/// </summary>
public sealed class ErrorTableTests
{
    [Theory]
    // source: include/uapi/linux/nitro_enclaves.h (NE_ERR_* values); spec/launch.md §1.4
    [InlineData(256, NeError.VcpuAlreadyUsed, "NE_ERR_VCPU_ALREADY_USED")]
    [InlineData(257, NeError.VcpuNotInCpuPool, "NE_ERR_VCPU_NOT_IN_CPU_POOL")]
    [InlineData(258, NeError.VcpuInvalidCpuCore, "NE_ERR_VCPU_INVALID_CPU_CORE")]
    [InlineData(259, NeError.InvalidMemRegionSize, "NE_ERR_INVALID_MEM_REGION_SIZE")]
    [InlineData(260, NeError.InvalidMemRegionAddr, "NE_ERR_INVALID_MEM_REGION_ADDR")]
    [InlineData(261, NeError.UnalignedMemRegionAddr, "NE_ERR_UNALIGNED_MEM_REGION_ADDR")]
    [InlineData(262, NeError.MemRegionAlreadyUsed, "NE_ERR_MEM_REGION_ALREADY_USED")]
    [InlineData(263, NeError.MemNotHugePage, "NE_ERR_MEM_NOT_HUGE_PAGE")]
    [InlineData(264, NeError.MemDifferentNumaNode, "NE_ERR_MEM_DIFFERENT_NUMA_NODE")]
    [InlineData(265, NeError.MemMaxRegions, "NE_ERR_MEM_MAX_REGIONS")]
    [InlineData(266, NeError.NoMemRegionsAdded, "NE_ERR_NO_MEM_REGIONS_ADDED")]
    [InlineData(267, NeError.NoVcpusAdded, "NE_ERR_NO_VCPUS_ADDED")]
    [InlineData(268, NeError.EnclaveMemMinSize, "NE_ERR_ENCLAVE_MEM_MIN_SIZE")]
    [InlineData(269, NeError.FullCoresNotUsed, "NE_ERR_FULL_CORES_NOT_USED")]
    [InlineData(270, NeError.NotInInitState, "NE_ERR_NOT_IN_INIT_STATE")]
    [InlineData(271, NeError.InvalidVcpu, "NE_ERR_INVALID_VCPU")]
    [InlineData(272, NeError.NoCpusAvailableInPool, "NE_ERR_NO_CPUS_AVAIL_IN_POOL")]
    [InlineData(273, NeError.InvalidPageSize, "NE_ERR_INVALID_PAGE_SIZE")]
    [InlineData(274, NeError.InvalidFlagValue, "NE_ERR_INVALID_FLAG_VALUE")]
    [InlineData(275, NeError.InvalidEnclaveCid, "NE_ERR_INVALID_ENCLAVE_CID")]
    public void FromErrno_DriverErrno_MapsToItsNeErrorAndMacroName(int errno, NeError expected, string macro)
    {
        Assert.Equal(expected, NeErrors.FromErrno(errno));
        Assert.Equal(errno, (int)expected);
        Assert.Equal(macro, NeErrors.MacroName(expected));
        string describe = NeErrors.Describe(errno);
        Assert.Equal($"{NeErrors.Message(expected)} ({macro}, errno {errno})", describe);
    }

    [Theory]
    // source: aws-nitro-enclaves-cli src/enclave_proc/resource_manager.rs do_ioctl (v1.5.0); spec/launch.md §1.4
    [InlineData(NeError.VcpuAlreadyUsed, "The provided vCPU is already used")]
    [InlineData(NeError.InvalidMemRegionSize, "The memory region's size is not a multiple of 2 MiB")]
    [InlineData(NeError.MemNotHugePage, "The memory region is not backed by contiguous physical huge page(s)")]
    [InlineData(NeError.EnclaveMemMinSize, "The enclave's memory size is lower than the minimum supported")]
    [InlineData(NeError.FullCoresNotUsed, "The enclave cannot start because full CPU cores have not been set")]
    [InlineData(NeError.NoCpusAvailableInPool, "The enclave cannot be created because no CPUs are available in the pool")]
    [InlineData(NeError.InvalidEnclaveCid, "The provided enclave CID is invalid, being a well-known CID or the parent VM CID")]
    public void Message_DriverError_IsNitroCliSentence(NeError error, string sentence)
    {
        Assert.Equal(sentence, NeErrors.Message(error));
    }

    [Fact]
    public void MessageAndMacroName_AllDriverErrors_AreDistinctAndNonEmpty()
    {
        NeError[] all = Enum.GetValues<NeError>();
        Assert.Equal(20, all.Length); // 256..275, nitro_enclaves.h
        Assert.Equal(Enumerable.Range(NeErrors.First, 20), all.Select(e => (int)e).Order());
        Assert.Equal(all.Length, all.Select(NeErrors.Message).Distinct().Count());
        Assert.Equal(all.Length, all.Select(NeErrors.MacroName).Distinct().Count());
        Assert.All(all, e => Assert.StartsWith("NE_ERR_", NeErrors.MacroName(e)));
        Assert.All(all, e => Assert.StartsWith("The ", NeErrors.Message(e)));
    }

    [Fact]
    public void FirstAndLast_Constants_AreTheUapiBounds()
    {
        // source: nitro_enclaves.h NE_ERR_VCPU_ALREADY_USED (256) … NE_ERR_INVALID_ENCLAVE_CID (275)
        Assert.Equal(256, NeErrors.First);
        Assert.Equal(275, NeErrors.Last);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(9)]     // EBADF
    [InlineData(255)]   // just below NE_ERR_VCPU_ALREADY_USED
    [InlineData(276)]   // just above NE_ERR_INVALID_ENCLAVE_CID
    [InlineData(-1)]
    public void FromErrno_StandardErrno_IsNull(int errno)
    {
        Assert.Null(NeErrors.FromErrno(errno));
    }

    [Theory]
    [InlineData((NeError)255)]
    [InlineData((NeError)276)]
    public void MessageAndMacroName_UndefinedValue_Throw(NeError error)
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => NeErrors.Message(error));
        Assert.Throws<ArgumentOutOfRangeException>(() => NeErrors.MacroName(error));
    }

    [Fact]
    public void Describe_StandardErrno_NamesTheErrnoWithTheCLibraryText()
    {
        // errno 12 is ENOMEM (asm-generic/errno-base.h); glibc's strerror says "Cannot allocate memory".
        string text = NeErrors.Describe(12);
        Assert.Equal($"{Marshal.GetPInvokeErrorMessage(12)} (errno 12)", text);
        Assert.Contains("memory", text, StringComparison.OrdinalIgnoreCase);
        Assert.DoesNotContain("NE_ERR_", text);
    }

    [Fact]
    public void Ioctl_DriverErrno_IsE29WithTheDriverSentence()
    {
        EnclaveException ex = EnclaveException.Ioctl("NE_START_ENCLAVE", 269);
        Assert.Equal(LaunchError.IoctlFailure, ex.Error);
        Assert.Equal(269, ex.Errno);
        Assert.Equal(NeError.FullCoresNotUsed, ex.DriverError);
        Assert.Equal(
            "NE_START_ENCLAVE failed: The enclave cannot start because full CPU cores have not been set (NE_ERR_FULL_CORES_NOT_USED, errno 269)",
            ex.Message);
    }

    [Fact]
    public void ToCliLine_IoctlFailure_HasNitroCliForm()
    {
        // source: aws-nitro-enclaves-cli src/common/document_errors.rs get_detailed_info: "[ E29 ] Ioctl failure. …"
        EnclaveException ex = EnclaveException.Ioctl("NE_SET_USER_MEMORY_REGION", 259);
        Assert.Equal(
            "[ E29 ] Ioctl failure. NE_SET_USER_MEMORY_REGION failed: The memory region's size is not a multiple of 2 MiB (NE_ERR_INVALID_MEM_REGION_SIZE, errno 259)",
            ex.ToCliLine());
    }

    [Fact]
    public void ToCliLine_StandardErrno_HasNoDriverError()
    {
        EnclaveException ex = EnclaveException.Ioctl("NE_CREATE_VM", 12);
        Assert.Null(ex.DriverError);
        Assert.StartsWith("[ E29 ] Ioctl failure. NE_CREATE_VM failed: ", ex.ToCliLine());
        Assert.EndsWith("(errno 12)", ex.ToCliLine());
    }

    [Fact]
    public void EnclaveException_Constructed_IsAnIOExceptionKeepingItsParts()
    {
        var inner = new TimeoutException("inner");
        var ex = new EnclaveException(LaunchError.EnclaveBootFailure, "boom", 110, inner);
        Assert.IsAssignableFrom<IOException>(ex); // STYLE.md rule 4
        Assert.Equal(LaunchError.EnclaveBootFailure, ex.Error);
        Assert.Equal(110, ex.Errno);
        Assert.Same(inner, ex.InnerException);
        Assert.Equal("[ E36 ] Enclave boot failure. boom", ex.ToCliLine());
        Assert.Equal(0, new EnclaveException(LaunchError.UnspecifiedError, "x").Errno);
    }

    [Fact]
    public void LaunchError_AllValues_AreE00ToE59()
    {
        // source: aws-nitro-enclaves-cli src/common/document_errors.rs ERROR_CODES (E00…E58) plus E59 (EifSignatureCheckerError)
        LaunchError[] all = Enum.GetValues<LaunchError>();
        Assert.Equal(60, all.Length);
        Assert.Equal(Enumerable.Range(0, 60), all.Select(e => (int)e).Order());
    }

    [Fact]
    public void Code_AllValues_AreDistinctTwoDigitCodes()
    {
        LaunchError[] all = Enum.GetValues<LaunchError>();
        string[] codes = all.Select(LaunchErrors.Code).ToArray();
        Assert.All(codes, code => Assert.Matches(new Regex("^E[0-9]{2}$"), code));
        Assert.Equal(codes.Length, codes.Distinct().Count());
        Assert.All(all, e => Assert.Equal($"E{(int)e:D2}", LaunchErrors.Code(e)));
    }

    [Fact]
    public void Title_AllValues_AreDistinctAndNonEmpty()
    {
        LaunchError[] all = Enum.GetValues<LaunchError>();
        string[] titles = all.Select(LaunchErrors.Title).ToArray();
        Assert.All(titles, title => Assert.False(string.IsNullOrWhiteSpace(title)));
        Assert.All(titles, title => Assert.False(title.EndsWith('.'), $"'{title}' ends with a full stop; ToCliLine adds one"));
        Assert.Equal(titles.Length, titles.Distinct().Count());
    }

    [Theory]
    // source: aws-nitro-enclaves-cli src/common/document_errors.rs get_detailed_info (first sentence of each entry)
    [InlineData(LaunchError.UnspecifiedError, "E00", "Unspecified error")]
    [InlineData(LaunchError.SocketError, "E11", "Socket error")]
    [InlineData(LaunchError.FileOperationFailure, "E19", "File operation failure")]
    [InlineData(LaunchError.CpuError, "E24", "CPU error")]
    [InlineData(LaunchError.NoSuchHugepageFlag, "E25", "No such hugepage flag error")]
    [InlineData(LaunchError.InsufficientMemoryAvailable, "E27", "Insufficient memory available")]
    [InlineData(LaunchError.IoctlFailure, "E29", "Ioctl failure")]
    [InlineData(LaunchError.MemoryOverflow, "E34", "Memory overflow")]
    [InlineData(LaunchError.EnclaveBootFailure, "E36", "Enclave boot failure")]
    [InlineData(LaunchError.EnclaveEventWaitError, "E37", "Enclave event wait error")]
    public void CodeAndTitle_KnownErrors_MatchNitroCli(LaunchError error, string code, string title)
    {
        Assert.Equal(code, LaunchErrors.Code(error));
        Assert.Equal(title, LaunchErrors.Title(error));
    }

    [Fact]
    public void Title_UndefinedValue_Throws()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => LaunchErrors.Title((LaunchError)60));
    }
}

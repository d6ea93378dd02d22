using EifFormat;
using EifTests.Shared;
using Launcher.Driver;
using Launcher.Host;
using Launcher.Interop;
using Launcher.Simulation;

namespace Launcher.Tests;

/// <summary>
/// What the launcher refuses before it touches the driver (launch.md §2.2 and §5 "validate"), each with nitro-cli's
/// error number and a message that names the numbers or the file. Every refusal is checked twice, through
/// <see cref="EnclaveLauncher.Check"/> and <see cref="EnclaveLauncher.Launch(LaunchRequest)"/>, and after it the
/// simulated device must show no slot and a <c>NE_CREATE_VM</c> failure injected beforehand must still be pending
/// (so CREATE_VM was never called, and no memory was mapped: allocation comes after it).
/// </summary>
public sealed class LaunchPreflightTests : IDisposable
{
    // An errno the simulator never produces for NE_CREATE_VM by itself: seeing it later proves the injection was not used.
    private const int PendingCreateVmErrno = Libc.ENOMEM;

    private static readonly string GoldenEif = TestEnvironment.Golden("synth_sha384_named.eif"); // 8526 bytes, x86_64, unsigned

    private readonly TestScratch _scratch = new();
    private readonly SimulatedNitro _sim;
    private readonly string _folder;

    public LaunchPreflightTests()
    {
        _sim = _scratch.Simulator(); // 8 CPUs, 2 threads per core, pool 2-7
        _folder = _scratch.Folder("pre");
    }

    public void Dispose() => _scratch.Dispose();

    [Fact]
    public void Launch_NeitherCpuCountNorCpuIds_E01()
    {
        var ex = Refused(LaunchError.MissingArgument, Request() with { CpuCount = null });

        Assert.Contains("--cpu-count", ex.Message);
        Assert.Contains("--cpu-ids", ex.Message);
    }

    [Fact]
    public void Launch_BothCpuCountAndCpuIds_E02()
    {
        var ex = Refused(LaunchError.ConflictingArgument, Request() with { CpuCount = 2, CpuIds = [2, 3] });

        Assert.Contains("--cpu-count", ex.Message);
        Assert.Contains("--cpu-ids", ex.Message);
    }

    [Fact]
    public void Launch_EmptyCpuIds_E01()
    {
        var ex = Refused(LaunchError.MissingArgument, Request() with { CpuCount = null, CpuIds = [] });

        Assert.Contains("--cpu-ids", ex.Message);
    }

    [Fact]
    public void Launch_CpuCountZero_E03NamesTheCount()
    {
        var ex = Refused(LaunchError.InvalidArgument, Request() with { CpuCount = 0 });

        Assert.Contains("--cpu-count", ex.Message);
        Assert.Contains("got 0", ex.Message);
    }

    [Theory]
    [InlineData(1UL)]           // VMADDR_CID_LOCAL
    [InlineData(2UL)]           // VMADDR_CID_HOST
    [InlineData(3UL)]           // the parent (NE_PARENT_VM_CID)
    [InlineData(4294967295UL)]  // U32_MAX
    [InlineData(4294967296UL)]  // > U32_MAX
    public void Launch_ReservedEnclaveCid_E03(ulong cid)
    {
        // nitro-cli src/common/commands_parser.rs parse_enclave_cid applies the driver's CID rules before launching.
        var ex = Refused(LaunchError.InvalidArgument, Request() with { EnclaveCid = cid });

        Assert.Contains($"--enclave-cid {cid}", ex.Message);
    }

    [Fact]
    public void Launch_MemoryZero_E26()
    {
        var ex = Refused(LaunchError.InsufficientMemoryRequested, Request() with { MemoryMiB = 0 });

        Assert.Contains("--memory is 0 MiB", ex.Message);
    }

    [Fact]
    public void Launch_MemoryBelowFourTimesTheEif_E26NamesTheFileAndTheMinimum()
    {
        string eif = Path.Join(_folder, "big.eif");
        long length = TestImages.Write(eif, ramdiskBytes: 17 << 20).Length; // > 16 MiB, so 64 MiB < 4 × the EIF
        long minimumMiB = ((length + (1 << 20) - 1) >> 20) * 4;           // nitro-cli: ceil(eif_size / 1 MiB) × 4

        var ex = Refused(LaunchError.InsufficientMemoryRequested, Request(eif) with { MemoryMiB = 64 });

        Assert.Contains(eif, ex.Message);
        Assert.Contains($"{length} bytes", ex.Message);
        Assert.Contains($"{minimumMiB} MiB", ex.Message);
        Assert.Contains("--memory is 64 MiB", ex.Message);
    }

    [Fact]
    public void Launch_MemoryBelowSixtyFourMiB_E26NamesTheMinimum()
    {
        // 4 × 8526 bytes fits in 63 MiB: only NE_MIN_ENCLAVE_MEM_SIZE (64 MiB, driver) is broken.
        var ex = Refused(LaunchError.InsufficientMemoryRequested, Request() with { MemoryMiB = 63 });

        Assert.Contains("63 MiB", ex.Message);
        Assert.Contains("64 MiB", ex.Message);
    }

    [Fact]
    public void Launch_EifMissing_E19NamesTheFile()
    {
        string missing = Path.Join(_folder, "missing.eif");

        var ex = Refused(LaunchError.FileOperationFailure, Request(missing));

        Assert.Contains(missing, ex.Message);
    }

    [Theory]
    [InlineData(0)]     // the magic: not an EIF at all (a format error)
    [InlineData(-1)]    // the last byte of the last section: only the CRC notices
    [InlineData(EifHeader.CrcCoveredSize)] // eif_crc32 itself (0x220)
    public void Launch_EifWithAByteFlipped_E35NamesTheFile(int offset)
    {
        byte[] bytes = File.ReadAllBytes(GoldenEif);
        bytes[offset < 0 ? bytes.Length + offset : offset] ^= 0x01;
        string eif = Path.Join(_folder, "flipped.eif");
        File.WriteAllBytes(eif, bytes);

        var ex = Refused(LaunchError.EifParsingError, Request(eif));

        Assert.Contains(eif, ex.Message);
    }

    [Fact]
    public void Launch_Aarch64EifOnAnX8664Host_E35NamesBothArchitectures()
    {
        // The platform is pinned to x86_64 so that the test means the same on any build machine.
        var launcher = new EnclaveLauncher(WithArchitecture("x86_64"));
        string eif = TestEnvironment.Golden("synth_aarch64.eif");

        var ex = Refused(LaunchError.EifParsingError, Request(eif), launcher);

        Assert.Contains(eif, ex.Message);
        Assert.Contains("aarch64", ex.Message);
        Assert.Contains("x86_64", ex.Message);
    }

    [Fact]
    public void Launch_SignatureSignsAnotherImagesPcr0_E59NamesBothPcr0s()
    {
        // Sign an image, then put its signature section on an image with another kernel: the COSE signature is
        // intact and the CRC is right, but the signed PCR0 is not this image's.
        var identity = TestPki.EcIdentity("P-384");
        EifSigningKeyHolder key = new(identity);
        byte[]? signedSection = null;
        EifWriteResult original = TestImages.Write(Path.Join(_folder, "original.eif"), 2048, seed: 1,
            signature: EifSectionSource.AfterMeasurement(pcr0 => signedSection = key.Section(pcr0), "signature"));
        string eif = Path.Join(_folder, "tampered.eif");
        EifWriteResult tampered = TestImages.Write(eif, 2048, seed: 1, kernel: TestImages.RandomBytes(4096, seed: 99),
            signature: EifSectionSource.FromBytes(signedSection!, "the original's signature section"));

        var ex = Refused(LaunchError.EifSignatureCheckerError, Request(eif));

        Assert.Contains(eif, ex.Message);
        Assert.Contains(Pcr.ToHex(original.Measurements.Pcr0), ex.Message);
        Assert.Contains(Pcr.ToHex(tampered.Measurements.Pcr0), ex.Message);
    }

    [Fact]
    public void Launch_SignatureMadeWithAnotherKey_E59()
    {
        // The certificate is one identity's, the signature another key's: it does not verify.
        var certified = TestPki.EcIdentity("P-384", "certified-signer");
        var other = new EifSigningKeyHolder(TestPki.EcIdentity("P-384", "other-signer"));
        string eif = Path.Join(_folder, "wrong-key.eif");
        TestImages.Write(eif, 2048,
            signature: EifSectionSource.AfterMeasurement(pcr0 => other.SectionWithCertificate(certified, pcr0), "signature"));

        var ex = Refused(LaunchError.EifSignatureCheckerError, Request(eif));

        Assert.Contains(eif, ex.Message);
        Assert.Contains("certified-signer", ex.Message);
        Assert.Contains("does not verify", ex.Message);
    }

    [Fact]
    public void Launch_SigningCertificateExpired_E59NamesTheValidity()
    {
        var expired = TestPki.EcIdentity("P-384", "expired-signer",
            notBefore: new DateTime(2020, 1, 1, 0, 0, 0, DateTimeKind.Utc), notAfter: new DateTime(2021, 1, 1, 0, 0, 0, DateTimeKind.Utc));
        string eif = Path.Join(_folder, "expired.eif");
        TestImages.WriteSigned(eif, expired);
        var launcher = new EnclaveLauncher(_sim.Platform) { Now = () => new DateTimeOffset(2025, 6, 1, 0, 0, 0, TimeSpan.Zero) };

        var ex = Refused(LaunchError.EifSignatureCheckerError, Request(eif), launcher);

        Assert.Contains(eif, ex.Message);
        Assert.Contains("expired-signer", ex.Message);
        Assert.Contains("has expired", ex.Message);
        Assert.Contains("2021-01-01T00:00:00Z", ex.Message);
        Assert.Contains("2025-06-01T00:00:00Z", ex.Message);
    }

    [Fact]
    public void Check_SigningCertificateExpiredButClockInsideItsValidity_PassesTheImage()
    {
        // The control for the test above: the same kind of image is accepted while its certificate is valid.
        HugePages.Require(32); // Check also needs the free hugepages for 64 MiB
        var identity = TestPki.EcIdentity("P-384", "expired-signer",
            notBefore: new DateTime(2020, 1, 1, 0, 0, 0, DateTimeKind.Utc), notAfter: new DateTime(2021, 1, 1, 0, 0, 0, DateTimeKind.Utc));
        string eif = Path.Join(_folder, "expired.eif");
        TestImages.WriteSigned(eif, identity);
        var launcher = new EnclaveLauncher(_sim.Platform) { Now = () => new DateTimeOffset(2020, 6, 1, 0, 0, 0, TimeSpan.Zero) };

        LaunchPlan plan = launcher.Check(Request(eif));

        Assert.Contains("expired-signer", plan.Image.Signer);
        Assert.NotNull(plan.Image.Measurements.Pcr8);
    }

    [Fact]
    public void Launch_SigningCertificateNotYetValid_E59()
    {
        var identity = TestPki.EcIdentity("P-384", "future-signer",
            notBefore: new DateTime(2030, 1, 1, 0, 0, 0, DateTimeKind.Utc), notAfter: new DateTime(2031, 1, 1, 0, 0, 0, DateTimeKind.Utc));
        string eif = Path.Join(_folder, "future.eif");
        TestImages.WriteSigned(eif, identity);
        var launcher = new EnclaveLauncher(_sim.Platform) { Now = () => new DateTimeOffset(2025, 6, 1, 0, 0, 0, TimeSpan.Zero) };

        var ex = Refused(LaunchError.EifSignatureCheckerError, Request(eif), launcher);

        Assert.Contains("is not valid yet", ex.Message);
        Assert.Contains("2030-01-01T00:00:00Z", ex.Message);
    }

    [Fact]
    public void Launch_CpuPoolFileMissing_E19SaysTheDriverIsNotLoadedAndHowToInstallIt()
    {
        string pool = Path.Join(_sim.RootFolder, NitroEnclaves.CpuPoolParameterPath);
        File.Delete(pool);

        var ex = Refused(LaunchError.FileOperationFailure, Request());

        Assert.Contains(pool, ex.Message);
        Assert.Contains("not loaded", ex.Message);
        Assert.Contains(HostInfo.DriverMissingAdvice, ex.Message);
        Assert.Contains("aws-nitro-enclaves-cli", ex.Message);
    }

    [Fact]
    public void Launch_EmptyCpuPool_E22NamesThePoolFile()
    {
        string pool = Path.Join(_sim.RootFolder, NitroEnclaves.CpuPoolParameterPath);
        File.WriteAllText(pool, "\n"); // what the allocator leaves after tearing the pool down

        var ex = Refused(LaunchError.InsufficientCpus, Request());

        Assert.Contains(pool, ex.Message);
        Assert.Contains("empty", ex.Message);
    }

    [Fact]
    public void Launch_CpuCountAbovePoolSize_E22NamesBothNumbers()
    {
        var ex = Refused(LaunchError.InsufficientCpus, Request() with { CpuCount = 8 });

        Assert.Contains("--cpu-count is 8", ex.Message);
        Assert.Contains("(6: 2-7)", ex.Message); // pool size and CPUs
    }

    [Fact]
    public void Launch_DuplicateCpuIds_E20NamesTheDuplicate()
    {
        var ex = Refused(LaunchError.InvalidCpuConfiguration, Request() with { CpuCount = null, CpuIds = [2, 3, 2] });

        Assert.Contains("--cpu-ids 2 3 2", ex.Message);
        Assert.Contains("CPU(s) 2 more than once", ex.Message);
    }

    [Fact]
    public void Launch_CpuWithoutItsSibling_E20NamesTheSibling()
    {
        var ex = Refused(LaunchError.InvalidCpuConfiguration, Request() with { CpuCount = null, CpuIds = [2, 3, 4] });

        Assert.Contains("CPU 4 shares its core with CPU(s) 5", ex.Message);
    }

    [Fact]
    public void Launch_CpuCountNotAMultipleOfThreadsPerCore_E20NamesTheCount()
    {
        var ex = Refused(LaunchError.InvalidCpuConfiguration, Request() with { CpuCount = 3 });

        Assert.Contains("--cpu-count is 3", ex.Message);
        Assert.Contains("multiple of 2", ex.Message);
    }

    [Theory]
    [InlineData(1)] // CPU 0's sibling: never in a pool
    [InlineData(8)] // not even a CPU of this parent
    public void Launch_CpuNotInPool_E21NamesTheCpuAndThePool(int cpu)
    {
        var ex = Refused(LaunchError.NoSuchCpuAvailableInPool, Request() with { CpuCount = null, CpuIds = [2, 3, cpu] });

        Assert.Contains($"CPU {cpu}", ex.Message);
        Assert.Contains("(2-7)", ex.Message);
    }

    [Theory]
    [InlineData("2-x")]
    [InlineData("3-2")]
    [InlineData("2,,3")]
    public void Launch_MalformedCpuPool_E24NamesThePoolFile(string text)
    {
        string pool = Path.Join(_sim.RootFolder, NitroEnclaves.CpuPoolParameterPath);
        File.WriteAllText(pool, text + "\n");

        var ex = Refused(LaunchError.CpuError, Request());

        Assert.Contains(pool, ex.Message);
        Assert.Contains(text, ex.Message);
    }

    [Fact]
    public void Launch_HugePageSizeTheKernelDoesNotOffer_E25NamesWhatItOffers()
    {
        string offered = string.Join(", ", _sim.Platform.Host.HugePages().Select(size => size.Name));

        var ex = Refused(LaunchError.NoSuchHugepageFlag, Request() with { HugePageSize = 4UL << 20 });

        Assert.Contains("--hugepage-size 4M", ex.Message);
        Assert.Contains(offered, ex.Message);
    }

    [Fact]
    public void Launch_MoreMemoryThanFreeHugePages_E27NamesTheRequestAndHowToReserve()
    {
        ulong freeBytes = _sim.Platform.Host.HugePages()
            .Where(size => size.Bytes % NitroEnclaves.MemoryRegionGranule == 0)
            .Aggregate(0UL, (sum, size) => sum + (size.Free * size.Bytes));
        ulong memoryMiB = (freeBytes >> 20) + 1024; // well above what is free, even if a little is freed meanwhile

        var ex = Refused(LaunchError.InsufficientMemoryAvailable, Request() with { MemoryMiB = memoryMiB });

        Assert.Contains($"--memory is {memoryMiB} MiB", ex.Message);
        Assert.Contains("MiB free", ex.Message);
        Assert.Contains("nr_hugepages", ex.Message);
    }

    private static LaunchRequest Request(string? eif = null) => new()
    {
        EifPath = eif ?? GoldenEif,
        MemoryMiB = 64,
        CpuCount = 2,
        HeartbeatTimeout = TimeSpan.FromSeconds(2),
    };

    // Asserts the refusal through Check and through Launch (same code, same message), and that the driver was not
    // touched: no slot, and the NE_CREATE_VM failure injected before the launch is still pending.
    private EnclaveException Refused(LaunchError expected, LaunchRequest request, EnclaveLauncher? launcher = null)
    {
        launcher ??= new EnclaveLauncher(_sim.Platform);
        _sim.Device.FailNext("NE_CREATE_VM", PendingCreateVmErrno);

        var checkEx = Assert.Throws<EnclaveException>(() => launcher.Check(request));
        var launchEx = Assert.Throws<EnclaveException>(() => launcher.Launch(request));

        Assert.Equal(expected, launchEx.Error);
        Assert.Equal(expected, checkEx.Error);
        Assert.Equal(checkEx.Message, launchEx.Message);
        Assert.StartsWith($"[ E{(int)expected:00} ]", launchEx.ToCliLine());
        Assert.Empty(_sim.Device.OpenEnclaves);
        using (INitroEnclavesDevice device = _sim.Platform.OpenDevice())
        {
            var pending = Assert.Throws<EnclaveException>(() => device.CreateVm());
            Assert.Equal(PendingCreateVmErrno, pending.Errno);
        }

        return launchEx;
    }

    private NitroPlatform WithArchitecture(string architecture) => new()
    {
        Kind = _sim.Platform.Kind,
        OpenDevice = _sim.Platform.OpenDevice,
        Host = _sim.Platform.Host,
        Mapper = _sim.Platform.Mapper,
        Vsock = _sim.Platform.Vsock,
        Architecture = architecture,
    };

    // A test identity's key, loaded once, making signature sections.
    private sealed class EifSigningKeyHolder(TestPki.Identity identity)
    {
        private readonly EifFormat.Signing.EifSigningKey _key = TestImages.SigningKey(identity);

        internal byte[] Section(byte[] pcr0) => EifFormat.Signing.EifSigner.CreateSection(identity.CertificatePem, _key, pcr0);

        internal byte[] SectionWithCertificate(TestPki.Identity certified, byte[] pcr0) =>
            EifFormat.Signing.EifSigner.CreateSection(certified.CertificatePem, _key, pcr0);
    }
}

using EifBuilder.Runtime;
using EifFormat.Json;
using EifTests.Shared;

namespace EifBuilder.Tests;

/// <summary>
/// The default runtime assembled for real: apt (with a private configuration) fetches the bookworm-backports kernel
/// package from the Debian mirror, the modules are taken with their dependencies. The init is a stand-in here; its
/// own build and tests are in tests/EnclaveInit.Tests, and `eif runtime install` builds the real one.
/// </summary>
public class RuntimeTests : IClassFixture<RuntimeTests.Installed>
{
    private readonly Installed _installed;

    public RuntimeTests(Installed installed) => _installed = installed;

    public sealed class Installed : IDisposable
    {
        public Installed()
        {
            Root = System.IO.Directory.CreateTempSubdirectory("eif-runtime").FullName;
            Directory = Path.Combine(Root, "runtime");
            if (TestImages.Which("apt-get") is null || TestImages.Which("dpkg-deb") is null)
                return;
            FirstRun = EnclaveRuntime.Install(Options(initHash: "one"));
        }

        public string Root { get; }

        public string Directory { get; }

        public IReadOnlyList<string>? FirstRun { get; }

        public int InitBuilds { get; private set; }

        public RuntimeInstallOptions Options(string initHash) => new()
        {
            Directory = Directory,
            AptDirectory = Path.Combine(Root, "apt"),
            InitSourceHash = initHash,
            BuildInit = output =>
            {
                InitBuilds++;
                File.WriteAllText(Path.Combine(output, "init"), "stand-in init " + initHash);
                return "stand-in " + initHash;
            },
        };

        public void Dispose() => System.IO.Directory.Delete(Root, recursive: true);
    }

    private void RequireInstalled()
    {
        if (_installed.FirstRun is null)
            Assert.Skip("apt-get and dpkg-deb are needed (Debian): the runtime is assembled with them");
    }

    [Fact]
    public void Install_FetchesTheBackportsKernelWithItsModules()
    {
        RequireInstalled();
        string dir = _installed.Directory;
        Assert.Null(EnclaveRuntime.Check(dir));
        foreach (string blob in new[] { "bzImage", "bzImage.config", "cmdline", "init", "nsm.ko", "modules/order", "runtime.json" })
            Assert.True(File.Exists(Path.Combine(dir, blob)), blob);

        // A bzImage: the x86 boot protocol's "HdrS" at 0x202 (Documentation/arch/x86/boot.rst).
        byte[] kernel = File.ReadAllBytes(Path.Combine(dir, "bzImage"));
        Assert.Equal("HdrS"u8.ToArray(), kernel[0x202..0x206]);
        string config = File.ReadAllText(Path.Combine(dir, "bzImage.config"));
        Assert.Matches(@"# Linux/x86 6\.12\.\S+ Kernel Configuration", config.Split('\n')[2]);
        Assert.Contains("CONFIG_NSM=m", config);
        Assert.Equal(("Linux", config.Split('\n')[2].Split(' ')[2].Split('-')[0]), EifFormat.EifMetadata.ReadKernelConfig(Path.Combine(dir, "bzImage.config")));

        // Dependencies before dependents, each decompressed to a plain ELF module.
        string[] order = File.ReadAllLines(Path.Combine(dir, "modules/order"));
        Assert.Equal(["modules/virtio_mmio.ko", "modules/vsock.ko", "modules/vmw_vsock_virtio_transport_common.ko", "modules/vmw_vsock_virtio_transport.ko"], order);
        foreach (string module in order)
        {
            var (name, depends) = KernelModules.Read(File.ReadAllBytes(Path.Combine(dir, module)), module);
            Assert.Equal(Path.GetFileNameWithoutExtension(module), name);
            Assert.All(depends, d => Assert.True(Array.IndexOf(order, $"modules/{d}.ko") < Array.IndexOf(order, module), $"{module} needs {d} first"));
        }

        Assert.Equal("nsm", KernelModules.Read(File.ReadAllBytes(Path.Combine(dir, "nsm.ko")), "nsm.ko").Name);
        Assert.Equal(EnclaveRuntime.DefaultCmdline + "\n", File.ReadAllText(Path.Combine(dir, "cmdline")));
        Assert.Contains(_installed.FirstRun!, l => l.StartsWith("kernel: linux-image-6.12", StringComparison.Ordinal));
    }

    [Fact]
    public void Install_Twice_ChangesNothing()
    {
        RequireInstalled();
        var before = Snapshot();
        int builds = _installed.InitBuilds;

        var again = EnclaveRuntime.Install(_installed.Options(initHash: "one"));

        Assert.Single(again, l => l.StartsWith("up to date:", StringComparison.Ordinal));
        Assert.Equal(before, Snapshot());
        Assert.Equal(builds, _installed.InitBuilds);
    }

    [Fact]
    public void Blobs_FromTheRuntimeFolder_CarryItsModulesIntoTheBootstrapRamdisk()
    {
        RequireInstalled();
        var blobs = EnclaveBlobs.Locate("x86_64", _installed.Directory, null, null, null, null);

        Assert.Equal(Path.Combine(_installed.Directory, "nsm.ko"), blobs.Nsm);
        Assert.Equal("modules/order", blobs.ExtraBootstrapFiles[0].Name);
        Assert.Equal(5, blobs.ExtraBootstrapFiles.Count);
        var names = EifBuilder.Ramdisks.RamdiskLayout.Bootstrap(blobs.Init, blobs.Nsm, blobs.ExtraBootstrapFiles).Select(e => e.Name).ToList();
        Assert.Equal(["dev", "init", "nsm.ko", "modules", "modules/order", "modules/virtio_mmio.ko", "modules/vsock.ko", "modules/vmw_vsock_virtio_transport_common.ko", "modules/vmw_vsock_virtio_transport.ko"], names);
    }

    [Fact]
    public void Check_ATamperedFile_IsReported()
    {
        RequireInstalled();
        string copy = Path.Combine(_installed.Root, "copy");
        TestImages.Run("cp", "-a", _installed.Directory, copy);
        File.AppendAllText(Path.Combine(copy, "cmdline"), "x");

        Assert.Contains("does not match", EnclaveRuntime.Check(copy));
        Assert.Null(EnclaveRuntime.Check(_installed.Directory));
    }

    private Dictionary<string, (string Hash, DateTime Written)> Snapshot() =>
        System.IO.Directory.GetFiles(_installed.Directory, "*", SearchOption.AllDirectories)
            .ToDictionary(f => f, f => (EnclaveRuntime.Sha256(f), File.GetLastWriteTimeUtc(f)));
}

public class KernelModulesTests
{
    [Fact]
    public void LoadOrder_PutsDependenciesFirstAndRejectsLoopsAndGaps()
    {
        var graph = new Dictionary<string, string[]> { ["a"] = ["b", "c"], ["b"] = ["c"], ["c"] = [], ["x"] = ["y"], ["y"] = ["x"], ["m"] = ["missing"] };
        IReadOnlyList<string>? Depends(string name) => graph.TryGetValue(name, out var d) ? d : null;

        Assert.Equal(["c", "b", "a"], KernelModules.LoadOrder(["a"], Depends));
        Assert.Contains("loop", Assert.Throws<EnclaveBuildException>(() => KernelModules.LoadOrder(["x"], Depends)).Message);
        Assert.Contains("'missing' (needed by m)", Assert.Throws<EnclaveBuildException>(() => KernelModules.LoadOrder(["m"], Depends)).Message);
    }

    [Fact]
    public void Read_NotAnElf_IsAClearError() =>
        Assert.Equal(BuildError.MissingBlob, Assert.Throws<EnclaveBuildException>(() => KernelModules.Read("not an elf at all, just text that is long enough to pass the size check...."u8, "x.ko")).Error);
}

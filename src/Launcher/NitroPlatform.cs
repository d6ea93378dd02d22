using System.Runtime.InteropServices;
using Launcher.Driver;
using Launcher.Host;
using Launcher.Memory;
using Launcher.Vsock;

namespace Launcher;

/// <summary>
/// Everything a launch touches on the host, in one place: the device, the host's files, hugepage mappings and vsock.
/// <see cref="Host"/> is the real thing; <see cref="Simulation.SimulatedNitro"/> builds one around the simulator.
/// </summary>
public sealed class NitroPlatform
{
    /// <summary>
    /// The environment variable that selects the simulator (a folder it keeps its state in), for exercising launch
    /// tooling without Nitro hardware: no enclave code runs, but every driver check applies.
    /// </summary>
    public const string SimulatorVariable = "EIF_NITRO_SIMULATOR";

    /// <summary>What the platform is: <c>nitro</c> or <c>simulated</c>.</summary>
    public required string Kind { get; init; }

    /// <summary>Opens the device (<c>/dev/nitro_enclaves</c> on a parent instance).</summary>
    public required Func<INitroEnclavesDevice> OpenDevice { get; init; }

    /// <summary>The host's files: CPU pool, topology, hugepage pools, instance ID.</summary>
    public required HostInfo Host { get; init; }

    /// <summary>Maps enclave memory.</summary>
    public required IHugePageMapper Mapper { get; init; }

    /// <summary>The parent's vsock (heartbeat listener, console).</summary>
    public required IVsockTransport Vsock { get; init; }

    /// <summary><c>x86_64</c> or <c>aarch64</c>: the EIFs this host can run.</summary>
    public string Architecture { get; init; } = HostArchitecture;

    /// <summary>This machine's architecture in EIF terms.</summary>
    public static string HostArchitecture => RuntimeInformation.OSArchitecture == System.Runtime.InteropServices.Architecture.Arm64 ? "aarch64" : "x86_64";

    /// <summary>The real host: <c>/dev/nitro_enclaves</c>, /sys, hugetlb mmap, AF_VSOCK.</summary>
    public static NitroPlatform Nitro() => new()
    {
        Kind = "nitro",
        OpenDevice = () => NitroEnclavesDevice.Open(),
        Host = new HostInfo(),
        Mapper = HugeTlbMapper.Instance,
        Vsock = KernelVsock.Instance,
    };

    /// <summary>The simulator when <see cref="SimulatorVariable"/> names its folder, else the real host.</summary>
    public static NitroPlatform FromEnvironment() =>
        Environment.GetEnvironmentVariable(SimulatorVariable) is { Length: > 0 } folder
            ? Simulation.SimulatedNitro.Open(folder).Platform
            : Nitro();
}

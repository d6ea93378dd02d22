namespace Launcher;

/// <summary>What to launch and with what (nitro-cli run-enclave's options; <c>--config</c> JSON uses the same keys).</summary>
public sealed record LaunchRequest
{
    /// <summary>The EIF.</summary>
    public required string EifPath { get; init; }

    /// <summary>Enclave memory in MiB (at least 4 × the EIF's size and 64 MiB).</summary>
    public required ulong MemoryMiB { get; init; }

    /// <summary>How many vCPUs (whole cores); exclusive with <see cref="CpuIds"/>.</summary>
    public int? CpuCount { get; init; }

    /// <summary>Which CPUs of the pool (whole cores); exclusive with <see cref="CpuCount"/>.</summary>
    public IReadOnlyList<int>? CpuIds { get; init; }

    /// <summary>The enclave CID; 0 lets the hypervisor choose.</summary>
    public ulong EnclaveCid { get; init; }

    /// <summary>Debug mode: the console is readable, attestation PCRs are zero.</summary>
    public bool DebugMode { get; init; }

    /// <summary>The name; default the EIF's file name without <c>.eif</c>.</summary>
    public string? EnclaveName { get; init; }

    /// <summary>Use only hugepages of this size (nitro-cli#602); null: every size the kernel offers, largest first.</summary>
    public ulong? HugePageSize { get; init; }

    /// <summary>How long to wait for the heartbeat; null: nitro-cli's rule (<see cref="Heartbeat.Timeout"/>).</summary>
    public TimeSpan? HeartbeatTimeout { get; init; }

    /// <summary>The name to use: <see cref="EnclaveName"/>, else the file name without <c>.eif</c>.</summary>
    public string EffectiveName => EnclaveName ?? (Path.GetFileName(EifPath) is var name && name.EndsWith(".eif", StringComparison.Ordinal) ? name[..^4] : name);
}

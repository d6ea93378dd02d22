using EifFormat;
using Launcher.Driver;
using Launcher.Memory;
using Launcher.Vsock;

namespace Launcher;

/// <summary>nitro-cli's enclave states (src/common/json_output.rs): running, being torn down, gone.</summary>
public enum EnclaveState
{
    /// <summary><c>RUNNING</c>.</summary>
    Running,

    /// <summary><c>TERMINATING</c>.</summary>
    Terminating,

    /// <summary><c>EMPTY</c>: terminated, or it stopped by itself.</summary>
    Empty,
}

/// <summary>What describe-enclaves shows about one enclave.</summary>
public sealed record EnclaveDescription
{
    /// <summary>The name.</summary>
    public required string EnclaveName { get; init; }

    /// <summary><c>&lt;instance id&gt;-enc&lt;slot uid hex&gt;</c>.</summary>
    public required string EnclaveId { get; init; }

    /// <summary>The process that holds the enclave.</summary>
    public required int ProcessId { get; init; }

    /// <summary>The enclave's vsock CID.</summary>
    public required ulong EnclaveCid { get; init; }

    /// <summary>Its CPUs.</summary>
    public required IReadOnlyList<int> CpuIds { get; init; }

    /// <summary>Its memory in MiB (what was allocated, which may exceed what was asked).</summary>
    public required ulong MemoryMiB { get; init; }

    /// <summary>The state.</summary>
    public required EnclaveState State { get; init; }

    /// <summary>Started in debug mode.</summary>
    public required bool DebugMode { get; init; }

    /// <summary>The EIF's measurements (computed from the file, as nitro-cli does: a debug enclave's attested PCRs are zero).</summary>
    public required EifMeasurements Measurements { get; init; }

    /// <summary>The EIF's metadata JSON, if it has a metadata section.</summary>
    public byte[]? MetadataJson { get; init; }

    /// <summary>The EIF it was launched from.</summary>
    public required string EifPath { get; init; }

    /// <summary>Where it runs: <c>nitro</c>, <c>simulated</c> or <c>local</c>.</summary>
    public required string Platform { get; init; }

    /// <summary>When the launch finished.</summary>
    public required DateTimeOffset StartedAt { get; init; }

    /// <summary>A local enclave's port forwarding (--forward, --publish), or null when it has none.</summary>
    public ForwardingStatus? Forwarding { get; init; }
}

/// <summary>A local enclave's port forwarding as it is now.</summary>
/// <param name="Forward">The --forward rules, as given (<c>8000=tcp:127.0.0.1:8000</c>).</param>
/// <param name="Publish">The --publish rules with the host port actually bound (<c>127.0.0.1:40123:5000</c>).</param>
/// <param name="ActiveConnections">Connections being spliced now.</param>
/// <param name="TotalConnections">Connections spliced since the launch.</param>
public sealed record ForwardingStatus(IReadOnlyList<string> Forward, IReadOnlyList<string> Publish, int ActiveConnections, long TotalConnections);

/// <summary>An enclave somebody holds: a Nitro enclave (<see cref="RunningEnclave"/>) or a local one.</summary>
public interface IEnclaveInstance : IDisposable
{
    /// <summary>The current description.</summary>
    EnclaveDescription Describe();

    /// <summary>Waits up to <paramref name="timeout"/> for the enclave to stop by itself; true when it has.</summary>
    bool WaitForExit(TimeSpan timeout);

    /// <summary>Connects to the debug console (raw serial output).</summary>
    /// <exception cref="EnclaveException">E44 when the enclave is not in debug mode or the console cannot be reached.</exception>
    Stream OpenConsole(TimeSpan connectTimeout);

    /// <summary>Ends the enclave and releases everything it holds; idempotent.</summary>
    /// <exception cref="EnclaveException">E43 when its memory cannot be unmapped (the enclave is gone all the same).</exception>
    void Terminate();
}

/// <summary>
/// A started Nitro enclave: the enclave fd and its memory. It lives as long as this object (and its process): the
/// driver stops the enclave when the fd is closed. Terminate closes the fd, then unmaps the memory (nitro-cli
/// <c>EnclaveManager::terminate_enclave</c>).
/// </summary>
public sealed class RunningEnclave : IEnclaveInstance
{
    private readonly object _gate = new();
    private readonly IEnclaveVm _vm;
    private readonly EnclaveMemory _memory;
    private readonly IVsockTransport _vsock;
    private EnclaveState _state = EnclaveState.Running;
    private bool _exited;

    internal RunningEnclave(IEnclaveVm vm, EnclaveMemory memory, IVsockTransport vsock, EnclaveDescription description)
    {
        _vm = vm;
        _memory = memory;
        _vsock = vsock;
        Description = description;
    }

    /// <summary>The description at launch.</summary>
    public EnclaveDescription Description { get; }

    /// <summary>The slot uid.</summary>
    public ulong SlotUid => _vm.SlotUid;

    /// <summary>The enclave's memory (for checks: what was donated).</summary>
    public EnclaveMemory Memory => _memory;

    /// <summary>The state now.</summary>
    public EnclaveState State
    {
        get
        {
            lock (_gate)
                return _state;
        }
    }

    /// <inheritdoc/>
    public EnclaveDescription Describe() => Description with { State = State };

    /// <inheritdoc/>
    public bool WaitForExit(TimeSpan timeout)
    {
        lock (_gate)
        {
            if (_exited || _state == EnclaveState.Empty)
                return true;
        }

        bool stopped = _vm.WaitForEvent(timeout);
        if (stopped)
        {
            lock (_gate)
                _exited = true;
        }

        return stopped;
    }

    /// <inheritdoc/>
    public Stream OpenConsole(TimeSpan connectTimeout)
    {
        if (!Description.DebugMode)
        {
            throw new EnclaveException(LaunchError.EnclaveConsoleConnectionFailure,
                $"enclave {Description.EnclaveId} was not started in debug mode, so it has no console (run it with --debug-mode)");
        }

        var address = new VsockAddress(NitroEnclaves.HypervisorCid, checked((uint)Description.EnclaveCid + NitroEnclaves.ConsolePortOffset));
        try
        {
            return _vsock.Connect(address, connectTimeout).Stream;
        }
        catch (EnclaveException ex)
        {
            throw new EnclaveException(LaunchError.EnclaveConsoleConnectionFailure, $"connecting to the console of enclave {Description.EnclaveId} ({address}) failed: {ex.Message}", ex.Errno, ex);
        }
    }

    /// <inheritdoc/>
    public void Terminate()
    {
        lock (_gate)
        {
            if (_state == EnclaveState.Empty)
                return;
            _state = EnclaveState.Terminating;
        }

        try
        {
            _vm.Dispose();
            _memory.Release();
        }
        finally
        {
            lock (_gate)
                _state = EnclaveState.Empty;
        }
    }

    /// <summary>Terminates (never throws).</summary>
    public void Dispose()
    {
        try
        {
            Terminate();
        }
        catch (EnclaveException)
        {
            // Dispose runs on failure paths; Terminate is the call that reports.
        }
    }
}

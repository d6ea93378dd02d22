using System.Diagnostics;
using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using Launcher.Supervision;
using Launcher.Vsock;

namespace Launcher.Local;

/// <summary>How QEMU runs the guest.</summary>
public enum LocalAccelerator
{
    /// <summary>KVM when a bounded probe shows it works, else TCG.</summary>
    Auto,

    /// <summary>KVM (fails when it does not work).</summary>
    Kvm,

    /// <summary>TCG: software emulation, slower but available everywhere.</summary>
    Tcg,
}

/// <summary>A local launch: what run-enclave --local takes.</summary>
public sealed record LocalLaunchRequest
{
    /// <summary>The EIF.</summary>
    public required string EifPath { get; init; }

    /// <summary>Memory in MiB; default the larger of 512 and 4 × the EIF.</summary>
    public ulong? MemoryMiB { get; init; }

    /// <summary>vCPUs; default 2.</summary>
    public int? CpuCount { get; init; }

    /// <summary>The guest CID; 0 picks the lowest free one from 16.</summary>
    public ulong EnclaveCid { get; init; }

    /// <summary>Debug mode (the console verb may attach); the console is logged either way.</summary>
    public bool DebugMode { get; init; }

    /// <summary>The name; default the EIF's file name.</summary>
    public string? EnclaveName { get; init; }

    /// <summary>KVM, TCG or a probe.</summary>
    public LocalAccelerator Accelerator { get; init; } = LocalAccelerator.Auto;

    /// <summary>End the enclave after this long (a safety net for CI); null: no limit.</summary>
    public TimeSpan? Timeout { get; init; }

    /// <summary>How long to wait for the heartbeat; null: nitro-cli's rule.</summary>
    public TimeSpan? HeartbeatTimeout { get; init; }

    /// <summary>--forward: the enclave's connections to CID 3 that go on to a host address.</summary>
    public IReadOnlyList<ForwardRule> Forwards { get; init; } = [];

    /// <summary>--publish: host TCP ports connected into the enclave's vsock ports.</summary>
    public IReadOnlyList<PublishRule> Publishes { get; init; } = [];

    /// <summary>The name to use.</summary>
    public string EffectiveName => new LaunchRequest { EifPath = EifPath, MemoryMiB = 0, EnclaveName = EnclaveName }.EffectiveName;
}

/// <summary>
/// An EIF booted on QEMU's <c>nitro-enclave</c> machine (local-boot.md), with this process as its vhost-user-vsock back
/// end: QEMU checks the EIF, measures it into its emulated NSM and boots it; the guest's vsock reaches
/// <see cref="VhostUserVsockBackend"/>, where the heartbeat is answered as on a parent instance. The serial console is
/// captured from QEMU's first byte into a buffer and a log file; a kernel panic on it ends the enclave, and the
/// default runtime's last line (<c>enclave: command exited with status N</c>) gives the command's exit status. QEMU
/// runs with a parent-death signal, so it never outlives this process, and is always reaped.
/// </summary>
public sealed class LocalEnclave : IEnclaveInstance
{
    private readonly object _gate = new();
    private readonly Process _qemu;
    private readonly VhostUserVsockBackend _backend;
    private readonly ConsoleBuffer _console;
    private readonly StringBuilder _stderr = new();
    private readonly Thread _consoleThread;
    private readonly Thread _stderrThread;
    private readonly Action<string>? _log;
    private readonly CidReservation _cid;
    private PortForwarding? _forwarding;
    private EnclaveState _state = EnclaveState.Running;
    private EnclaveDescription _description = null!;
    private readonly ConsoleVerdict _verdict = new();
    private Timer? _deadline;
    private Timer? _panicTimer;

    private LocalEnclave(Process qemu, VhostUserVsockBackend backend, ConsoleBuffer console, CidReservation cid, string consoleLog, Action<string>? log)
    {
        _qemu = qemu;
        _backend = backend;
        _console = console;
        _cid = cid;
        ConsoleLogPath = consoleLog;
        _log = log;
        _consoleThread = new Thread(CaptureConsole) { IsBackground = true, Name = "local enclave console" };
        _stderrThread = new Thread(CaptureStderr) { IsBackground = true, Name = "local enclave qemu stderr" };
    }

    /// <summary>Where the console is logged (kept after the enclave ends).</summary>
    public string ConsoleLogPath { get; }

    /// <summary>The exit status the enclave's init reported for its command (128 + N when killed by signal N), or null.</summary>
    public int? CommandExitStatus => _verdict.ExitStatus;

    /// <summary>The kernel panic line, when the guest panicked.</summary>
    public string? Panic => _verdict.Panic;

    /// <summary>Why the enclave ended, once it has: "exited", "panicked", "timed out", "terminated".</summary>
    public string? Ending { get; private set; }

    /// <summary>The --timeout the enclave was launched with, or null.</summary>
    public TimeSpan? Timeout { get; private init; }

    /// <summary>The QEMU command line (for logs and the doctor).</summary>
    public IReadOnlyList<string> QemuArguments { get; private set; } = [];

    /// <summary>The host's side of the enclave's vsock (port forwarding builds on it).</summary>
    public IVsockTransport Vsock => _backend.Vsock;

    /// <summary>The --forward and --publish listeners and their connections, or null when there are none.</summary>
    public PortForwarding? Forwarding => _forwarding;

    /// <summary>
    /// Checks the EIF (strict reader, CRC, signature; version 4 and x86_64, which QEMU requires), starts the vsock back
    /// end and QEMU, and waits for the heartbeat.
    /// </summary>
    /// <param name="request">What to launch.</param>
    /// <param name="qemu">The QEMU to run (<see cref="QemuInstallation.Find"/>).</param>
    /// <param name="accelerator">The accelerator decided for this host ("kvm" or "tcg").</param>
    /// <param name="enclavesFolder">Where the sockets, reservation and console log go.</param>
    /// <param name="instanceId">The first part of the enclave ID.</param>
    /// <param name="log">Progress lines.</param>
    /// <exception cref="EnclaveException">E35/E59/E19 for the EIF, E26 for memory, E36 for a boot without heartbeat (naming the console log), E05 when QEMU cannot start.</exception>
    public static LocalEnclave Launch(LocalLaunchRequest request, QemuInstallation qemu, string accelerator, string enclavesFolder, string instanceId, Action<string>? log = null)
    {
        EnclaveImage image = EnclaveImage.Check(request.EifPath, "x86_64", DateTimeOffset.UtcNow);
        CheckForQemu(request.EifPath);
        ulong eifMiB = ((ulong)image.Length + (1UL << 20) - 1) >> 20;
        ulong memory = request.MemoryMiB ?? Math.Max(512, eifMiB * 4);
        if (memory < eifMiB * 4)
        {
            throw new EnclaveException(LaunchError.InsufficientMemoryRequested,
                $"--memory is {memory} MiB, but based on the EIF file size ({image.Path}, {image.Length} bytes), the minimum memory should be {eifMiB * 4} MiB");
        }

        int cpus = request.CpuCount ?? 2;
        if (cpus < 1)
            throw new EnclaveException(LaunchError.InvalidArgument, $"--cpu-count must be at least 1 (got {cpus})");
        if (NitroEnclaves.IsInvalidEnclaveCid(request.EnclaveCid))
            throw new EnclaveException(LaunchError.InvalidArgument, $"--enclave-cid {request.EnclaveCid} is reserved: 1, 2, 3 and {uint.MaxValue} and above are not enclave CIDs");

        EnclaveDirectory.Ensure(enclavesFolder);
        ulong slot = BitConverter.ToUInt64(RandomNumberGenerator.GetBytes(8)) & 0xFFFF_FFFF_FFFF; // 48 bits: unique, short
        CidReservation cid = CidReservation.Take(enclavesFolder, request.EnclaveCid);
        // Not "*.sock": those are the supervisors' sockets, which the verbs enumerate (EnclaveDirectory).
        string socket = Path.Join(enclavesFolder, $"{slot:x}.vhost-user");
        string consoleLog = Path.Join(enclavesFolder, $"{slot:x}.console.log");
        var backend = new VhostUserVsockBackend(socket, cid.Cid, log);
        ConsoleBuffer? console = null;
        IVsockListener? heartbeat = null;
        PortForwarding? forwarding = null;
        Process? process = null;
        LocalEnclave? enclave = null;
        try
        {
            backend.Start(); // QEMU is the vhost-user client: the socket must exist first (local-boot.md G8)
            TimeSpan heartbeatTimeout = request.HeartbeatTimeout ?? Heartbeat.Timeout((ulong)image.Length, memory << 20);
            heartbeat = Heartbeat.Listen(backend.Vsock, new VsockAddress(NitroEnclaves.ParentCid, NitroEnclaves.HeartbeatPort), heartbeatTimeout, log);
            if (request.Forwards.Count + request.Publishes.Count > 0)
            {
                // Bound before QEMU starts: a port in use fails the launch before anything boots, and the enclave's
                // application finds its forwards listening from its first instruction.
                forwarding = new PortForwarding(backend.Vsock, (uint)cid.Cid, request.Forwards, request.Publishes, log);
                forwarding.Start();
            }

            console = new ConsoleBuffer(consoleLog);
            string enclaveId = $"{instanceId}-enc{slot:x}";
            List<string> arguments = QemuArgumentsFor(image.Path, enclaveId, socket, memory, cpus, accelerator);
            process = StartQemu(qemu.Path, arguments);
            enclave = new LocalEnclave(process, backend, console, cid, consoleLog, log) { QemuArguments = arguments, Timeout = request.Timeout, _forwarding = forwarding };
            enclave._consoleThread.Start();
            enclave._stderrThread.Start();
            log?.Invoke($"Started local enclave with enclave-cid: {cid.Cid}, memory: {memory} MiB, vCPUs: {cpus}, accel: {accelerator} ({qemu.Path} {qemu.Version}); console log {consoleLog}");

            LocalEnclave started = enclave;
            try
            {
                Heartbeat.Await(heartbeat, (uint)cid.Cid, heartbeatTimeout, () => started.HasEnded, log);
            }
            catch (EnclaveException ex)
            {
                throw new EnclaveException(LaunchError.EnclaveBootFailure, enclave.BootFailure(ex.Message), ex.Errno, ex);
            }

            log?.Invoke($"heartbeat from the enclave (CID {cid.Cid}) acknowledged");
            heartbeat.Dispose();
            heartbeat = null;
            enclave._description = new EnclaveDescription
            {
                EnclaveName = request.EffectiveName,
                EnclaveId = enclaveId,
                ProcessId = Environment.ProcessId,
                EnclaveCid = cid.Cid,
                CpuIds = Enumerable.Range(0, cpus).ToList(),
                MemoryMiB = memory,
                State = EnclaveState.Running,
                DebugMode = request.DebugMode,
                Measurements = image.Measurements,
                MetadataJson = image.MetadataJson,
                EifPath = Path.GetFullPath(image.Path),
                Platform = "local",
                StartedAt = DateTimeOffset.UtcNow,
            };
            if (request.Timeout is { } limit)
                enclave._deadline = new Timer(_ => started.End("timed out", $"the --timeout of {limit.TotalSeconds:0} s passed"), null, limit, System.Threading.Timeout.InfiniteTimeSpan);
            return enclave;
        }
        catch
        {
            heartbeat?.Dispose();
            if (enclave is not null)
            {
                enclave.Terminate();
            }
            else
            {
                if (process is not null)
                    Reap(process);
                forwarding?.Dispose();
                backend.Dispose();
                console?.Dispose();
                cid.Dispose();
            }

            throw;
        }
    }

    /// <summary>True once QEMU has exited (or the enclave was ended).</summary>
    public bool HasEnded
    {
        get
        {
            lock (_gate)
            {
                if (_state != EnclaveState.Running)
                    return true;
            }

            return _qemu.HasExited;
        }
    }

    /// <inheritdoc/>
    public EnclaveDescription Describe()
    {
        lock (_gate)
            return _description with { State = HasEnded && _state == EnclaveState.Running ? EnclaveState.Empty : _state, Forwarding = _forwarding?.Status };
    }

    /// <inheritdoc/>
    public bool WaitForExit(TimeSpan timeout)
    {
        bool exited = timeout == System.Threading.Timeout.InfiniteTimeSpan ? WaitForever() : _qemu.WaitForExit(timeout);
        if (exited)
        {
            _consoleThread.Join(TimeSpan.FromSeconds(5)); // the last console lines (exit status) are read
            lock (_gate)
                Ending ??= Panic is not null ? "panicked" : "exited";
        }

        return exited;
    }

    /// <inheritdoc/>
    public Stream OpenConsole(TimeSpan connectTimeout) => _console.OpenReader();

    /// <inheritdoc/>
    public void Terminate()
    {
        lock (_gate)
        {
            if (_state == EnclaveState.Empty)
                return;
            _state = EnclaveState.Terminating;
            Ending ??= "terminated";
        }

        _deadline?.Dispose();
        _panicTimer?.Dispose();
        Reap(_qemu);
        _consoleThread.Join(TimeSpan.FromSeconds(5));
        _stderrThread.Join(TimeSpan.FromSeconds(5));
        _forwarding?.Dispose();
        _backend.Dispose();
        _console.Complete();
        _console.Dispose();
        _cid.Dispose();
        lock (_gate)
            _state = EnclaveState.Empty;
    }

    /// <inheritdoc/>
    public void Dispose() => Terminate();

    /// <summary>QEMU's command line for an EIF (local-boot.md §8.1, §9, §10.3).</summary>
    internal static List<string> QemuArgumentsFor(string eif, string enclaveId, string socket, ulong memoryMiB, int cpus, string accelerator)
    {
        // acpi=on: the machine forces ACPI off, and then a stock distribution kernel (the default runtime's) cannot
        // find the virtio-mmio vsock and NSM devices (local-boot.md G11). reboot=t, appended and so not measured, makes
        // the guest's reboot a triple fault that -no-reboot turns into QEMU's exit (§9). Under TCG, tsc_early_khz keeps
        // the kernel's TSC calibration from hanging on a loaded host (issue 5's boot test; also unmeasured).
        string append = accelerator == "tcg" ? "reboot=t tsc_early_khz=2000000" : "reboot=t";
        var arguments = new List<string>
        {
            "-M", $"{QemuInstallation.MachineName},vsock=vsock0,id={enclaveId},acpi=on",
            "-chardev", $"socket,id=vsock0,path={socket}",
            "-kernel", eif,
            "-append", append,
            "-m", $"{memoryMiB.ToString(CultureInfo.InvariantCulture)}M",
            "-smp", cpus.ToString(CultureInfo.InvariantCulture),
            "-accel", accelerator,
            "-display", "none", "-serial", "stdio", "-monitor", "none", "-no-reboot",
        };
        if (accelerator == "kvm")
            arguments.AddRange(["-cpu", "host"]);
        return arguments;
    }

    // What QEMU's EIF loader refuses (hw/core/eif.c; local-boot.md §6), said before QEMU is started.
    private static void CheckForQemu(string path)
    {
        using var reader = EifFormat.EifReader.Open(path);
        if (reader.Header.Version < 4)
        {
            throw new EnclaveException(LaunchError.EifParsingError,
                $"{path}: QEMU's nitro-enclave machine boots EIF version 4 and later ('version' {reader.Header.Version}); rebuild it with eif build-enclave or build-eif");
        }
    }

    private static Process StartQemu(string qemu, List<string> arguments)
    {
        // setpriv --pdeathsig KILL (util-linux): QEMU gets SIGKILL when the thread that started it dies, so no QEMU
        // outlives its keeper even if that is killed outright. The launching thread lives as long as the keeper.
        var info = new ProcessStartInfo(File.Exists("/usr/bin/setpriv") ? "/usr/bin/setpriv" : qemu)
        {
            UseShellExecute = false,
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        if (info.FileName != qemu)
        {
            info.ArgumentList.Add("--pdeathsig");
            info.ArgumentList.Add("KILL");
            info.ArgumentList.Add("--");
            info.ArgumentList.Add(qemu);
        }

        foreach (string argument in arguments)
            info.ArgumentList.Add(argument);
        try
        {
            Process process = Process.Start(info) ?? throw new InvalidOperationException("no process");
            process.StandardInput.Close(); // the console is output only; QEMU must not read the terminal
            return process;
        }
        catch (Exception ex) when (ex is System.ComponentModel.Win32Exception or InvalidOperationException)
        {
            throw new EnclaveException(LaunchError.ProcessSpawnFailure, $"cannot start {qemu}: {ex.Message}", innerException: ex);
        }
    }

    private static void Reap(Process process)
    {
        QemuCommand.Reap(process);
        try
        {
            process.WaitForExit(); // a killed QEMU is gone at once; this makes sure its exit was collected
        }
        catch (InvalidOperationException)
        {
            // never started or already reaped
        }
    }

    private bool WaitForever()
    {
        _qemu.WaitForExit();
        return true;
    }

    private string BootFailure(string why)
    {
        _qemu.WaitForExit(2000);
        string what = Panic is not null ? $"the enclave's kernel panicked ({Panic})"
            : _qemu.HasExited ? $"QEMU exited with status {_qemu.ExitCode}{QemuErrors()}"
            : why;
        return $"{what}; the console log is {ConsoleLogPath}";
    }

    private string QemuErrors()
    {
        lock (_stderr)
        {
            string text = _stderr.ToString().Trim();
            return text.Length == 0 ? string.Empty : $": {string.Join(" / ", text.Split('\n').TakeLast(3).Select(l => l.Trim()))}";
        }
    }

    private void End(string ending, string why)
    {
        lock (_gate)
        {
            if (_state != EnclaveState.Running || _qemu.HasExited)
                return;
            Ending ??= ending;
        }

        _log?.Invoke($"ending the local enclave: {why}");
        try
        {
            _qemu.Kill(entireProcessTree: true);
        }
        catch (InvalidOperationException)
        {
        }
    }

    // The serial console: into the buffer (readers, log file) and, line by line, checked for a panic and for the
    // init's exit-status line.
    private void CaptureConsole()
    {
        Stream output = _qemu.StandardOutput.BaseStream;
        byte[] buffer = new byte[16 << 10];
        var line = new StringBuilder();
        try
        {
            int n;
            while ((n = output.Read(buffer)) > 0)
            {
                _console.Append(buffer.AsSpan(0, n));
                foreach (char c in Encoding.UTF8.GetString(buffer, 0, n))
                {
                    if (c != '\n')
                    {
                        if (line.Length < 4096)
                            line.Append(c);
                        continue;
                    }

                    Inspect(line.ToString().TrimEnd('\r'));
                    line.Clear();
                }
            }
        }
        catch (IOException)
        {
        }

        if (line.Length > 0)
            Inspect(line.ToString());
        _console.Complete();
    }

    private void Inspect(string line)
    {
        bool before = _verdict.Panic is null;
        _verdict.Observe(line);
        if (before && _verdict.Panic is not null)
        {
            // Give the kernel a moment to print its backtrace into the log, then end it (the EIF's panic=30 would
            // otherwise keep QEMU for 30 s, or forever with panic=0).
            _panicTimer = new Timer(_ => End("panicked", _verdict.Panic), null, TimeSpan.FromSeconds(1), System.Threading.Timeout.InfiniteTimeSpan);
        }
    }

    private void CaptureStderr()
    {
        try
        {
            string? line;
            while ((line = _qemu.StandardError.ReadLine()) is not null)
            {
                lock (_stderr)
                {
                    if (_stderr.Length < 64 << 10)
                        _stderr.Append(line).Append('\n');
                }

                _log?.Invoke($"qemu: {line}");
            }
        }
        catch (IOException)
        {
        }
    }
}

/// <summary>
/// A local enclave's CID, held while it runs: a file <c>cid-N</c> in the enclaves folder, created exclusively, holding
/// the keeper's PID (a file whose process is gone is taken over). Each local enclave has its own vsock device, so CIDs
/// could repeat; keeping them distinct matches Nitro, where they identify enclaves.
/// </summary>
internal sealed class CidReservation : IDisposable
{
    private readonly string _path;

    private CidReservation(string path, ulong cid)
    {
        _path = path;
        Cid = cid;
    }

    internal ulong Cid { get; }

    /// <exception cref="EnclaveException">E03 when the CID asked for is held by another local enclave.</exception>
    internal static CidReservation Take(string folder, ulong wanted)
    {
        for (ulong cid = wanted == 0 ? 16 : wanted; cid < uint.MaxValue; cid++)
        {
            string path = Path.Join(folder, $"cid-{cid}");
            for (int attempt = 0; attempt < 2; attempt++)
            {
                try
                {
                    using var file = new FileStream(path, FileMode.CreateNew, FileAccess.Write);
                    file.Write(Encoding.ASCII.GetBytes(Environment.ProcessId.ToString(CultureInfo.InvariantCulture)));
                    return new CidReservation(path, cid);
                }
                catch (IOException) when (File.Exists(path))
                {
                    if (OwnerAlive(path))
                        break;
                    TryDelete(path); // left by a keeper that died
                }
            }

            if (wanted != 0)
                throw new EnclaveException(LaunchError.InvalidArgument, $"--enclave-cid {wanted} is used by another local enclave");
        }

        throw new EnclaveException(LaunchError.InvalidArgument, "no free CID");
    }

    public void Dispose() => TryDelete(_path);

    private static bool OwnerAlive(string path)
    {
        try
        {
            return int.TryParse(File.ReadAllText(path).Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out int pid) && Directory.Exists($"/proc/{pid}");
        }
        catch (IOException)
        {
            return true; // being written by its owner
        }
    }

    private static void TryDelete(string path)
    {
        try
        {
            File.Delete(path);
        }
        catch (IOException)
        {
        }
    }
}

/// <summary>
/// What an enclave's console says about how it ended: the default runtime's init prints
/// <c>enclave: command exited with status N</c> or <c>enclave: command killed by signal N (SIGx)</c> last
/// (tools/enclave-init), and a kernel prints <c>Kernel panic - not syncing</c>.
/// </summary>
public sealed class ConsoleVerdict
{
    /// <summary>The console line a kernel panic starts with.</summary>
    public const string PanicMarker = "Kernel panic - not syncing";

    private const string ExitMarker = "enclave: command exited with status ";
    private const string KilledMarker = "enclave: command killed by signal ";

    /// <summary>The command's exit status (128 + N for signal N), or null when the init did not report one.</summary>
    public int? ExitStatus { get; private set; }

    /// <summary>The panic message, from its marker on, or null.</summary>
    public string? Panic { get; private set; }

    /// <summary>Looks at one console line.</summary>
    public void Observe(string line)
    {
        int at = line.IndexOf(ExitMarker, StringComparison.Ordinal);
        if (at >= 0 && int.TryParse(line.AsSpan(at + ExitMarker.Length).Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out int status))
            ExitStatus = status;
        at = line.IndexOf(KilledMarker, StringComparison.Ordinal);
        if (at >= 0)
        {
            string rest = line[(at + KilledMarker.Length)..];
            int end = rest.IndexOf(' ', StringComparison.Ordinal);
            if (int.TryParse(end < 0 ? rest.Trim() : rest[..end], NumberStyles.None, CultureInfo.InvariantCulture, out int signal))
                ExitStatus = 128 + signal;
        }

        at = line.IndexOf(PanicMarker, StringComparison.Ordinal);
        if (Panic is null && at >= 0)
            Panic = line[at..].Trim();
    }
}

/// <summary>Everything run-enclave --local needs before a launch: QEMU, the accelerator.</summary>
public static class LocalPlatform
{
    /// <summary>The QEMU to use.</summary>
    /// <exception cref="EnclaveException">E19 naming what was tried and how to build one.</exception>
    public static QemuInstallation RequireQemu()
    {
        QemuSearch search = QemuInstallation.Search();
        return search.Installation ?? throw new EnclaveException(LaunchError.FileOperationFailure,
            $"no {QemuInstallation.BinaryName} with QEMU's {QemuInstallation.MachineName} machine (Debian's packages lack it): " +
            $"build one with tools/qemu/build (about 3 minutes) or name one with {QemuInstallation.EnvironmentVariable}; tried: {search.Describe()}");
    }

    /// <summary>
    /// "kvm" or "tcg": as asked, or for <see cref="LocalAccelerator.Auto"/> KVM only when a bounded probe boots the
    /// EIF's own kernel with it (a /dev/kvm that exists may still hang or abort QEMU, local-boot.md §8.3).
    /// </summary>
    public static string ResolveAccelerator(LocalAccelerator accelerator, QemuInstallation qemu, string eifPath, Action<string>? log)
    {
        if (accelerator == LocalAccelerator.Tcg)
            return "tcg";
        string kernel = Path.Join(Path.GetTempPath(), $"eif-kvm-probe-{Guid.NewGuid():N}.bzImage");
        try
        {
            using (var reader = EifFormat.EifReader.Open(eifPath))
            using (var output = File.Create(kernel))
            using (var section = reader.OpenSection(reader.FindSection(EifFormat.EifSectionType.Kernel)!.Value.Index))
                section.CopyTo(output);
            KvmVerdict verdict = KvmProbe.Check(qemu.Path, kernel);
            if (accelerator == LocalAccelerator.Kvm && !verdict.Usable)
                throw new EnclaveException(LaunchError.InvalidArgument, $"--accel kvm: KVM does not work here: {verdict.Reason}");
            log?.Invoke($"accelerator: {verdict.Accelerator} ({(verdict.Usable ? "KVM works: " : "KVM does not work here: ")}{verdict.Reason}{(verdict.FromCache ? ", probed earlier this boot" : string.Empty)})");
            return verdict.Accelerator;
        }
        finally
        {
            File.Delete(kernel);
        }
    }
}

using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Launcher.Local;

/// <summary>Whether QEMU can use KVM on this machine, and why (or why not).</summary>
/// <param name="Usable">True when a kernel booted under <c>-accel kvm</c>.</param>
/// <param name="Reason">What was observed: "a kernel printed 'Linux version' after 0.4 s under -accel kvm", "/dev/kvm does not exist", "QEMU aborted (SIGABRT, exit status 134): …".</param>
/// <param name="FromCache">True when the verdict comes from this boot's earlier probe (<c>kvm-probe.json</c>).</param>
public sealed record KvmVerdict(bool Usable, string Reason, bool FromCache = false)
{
    /// <summary>The <c>-accel</c> value to boot with: <c>kvm</c> when usable, else <c>tcg</c>.</summary>
    public string Accelerator => Usable ? "kvm" : "tcg";
}

/// <summary>
/// Decides whether KVM is usable by booting a kernel under it for a bounded time (spec local-boot.md §8.3, G1): a
/// <c>/dev/kvm</c> that exists may still be unusable, e.g. the software <c>kvm_pvm</c> module, where <c>-cpu host</c>
/// aborts QEMU with SIGABRT and other CPU models hang in instruction emulation. The probe boots
/// <c>-M microvm -accel kvm -cpu host</c> (any QEMU with microvm: Debian's own binary will do) and succeeds when the
/// console shows <c>Linux version</c>; QEMU is killed right then, and on every other path. The verdict is kept in
/// <c>${XDG_CACHE_HOME:-~/.cache}/eif/kvm-probe.json</c> per boot (<c>/proc/sys/kernel/random/boot_id</c>) and per
/// QEMU (path and version), so the machine is probed once per boot.
/// </summary>
public static class KvmProbe
{
    /// <summary>How long the probe waits for <c>Linux version</c>: a Debian bzImage prints it after ~1–3 s under TCG, far less under working KVM.</summary>
    public static readonly TimeSpan DefaultTimeout = TimeSpan.FromSeconds(15);

    /// <summary>What the kernel prints first on the console (<c>init/main.c</c> <c>linux_banner</c>).</summary>
    internal const string Marker = "Linux version";

    /// <summary>The probe's verdict file name, in <c>${XDG_CACHE_HOME:-~/.cache}/eif</c>.</summary>
    public const string CacheFileName = "kvm-probe.json";

    private const string DevKvm = "/dev/kvm";
    private const string BootIdPath = "/proc/sys/kernel/random/boot_id";
    private static readonly object CacheLock = new();
    private static readonly JsonSerializerOptions Indented = new() { WriteIndented = true };

    /// <summary>
    /// Whether KVM is usable: not when <c>/dev/kvm</c> is missing or cannot be opened read-write; else this boot's
    /// cached verdict for this QEMU, or a fresh probe that boots <paramref name="kernel"/> with
    /// <paramref name="qemu"/> under <c>-accel kvm</c> for at most <paramref name="timeout"/>.
    /// </summary>
    /// <param name="qemu">A <c>qemu-system-x86_64</c> with the microvm machine.</param>
    /// <param name="kernel">A bzImage, e.g. the default runtime's (<c>~/.cache/eif/runtime/x86_64/bzImage</c>).</param>
    /// <param name="timeout">How long to wait for the console; <see cref="DefaultTimeout"/> when null.</param>
    public static KvmVerdict Check(string qemu, string kernel, TimeSpan? timeout = null) =>
        Check(qemu, kernel, timeout ?? DefaultTimeout, DevKvm, BootIdPath, Path.Combine(QemuInstallation.CacheRoot(), CacheFileName));

    // The probe with its machine inputs given: the KVM device, the boot-id file and the verdict file (null: no cache).
    internal static KvmVerdict Check(string qemu, string kernel, TimeSpan timeout, string devKvm, string bootIdPath, string? cacheFile)
    {
        if (DeviceProblem(devKvm) is { } problem)
            return new KvmVerdict(false, problem);
        if (!File.Exists(kernel))
            return new KvmVerdict(false, $"cannot probe KVM: the kernel {kernel} does not exist");

        string? bootId = ReadBootId(bootIdPath);
        string version = QemuInstallation.VersionLineOf(qemu);
        if (cacheFile is not null && bootId is not null && ReadCached(cacheFile, bootId, qemu, version) is { } cached)
            return cached;

        var (verdict, conclusive) = Probe(qemu, kernel, timeout);
        if (conclusive && cacheFile is not null && bootId is not null)
            WriteCached(cacheFile, bootId, qemu, version, verdict);
        return verdict;
    }

    // Null when the device can be opened read-write (as QEMU opens it), else why not.
    internal static string? DeviceProblem(string devKvm)
    {
        try
        {
            using var handle = File.OpenHandle(devKvm, FileMode.Open, FileAccess.ReadWrite, FileShare.ReadWrite);
            return null;
        }
        catch (Exception ex) when (ex is FileNotFoundException or DirectoryNotFoundException)
        {
            return $"{devKvm} does not exist (no KVM module loaded, or no hardware virtualization)";
        }
        catch (UnauthorizedAccessException)
        {
            return $"{devKvm} cannot be opened read-write by this user (permission denied)";
        }
        catch (IOException ex)
        {
            return $"{devKvm} cannot be opened read-write ({ex.Message})";
        }
    }

    // Boots the kernel under KVM; the verdict, and whether it says something about KVM (false when QEMU itself
    // could not be started: nothing to remember).
    internal static (KvmVerdict Verdict, bool Conclusive) Probe(string qemu, string kernel, TimeSpan timeout)
    {
        string[] arguments =
        [
            "-M", "microvm", "-accel", "kvm", "-cpu", "host", "-m", "256M", "-nodefaults", "-no-user-config",
            "-display", "none", "-serial", "stdio", "-monitor", "none", "-no-reboot",
            "-kernel", kernel, "-append", "console=ttyS0 reboot=t panic=-1",
        ];
        QemuRunResult run = QemuCommand.Run(qemu, arguments, timeout, Marker);
        return (Verdict(run, timeout), run.StartError is null);
    }

    // The verdict a finished probe run gives.
    internal static KvmVerdict Verdict(QemuRunResult run, TimeSpan timeout)
    {
        string seconds = run.Elapsed.TotalSeconds.ToString("0.0", CultureInfo.InvariantCulture);
        if (run.StartError is not null)
            return new KvmVerdict(false, $"cannot probe KVM: QEMU cannot be run ({run.StartError})");
        if (run.MarkerSeen)
            return new KvmVerdict(true, $"a kernel printed '{Marker}' after {seconds} s under -accel kvm");
        string detail = RelevantLine(run.Stderr) is { } line ? ": " + line : string.Empty;
        if (run.TimedOut)
        {
            return new KvmVerdict(false,
                $"no '{Marker}' on the console within {timeout.TotalSeconds.ToString("0.#", CultureInfo.InvariantCulture)} s under -accel kvm (KVM that emulates instructions in software, such as kvm_pvm, hangs){detail}");
        }

        int status = run.ExitCode ?? -1;
        string how = status > 128 && SignalName(status - 128) is { } signal
            ? $"QEMU was killed by {signal} (exit status {status})"
            : $"QEMU exited with status {status}";
        return new KvmVerdict(false, $"{how} after {seconds} s under -accel kvm before the kernel printed '{Marker}'{detail}");
    }

    // The stderr line that says most: the first that reads like an error, else the first that is not a warning,
    // else the first. ("error: failed to set MSR 0x10a to 0xc000069" comes before the assertion it leads to.)
    internal static string? RelevantLine(string stderr)
    {
        string[] lines = stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        string? line = lines.FirstOrDefault(l => l.Contains("error", StringComparison.OrdinalIgnoreCase)
                                                 || l.Contains("assertion", StringComparison.OrdinalIgnoreCase)
                                                 || l.Contains("failed", StringComparison.OrdinalIgnoreCase)
                                                 || l.Contains("could not", StringComparison.OrdinalIgnoreCase)
                                                 || l.Contains("cannot", StringComparison.OrdinalIgnoreCase))
                       ?? lines.FirstOrDefault(l => !l.Contains("warning", StringComparison.OrdinalIgnoreCase))
                       ?? lines.FirstOrDefault();
        return line is null ? null : EifFormat.PrintableText.Of(line, 200);
    }

    private static string? SignalName(int signal) => signal switch
    {
        4 => "SIGILL",
        6 => "SIGABRT",
        7 => "SIGBUS",
        9 => "SIGKILL",
        11 => "SIGSEGV",
        15 => "SIGTERM",
        _ => null,
    };

    private static string? ReadBootId(string path)
    {
        try
        {
            string id = File.ReadAllText(path).Trim();
            return id.Length > 0 ? id : null;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    // The file: {"BootId": "…", "Verdicts": [{"Qemu": path, "Version": line, "Usable": bool, "Reason": "…", "ProbedAt": "…"}]}.
    // A file of another boot, or one that cannot be read, counts as empty.
    private static JsonArray ReadVerdicts(string cacheFile, string bootId)
    {
        try
        {
            if (JsonNode.Parse(File.ReadAllText(cacheFile)) is JsonObject root
                && root["BootId"]?.GetValueKind() == JsonValueKind.String && (string?)root["BootId"] == bootId
                && root["Verdicts"] is JsonArray verdicts)
            {
                return verdicts;
            }
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or JsonException or InvalidOperationException)
        {
        }

        return [];
    }

    private static KvmVerdict? ReadCached(string cacheFile, string bootId, string qemu, string version)
    {
        lock (CacheLock)
        {
            foreach (JsonNode? node in ReadVerdicts(cacheFile, bootId))
            {
                if (node is JsonObject entry && Text(entry, "Qemu") == qemu && Text(entry, "Version") == version
                    && entry["Usable"]?.GetValueKind() is JsonValueKind.True or JsonValueKind.False && Text(entry, "Reason") is { } reason)
                {
                    return new KvmVerdict((bool)entry["Usable"]!, reason, FromCache: true);
                }
            }

            return null;
        }
    }

    private static void WriteCached(string cacheFile, string bootId, string qemu, string version, KvmVerdict verdict)
    {
        lock (CacheLock)
        {
            var kept = new JsonArray();
            foreach (JsonNode? node in ReadVerdicts(cacheFile, bootId))
            {
                if (node is JsonObject entry && !(Text(entry, "Qemu") == qemu && Text(entry, "Version") == version))
                    kept.Add(entry.DeepClone());
            }

            kept.Add(new JsonObject
            {
                ["Qemu"] = qemu,
                ["Version"] = version,
                ["Usable"] = verdict.Usable,
                ["Reason"] = verdict.Reason,
                ["ProbedAt"] = DateTime.UtcNow.ToString("yyyy-MM-ddTHH:mm:ssZ", CultureInfo.InvariantCulture),
            });
            var root = new JsonObject { ["BootId"] = bootId, ["Verdicts"] = kept };
            try
            {
                Directory.CreateDirectory(Path.GetDirectoryName(cacheFile)!);
                // Written beside and renamed over: another process reads either the old file or the new one.
                string temporary = $"{cacheFile}.{Environment.ProcessId}.tmp";
                File.WriteAllText(temporary, root.ToJsonString(Indented) + "\n");
                File.Move(temporary, cacheFile, overwrite: true);
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                // No cache then: the next call probes again.
            }
        }
    }

    private static string? Text(JsonObject entry, string name) =>
        entry[name]?.GetValueKind() == JsonValueKind.String ? (string?)entry[name] : null;
}

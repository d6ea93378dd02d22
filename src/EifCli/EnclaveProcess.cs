using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Launcher;
using Launcher.Supervision;

namespace EifCli;

/// <summary>
/// run-enclave's process model: the enclave lives as long as its fd, and every ioctl must come from the process that
/// created it, so run-enclave starts a detached copy of <c>eif</c> (the "enclave process", nitro-cli's term) that
/// launches the enclave, holds it and supervises it. The two talk over the child's standard streams: the request as
/// one JSON line on stdin, progress lines on stderr, one JSON answer line on stdout. After answering, the child moves
/// its output to a log file next to its socket and stays until the enclave ends.
/// </summary>
internal static class EnclaveProcess
{
    /// <summary>The hidden verb the child runs.</summary>
    internal const string Verb = "__enclave-process";

    /// <summary>Starts the enclave process for <paramref name="request"/> and returns what it launched.</summary>
    /// <exception cref="EnclaveException">The launch's failure as the child reported it; E05 when the child could not run.</exception>
    internal static EnclaveDescription Start(LaunchRequest request, string enclavesFolder, TextWriter stderr) =>
        Start(LaunchRequestJson.ToJson(request), enclavesFolder, stderr);

    /// <summary>Starts the enclave process for a request in its JSON form (a Nitro or a local launch).</summary>
    internal static EnclaveDescription Start(JsonObject request, string enclavesFolder, TextWriter stderr)
    {
        ProcessStartInfo start = SelfCommand(Verb);
        start.RedirectStandardInput = true;
        start.RedirectStandardOutput = true;
        start.RedirectStandardError = true;
        start.Environment[EnclaveDirectory.Variable] = enclavesFolder;
        Process child;
        try
        {
            child = Process.Start(start) ?? throw new InvalidOperationException("no process");
        }
        catch (Exception ex) when (ex is System.ComponentModel.Win32Exception or InvalidOperationException)
        {
            throw new EnclaveException(LaunchError.ProcessSpawnFailure, $"cannot start the enclave process ({start.FileName}): {ex.Message}", innerException: ex);
        }

        using (child)
        {
            var progress = new Thread(() =>
            {
                try
                {
                    string? line;
                    while ((line = child.StandardError.ReadLine()) is not null)
                        stderr.WriteLine(line);
                }
                catch (IOException)
                {
                }
            }) { IsBackground = true, Name = "enclave process stderr" };
            progress.Start();

            child.StandardInput.WriteLine(request.ToJsonString());
            child.StandardInput.Close();
            string? answerLine = child.StandardOutput.ReadLine();
            if (answerLine is null)
            {
                child.WaitForExit(5000);
                progress.Join(2000);
                string code = child.HasExited ? child.ExitCode.ToString(CultureInfo.InvariantCulture) : "unknown";
                throw new EnclaveException(LaunchError.ProcessSpawnFailure, $"the enclave process ended without an answer (exit code {code})");
            }

            progress.Join(2000); // the child closes its stderr pipe once it answered; let the last progress lines through
            return Answer(answerLine);
        }
    }

    /// <summary>The child: launch, answer, detach, supervise. Returns its exit code.</summary>
    internal static int Serve(TextReader stdin, TextWriter stdout, TextWriter stderr)
    {
        // A session of its own: the terminal's Ctrl-C and hang-up do not reach the enclave's keeper.
        _ = Launcher.Interop.Libc.SetSid();
        string folder = EnclaveDirectory.Default;
        EnclaveSupervisor supervisor;
        try
        {
            JsonObject json = LaunchRequestJson.Parse(stdin.ReadLine() ?? string.Empty, "the launch request");
            supervisor = LaunchSupervised(json, "the launch request", folder, line => stderr.WriteLine(line));
        }
        catch (EnclaveException ex)
        {
            stdout.WriteLine(Error(ex).ToJsonString());
            stdout.Flush();
            return (int)ex.Error;
        }

        using (supervisor)
        {
            EnclaveDescription description = supervisor.Enclave.Describe();
            string log = Path.ChangeExtension(EnclaveDirectory.SocketPath(folder, SlotOf(description)), ".log");
            try
            {
                stderr.Flush();
                stdout.WriteLine(new JsonObject { ["Ok"] = true, ["Enclave"] = JsonNode.Parse(DescriptionJson(description)) }.ToJsonString());
                stdout.Flush();
                Detach(log);
            }
            catch (IOException)
            {
                // run-enclave went away before it heard the answer (Ctrl-C): nobody knows about this enclave, end it.
                supervisor.Stop();
                supervisor.Run();
                return (int)LaunchError.EnclaveProcessSendReplyFailure;
            }

            using IDisposable signals = StopOnSignals(supervisor);
            Console.Out.WriteLine($"{DateTimeOffset.UtcNow:O} supervising {description.EnclaveId} (CID {description.EnclaveCid})");
            string ending = supervisor.Run();
            Console.Out.WriteLine($"{DateTimeOffset.UtcNow:O} {description.EnclaveId}: {ending}; released");
            return ExitCode.Success;
        }
    }

    /// <summary>Launches a request in its JSON form (<c>"local": true</c> for QEMU) under a supervisor.</summary>
    internal static EnclaveSupervisor LaunchSupervised(JsonObject json, string what, string folder, Action<string> log) =>
        json["local"]?.GetValue<bool>() == true
            ? EnclaveHost.LaunchLocalSupervised(LaunchRequestJson.LocalFromJson(json, what), folder, log)
            : EnclaveHost.LaunchSupervised(NitroPlatform.FromEnvironment(), LaunchRequestJson.FromJson(json, what), folder, log);

    /// <summary>SIGTERM and SIGINT end the supervision (the enclave is terminated cleanly) instead of the process.</summary>
    internal static IDisposable StopOnSignals(EnclaveSupervisor supervisor, Action? onSignal = null)
    {
        void Stop(PosixSignalContext context)
        {
            context.Cancel = true;
            onSignal?.Invoke();
            supervisor.Stop();
        }

        var registrations = new[] { PosixSignalRegistration.Create(PosixSignal.SIGTERM, Stop), PosixSignalRegistration.Create(PosixSignal.SIGINT, Stop) };
        return new Registrations(registrations);
    }

    /// <summary>How to run this program again: the <c>eif</c> apphost next to this assembly, else <c>dotnet eif.dll</c>.</summary>
    internal static ProcessStartInfo SelfCommand(params string[] args)
    {
        string folder = AppContext.BaseDirectory;
        string apphost = Path.Join(folder, "eif");
        ProcessStartInfo start;
        if (File.Exists(apphost))
        {
            start = new ProcessStartInfo(apphost);
        }
        else
        {
            string host = Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") is { Length: > 0 } h ? h : "dotnet";
            start = new ProcessStartInfo(host);
            start.ArgumentList.Add(Path.Join(folder, "eif.dll"));
        }

        foreach (string arg in args)
            start.ArgumentList.Add(arg);
        start.UseShellExecute = false;
        return start;
    }

    private sealed class Registrations(PosixSignalRegistration[] registrations) : IDisposable
    {
        public void Dispose()
        {
            foreach (PosixSignalRegistration registration in registrations)
                registration.Dispose();
        }
    }

    private static EnclaveDescription Answer(string line)
    {
        JsonObject answer;
        try
        {
            answer = JsonNode.Parse(line) as JsonObject ?? throw new JsonException("not an object");
        }
        catch (JsonException ex)
        {
            throw new EnclaveException(LaunchError.SerdeError, $"the enclave process answered '{Options.Shorten(line)}': {ex.Message}", innerException: ex);
        }

        if (answer["Ok"]?.GetValue<bool>() == true)
            return DescriptionFromJson(answer["Enclave"]!.ToJsonString());
        throw new EnclaveException(
            (LaunchError)(answer["Error"]?.GetValue<int>() ?? (int)LaunchError.UnspecifiedError),
            answer["Message"]?.GetValue<string>() ?? "the enclave process failed");
    }

    private static JsonObject Error(EnclaveException ex) => new() { ["Ok"] = false, ["Error"] = (int)ex.Error, ["Message"] = ex.Message };

    private static ulong SlotOf(EnclaveDescription description) =>
        ulong.Parse(description.EnclaveId[(description.EnclaveId.LastIndexOf("-enc", StringComparison.Ordinal) + 4)..], NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture);

    private static string DescriptionJson(EnclaveDescription description) => EnclaveDescriptionJson.ToJson(description).ToJsonString();

    private static EnclaveDescription DescriptionFromJson(string json) => EnclaveDescriptionJson.FromJson((JsonObject)JsonNode.Parse(json)!);

    // After answering: stdout and stderr go to the log file (nothing may write into the closed pipes), stdin is /dev/null.
    private static void Detach(string logPath)
    {
        using var log = new FileStream(logPath, new FileStreamOptions
        {
            Mode = FileMode.Append,
            Access = FileAccess.Write,
            Share = FileShare.ReadWrite,
            UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite,
        });
        int fd = (int)log.SafeFileHandle.DangerousGetHandle();
        if (Launcher.Interop.Libc.Dup2(fd, 1) < 0 || Launcher.Interop.Libc.Dup2(fd, 2) < 0)
        {
            int errno = Marshal.GetLastPInvokeError(); // read before anything else can overwrite it
            throw new IOException($"dup2 onto the log {logPath} failed (errno {errno})");
        }
    }
}

/// <summary>
/// <see cref="LaunchRequest"/> as JSON with nitro-cli's <c>--config</c> keys (<c>eif_path</c>, <c>memory_mib</c>,
/// <c>cpu_count</c>, <c>cpu_ids</c>, <c>enclave_cid</c>, <c>debug_mode</c>, <c>enclave_name</c>), plus ours
/// (<c>hugepage_size</c>, <c>heartbeat_timeout_seconds</c>). <c>attach_console</c> is read by the CLI.
/// </summary>
internal static class LaunchRequestJson
{
    private static readonly string[] Keys =
        ["eif_path", "memory_mib", "cpu_count", "cpu_ids", "enclave_cid", "debug_mode", "attach_console", "enclave_name", "hugepage_size", "heartbeat_timeout_seconds", "local", "accel", "timeout_seconds", "forward", "publish"];

    /// <summary>A local launch as JSON (the enclave process's request).</summary>
    internal static JsonObject ToJson(Launcher.Local.LocalLaunchRequest request)
    {
        var json = new JsonObject
        {
            ["local"] = true,
            ["eif_path"] = Path.GetFullPath(request.EifPath),
            ["enclave_cid"] = request.EnclaveCid,
            ["debug_mode"] = request.DebugMode,
            ["enclave_name"] = request.EffectiveName,
            ["accel"] = request.Accelerator.ToString().ToLowerInvariant(),
        };
        if (request.MemoryMiB is { } memory)
            json["memory_mib"] = memory;
        if (request.CpuCount is { } count)
            json["cpu_count"] = count;
        if (request.Timeout is { } timeout)
            json["timeout_seconds"] = timeout.TotalSeconds;
        if (request.HeartbeatTimeout is { } heartbeat)
            json["heartbeat_timeout_seconds"] = heartbeat.TotalSeconds;
        if (request.Forwards.Count > 0)
            json["forward"] = new JsonArray(request.Forwards.Select(r => (JsonNode)JsonValue.Create(r.Text)).ToArray());
        if (request.Publishes.Count > 0)
            json["publish"] = new JsonArray(request.Publishes.Select(r => (JsonNode)JsonValue.Create(r.Text)).ToArray());
        return json;
    }

    // A JSON array of strings (absent: none).
    private static IEnumerable<string> Strings(JsonNode? node, string key) => node switch
    {
        null => [],
        JsonArray array => array.Select(item => item?.GetValue<string>() ?? throw new FormatException($"'{key}' holds a null")).ToList(),
        _ => throw new FormatException($"'{key}' is not an array of strings"),
    };

    /// <summary>Parses a local launch.</summary>
    /// <exception cref="EnclaveException">E17 for a bad value, E01 for a missing key.</exception>
    internal static Launcher.Local.LocalLaunchRequest LocalFromJson(JsonObject json, string what)
    {
        try
        {
            string eif = json["eif_path"]?.GetValue<string>() ?? throw new EnclaveException(LaunchError.MissingArgument, $"{what}: 'eif_path' is missing");
            string accel = json["accel"]?.GetValue<string>() ?? "auto";
            return new Launcher.Local.LocalLaunchRequest
            {
                EifPath = eif,
                MemoryMiB = json["memory_mib"]?.GetValue<ulong>(),
                CpuCount = json["cpu_count"]?.GetValue<int>(),
                EnclaveCid = json["enclave_cid"]?.GetValue<ulong>() ?? 0,
                DebugMode = json["debug_mode"]?.GetValue<bool>() == true || json["attach_console"]?.GetValue<bool>() == true,
                EnclaveName = json["enclave_name"]?.GetValue<string>(),
                Accelerator = Enum.TryParse(accel, ignoreCase: true, out Launcher.Local.LocalAccelerator a)
                    ? a
                    : throw new EnclaveException(LaunchError.InvalidArgument, $"{what}: 'accel' is '{accel}'; use auto, kvm or tcg"),
                Timeout = json["timeout_seconds"]?.GetValue<double>() is { } t ? TimeSpan.FromSeconds(t) : null,
                HeartbeatTimeout = json["heartbeat_timeout_seconds"]?.GetValue<double>() is { } h ? TimeSpan.FromSeconds(h) : null,
                Forwards = Strings(json["forward"], "forward").Select(Launcher.Local.ForwardRule.Parse).ToList(),
                Publishes = Strings(json["publish"], "publish").Select(Launcher.Local.PublishRule.Parse).ToList(),
            };
        }
        catch (Exception ex) when (ex is InvalidOperationException or FormatException or OverflowException)
        {
            throw new EnclaveException(LaunchError.SerdeError, $"{what}: {ex.Message}", innerException: ex);
        }
    }

    internal static JsonObject ToJson(LaunchRequest request)
    {
        var json = new JsonObject
        {
            ["eif_path"] = Path.GetFullPath(request.EifPath),
            ["memory_mib"] = request.MemoryMiB,
            ["enclave_cid"] = request.EnclaveCid,
            ["debug_mode"] = request.DebugMode,
            ["enclave_name"] = request.EffectiveName,
        };
        if (request.CpuCount is { } count)
            json["cpu_count"] = count;
        if (request.CpuIds is { } ids)
            json["cpu_ids"] = new JsonArray(ids.Select(id => (JsonNode)id).ToArray());
        if (request.HugePageSize is { } size)
            json["hugepage_size"] = Launcher.Host.HugePageSizes.Format(size);
        if (request.HeartbeatTimeout is { } timeout)
            json["heartbeat_timeout_seconds"] = timeout.TotalSeconds;
        return json;
    }

    /// <summary>Parses a request; <paramref name="what"/> names the source in errors.</summary>
    /// <exception cref="EnclaveException">E17 for malformed JSON or a bad value, E01 for a missing key.</exception>
    internal static LaunchRequest FromJson(string text, string what) => FromJson(Parse(text, what), what);

    internal static JsonObject Parse(string text, string what)
    {
        try
        {
            return JsonNode.Parse(text) as JsonObject ?? throw new JsonException("not a JSON object");
        }
        catch (JsonException ex)
        {
            throw new EnclaveException(LaunchError.SerdeError, $"{what}: {ex.Message}", innerException: ex);
        }
    }

    internal static LaunchRequest FromJson(JsonObject json, string what)
    {
        foreach (var (key, _) in json)
        {
            if (!Keys.Contains(key))
                throw new EnclaveException(LaunchError.SerdeError, $"{what}: unknown key '{key}' (known: {string.Join(", ", Keys)})");
        }

        try
        {
            string eif = json["eif_path"]?.GetValue<string>() ?? throw new EnclaveException(LaunchError.MissingArgument, $"{what}: 'eif_path' is missing");
            ulong memory = json["memory_mib"]?.GetValue<ulong>() ?? throw new EnclaveException(LaunchError.MissingArgument, $"{what}: 'memory_mib' is missing");
            ulong? hugePage = null;
            if (json["hugepage_size"]?.GetValue<string>() is { } sizeText)
            {
                hugePage = Launcher.Host.HugePageSizes.Parse(sizeText)
                    ?? throw new EnclaveException(LaunchError.NoSuchHugepageFlag, $"{what}: 'hugepage_size' '{sizeText}' is not a size like 2M or 1G");
            }

            return new LaunchRequest
            {
                EifPath = eif,
                MemoryMiB = memory,
                CpuCount = json["cpu_count"]?.GetValue<int>(),
                CpuIds = json["cpu_ids"]?.AsArray().Select(id => id!.GetValue<int>()).ToList(),
                EnclaveCid = json["enclave_cid"]?.GetValue<ulong>() ?? 0,
                DebugMode = json["debug_mode"]?.GetValue<bool>() == true || json["attach_console"]?.GetValue<bool>() == true,
                EnclaveName = json["enclave_name"]?.GetValue<string>(),
                HugePageSize = hugePage,
                HeartbeatTimeout = json["heartbeat_timeout_seconds"]?.GetValue<double>() is { } seconds ? TimeSpan.FromSeconds(seconds) : null,
            };
        }
        catch (Exception ex) when (ex is InvalidOperationException or FormatException or OverflowException)
        {
            throw new EnclaveException(LaunchError.SerdeError, $"{what}: {ex.Message}", innerException: ex);
        }
    }
}

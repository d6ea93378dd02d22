using System.Collections.Concurrent;

namespace Launcher.Local;

/// <summary>Where a QEMU candidate came from, in the order <see cref="QemuInstallation.Search()"/> tries them.</summary>
public enum QemuOrigin
{
    /// <summary>The <c>EIF_QEMU</c> environment variable.</summary>
    Environment,

    /// <summary>A folder of <c>PATH</c>.</summary>
    Path,

    /// <summary>A version folder of the cache that tools/qemu/build installs into (<c>~/.cache/eif/qemu/VERSION</c>).</summary>
    Cache,
}

/// <summary>One binary that <see cref="QemuInstallation.Search()"/> looked at.</summary>
/// <param name="Path">The binary's path.</param>
/// <param name="Origin">Where the search found it.</param>
/// <param name="Rejection">Why it was not taken, or null for the binary that was.</param>
public sealed record QemuCandidate(string Path, QemuOrigin Origin, string? Rejection)
{
    /// <summary>"PATH /usr/bin/qemu-system-x86_64: -M help does not list nitro-enclave", for messages.</summary>
    public override string ToString() =>
        $"{OriginName(Origin)} {Path}: {Rejection ?? "supports " + QemuInstallation.MachineName}";

    private static string OriginName(QemuOrigin origin) => origin switch
    {
        QemuOrigin.Environment => QemuInstallation.EnvironmentVariable,
        QemuOrigin.Cache => "cache",
        _ => "PATH",
    };
}

/// <summary>What <see cref="QemuInstallation.Search()"/> found: the binary to use (or none) and every candidate it tried.</summary>
/// <param name="Installation">The first binary that supports the machine, or null.</param>
/// <param name="Candidates">Every binary looked at, in order, with why each was rejected.</param>
public sealed record QemuSearch(QemuInstallation? Installation, IReadOnlyList<QemuCandidate> Candidates)
{
    /// <summary>One line for an error message: what was tried and why nothing fit.</summary>
    public string Describe() => Candidates.Count == 0
        ? $"no {QemuInstallation.BinaryName} found ({QemuInstallation.EnvironmentVariable} unset, nothing on PATH or in the cache folder)"
        : string.Join("; ", Candidates);
}

/// <summary>
/// A <c>qemu-system-x86_64</c> that has QEMU's <c>nitro-enclave</c> machine (upstream since 9.2; Debian's packages
/// lack it because they are built without libcbor, spec local-boot.md §2), found in this order:
/// <c>$EIF_QEMU</c>, <c>PATH</c>, then the binaries tools/qemu/build installs
/// (<c>${XDG_CACHE_HOME:-~/.cache}/eif/qemu/VERSION/bin</c>, newest version first).
/// </summary>
/// <param name="Path">The binary.</param>
/// <param name="Version">The version number from <c>--version</c> ("10.0.2"), or the whole first line when it has none.</param>
/// <param name="VersionLine">The first line of <c>--version</c> ("QEMU emulator version 10.0.2").</param>
/// <param name="Candidates">Every binary tried up to and including this one, with why the others were rejected.</param>
public sealed record QemuInstallation(string Path, string Version, string VersionLine, IReadOnlyList<QemuCandidate> Candidates)
{
    /// <summary>The machine an EIF boots on.</summary>
    public const string MachineName = "nitro-enclave";

    /// <summary>The binary's file name.</summary>
    public const string BinaryName = "qemu-system-x86_64";

    /// <summary>The environment variable naming a binary to try first.</summary>
    public const string EnvironmentVariable = "EIF_QEMU";

    /// <summary>How long <c>-M help</c> and <c>--version</c> may take (each is ~50 ms; a hung binary is rejected).</summary>
    internal static readonly TimeSpan QueryTimeout = TimeSpan.FromSeconds(10);

    // Answers per binary (path and modification time), so that a process asks each binary once.
    private static readonly ConcurrentDictionary<(string Path, DateTime Modified), string?> Rejections = new();
    private static readonly ConcurrentDictionary<(string Path, DateTime Modified), string> Versions = new();

    /// <summary>The first <c>qemu-system-x86_64</c> that lists the <c>nitro-enclave</c> machine, or null (see <see cref="Search()"/> for why).</summary>
    public static QemuInstallation? Find() => Search().Installation;

    /// <summary>Looks for a <c>qemu-system-x86_64</c> that lists the <c>nitro-enclave</c> machine; returns it (or null) and what was tried.</summary>
    public static QemuSearch Search() => Search(
        System.Environment.GetEnvironmentVariable(EnvironmentVariable),
        CacheDirectory(),
        System.Environment.GetEnvironmentVariable("PATH"));

    /// <summary>The folder tools/qemu/build installs into, one folder per version: <c>${XDG_CACHE_HOME:-~/.cache}/eif/qemu</c>.</summary>
    public static string CacheDirectory() => System.IO.Path.Combine(CacheRoot(), "qemu");

    // The search with its inputs given: the EIF_QEMU value, the cache folder (…/eif/qemu) and the PATH value.
    internal static QemuSearch Search(string? eifQemu, string? cacheDirectory, string? pathVariable)
    {
        var candidates = new List<QemuCandidate>();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var (path, origin) in CandidatePaths(eifQemu, cacheDirectory, pathVariable))
        {
            if (!seen.Add(path))
                continue;
            string? rejection = Check(path);
            if (rejection is null)
            {
                candidates.Add(new QemuCandidate(path, origin, null));
                string line = VersionLineOf(path);
                return new QemuSearch(new QemuInstallation(path, VersionNumberOf(line), line, candidates), candidates);
            }

            candidates.Add(new QemuCandidate(path, origin, rejection));
        }

        return new QemuSearch(null, candidates);
    }

    // The candidate paths in search order (not yet checked; duplicates possible).
    private static IEnumerable<(string Path, QemuOrigin Origin)> CandidatePaths(string? eifQemu, string? cacheDirectory, string? pathVariable)
    {
        if (!string.IsNullOrEmpty(eifQemu))
        {
            // A bare name means a program on PATH, as a shell would read it.
            string? path = eifQemu.Contains('/', StringComparison.Ordinal) ? System.IO.Path.GetFullPath(eifQemu)
                : OnPath(eifQemu, pathVariable).FirstOrDefault();
            yield return (path ?? eifQemu, QemuOrigin.Environment);
        }

        // PATH first (issue 7: a QEMU the user installed that has the machine is used as it is), then the builds of
        // tools/qemu/build.
        foreach (string path in OnPath(BinaryName, pathVariable))
            yield return (path, QemuOrigin.Path);

        if (!string.IsNullOrEmpty(cacheDirectory) && Directory.Exists(cacheDirectory))
        {
            var versions = new List<(System.Version Number, string Folder)>();
            foreach (string folder in Directory.EnumerateDirectories(cacheDirectory))
            {
                // Only version-named folders hold builds (the cache also keeps downloads/, logs/, apt/).
                if (System.Version.TryParse(System.IO.Path.GetFileName(folder), out System.Version? number))
                    versions.Add((number, folder));
            }

            foreach (var (_, folder) in versions.OrderByDescending(v => v.Number))
                yield return (System.IO.Path.Combine(folder, "bin", BinaryName), QemuOrigin.Cache);
        }
    }

    // The existing files named NAME in the folders of a PATH value, in order (empty entries skipped).
    private static IEnumerable<string> OnPath(string name, string? pathVariable)
    {
        foreach (string entry in (pathVariable ?? string.Empty).Split(':', StringSplitOptions.RemoveEmptyEntries))
        {
            // A folder that is a link (/bin → usr/bin on merged-/usr Debian) is named by its target, so that the
            // same binary is not tried twice.
            string folder = System.IO.Path.GetFullPath(entry);
            if (!Directory.Exists(folder))
                continue;
            try
            {
                if (new DirectoryInfo(folder).ResolveLinkTarget(returnFinalTarget: true) is { } target)
                    folder = target.FullName;
            }
            catch (IOException)
            {
                // A link loop or a link that vanished: looked at under its own name.
            }

            string path = System.IO.Path.Combine(folder, name);
            if (File.Exists(path))
                yield return System.IO.Path.GetFullPath(path);
        }
    }

    // Null when the binary at PATH lists the machine in `-M help`, else why not (remembered per path and mtime).
    internal static string? Check(string path)
    {
        if (Directory.Exists(path))
            return "is a folder";
        if (!File.Exists(path))
            return "does not exist";
        const UnixFileMode anyExecute = UnixFileMode.UserExecute | UnixFileMode.GroupExecute | UnixFileMode.OtherExecute;
        if ((File.GetUnixFileMode(path) & anyExecute) == 0)
            return "is not executable";
        return Rejections.GetOrAdd((path, File.GetLastWriteTimeUtc(path)), key => AskMachines(key.Path));
    }

    private static string? AskMachines(string path)
    {
        QemuRunResult run = QemuCommand.Run(path, ["-M", "help"], QueryTimeout);
        if (run.StartError is not null)
            return $"cannot be run ({run.StartError})";
        if (run.TimedOut)
            return $"-M help did not finish within {QueryTimeout.TotalSeconds:0} s";
        if (run.ExitCode != 0)
            return $"-M help failed with exit status {run.ExitCode}{FirstLine(run.Stderr, ": ")}";
        if (ListsMachine(run.Stdout))
            return null;
        return $"-M help does not list {MachineName}{FirstLine(VersionLineOf(path), " (", ")")}";
    }

    // True when the `-M help` output has a line whose first word is the machine's name.
    internal static bool ListsMachine(string machineHelp) =>
        machineHelp.Split('\n').Any(l => l.Split([' ', '\t'], 2, StringSplitOptions.RemoveEmptyEntries) is [MachineName, ..]);

    /// <summary>The first line of <c><paramref name="path"/> --version</c> ("QEMU emulator version 10.0.2 (…)"), or why there is none.</summary>
    public static string VersionLineOf(string path)
    {
        DateTime modified = File.Exists(path) ? File.GetLastWriteTimeUtc(path) : default;
        return Versions.GetOrAdd((path, modified), key =>
        {
            QemuRunResult run = QemuCommand.Run(key.Path, ["--version"], QueryTimeout);
            string first = run.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).FirstOrDefault() ?? string.Empty;
            return run.ExitCode == 0 && first.Length > 0 ? EifFormat.PrintableText.Of(first, 200) : "unknown version";
        });
    }

    // "QEMU emulator version 10.0.2 (Debian …)" → "10.0.2"; a line without one is returned whole.
    internal static string VersionNumberOf(string versionLine)
    {
        const string key = "version ";
        int at = versionLine.IndexOf(key, StringComparison.Ordinal);
        if (at < 0)
            return versionLine;
        string rest = versionLine[(at + key.Length)..];
        int end = rest.IndexOfAny([' ', '(']);
        return end < 0 ? rest : rest[..end];
    }

    private static string FirstLine(string text, string before, string after = "")
    {
        string? line = text.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).FirstOrDefault();
        return line is null ? string.Empty : before + EifFormat.PrintableText.Of(line, 200) + after;
    }

    // ${XDG_CACHE_HOME:-~/.cache}/eif, as EifBuilder.Runtime.EnclaveRuntime and tools/qemu/build use it.
    internal static string CacheRoot()
    {
        string? xdg = System.Environment.GetEnvironmentVariable("XDG_CACHE_HOME");
        string root = !string.IsNullOrEmpty(xdg) ? xdg : System.IO.Path.Combine(System.Environment.GetFolderPath(System.Environment.SpecialFolder.UserProfile), ".cache");
        return System.IO.Path.Combine(root, "eif");
    }
}

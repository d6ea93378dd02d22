using System.Diagnostics;
using System.Security.Cryptography;
using EifFormat;
using EifFormat.Json;

namespace EifBuilder.Runtime;

/// <summary>How to assemble the default runtime.</summary>
public sealed record RuntimeInstallOptions
{
    /// <summary>The runtime folder (nitro-cli's blobs layout).</summary>
    public required string Directory { get; init; }

    /// <summary>"x86_64" (the only architecture with a default runtime so far).</summary>
    public string Architecture { get; init; } = "x86_64";

    /// <summary>The Debian mirror; null: the first Debian mirror this machine's apt sources name, else deb.debian.org.</summary>
    public string? Mirror { get; init; }

    /// <summary>The suite the kernel comes from.</summary>
    public string Suite { get; init; } = "bookworm-backports";

    /// <summary>A kernel package to use instead of the one linux-image-amd64 names (pins the kernel, hence PCR0/PCR1).</summary>
    public string? KernelPackage { get; init; }

    /// <summary>Fetch the kernel again even when the runtime is complete (to move to a newer one).</summary>
    public bool Update { get; init; }

    /// <summary>The SHA-256 of the init's sources; the init is rebuilt when it differs from the installed one's.</summary>
    public required string InitSourceHash { get; init; }

    /// <summary>Builds the init into a folder; returns a description of how (compiler and version).</summary>
    public required Func<string, string> BuildInit { get; init; }

    /// <summary>Where apt's lists and downloads are kept between installs.</summary>
    public string? AptDirectory { get; init; }

    /// <summary>Receives one line per step.</summary>
    public Action<string> Log { get; init; } = _ => { };
}

/// <summary>
/// The project's own enclave runtime: a Debian kernel (bookworm-backports 6.12, a zstd bzImage with the NSM driver
/// as a module), the modules an enclave needs, our init, and a command line, in nitro-cli's blobs layout (bzImage,
/// bzImage.config, cmdline, init, nsm.ko) plus <c>modules/</c> with an <c>order</c> list the init loads. Assembled
/// without root: apt runs with a private configuration (its own sources, lists and cache), so the machine's apt
/// setup is never touched.
/// </summary>
public static class EnclaveRuntime
{
    /// <summary>The manifest written last: its presence, with matching file hashes, means the runtime is complete.</summary>
    public const string ManifestName = "runtime.json";

    /// <summary>
    /// The kernel command line: nitro-cli's x86_64 cmdline blob (spec builder.md §7), so everything but the kernel
    /// and init matches a nitro-cli image. It boots on QEMU's nitro-enclave machine with the console on ttyS0.
    /// </summary>
    public const string DefaultCmdline = "reboot=k panic=30 pci=off nomodules console=ttyS0 i8042.noaux i8042.nomux i8042.nopnp i8042.dumbkbd random.trust_cpu=on";

    /// <summary>
    /// The modules a Debian kernel needs in an enclave (spec local-boot.md §10.3): virtio_mmio for the devices,
    /// vsock and its virtio transport for the heartbeat and the application's channels; nsm goes to /nsm.ko as in
    /// nitro-cli's layout.
    /// </summary>
    public static readonly string[] Modules = ["virtio_mmio", "vsock", "vmw_vsock_virtio_transport_common", "vmw_vsock_virtio_transport"];

    /// <summary>The XDG cache location: <c>$XDG_CACHE_HOME/eif/runtime/ARCH</c>, else <c>~/.cache/eif/runtime/ARCH</c>.</summary>
    public static string DefaultDirectory(string architecture) => Path.Combine(CacheRoot(), "runtime", architecture);

    /// <summary>The folder of a complete runtime for <paramref name="architecture"/>, or null.</summary>
    public static string? Locate(string architecture)
    {
        string directory = DefaultDirectory(architecture);
        return Check(directory) is null ? directory : null;
    }

    /// <summary>The installed runtime's manifest, or null.</summary>
    public static JObject? ReadManifest(string directory)
    {
        string path = Path.Combine(directory, ManifestName);
        if (!File.Exists(path))
            return null;
        try
        {
            return SerdeJsonParser.Parse(File.ReadAllBytes(path)) as JObject;
        }
        catch (FormatException)
        {
            return null;
        }
    }

    /// <summary>Null when the runtime in <paramref name="directory"/> is complete and intact, else why not.</summary>
    public static string? Check(string directory)
    {
        if (ReadManifest(directory)?["Files"] is not JObject files)
            return $"no runtime in {directory}";
        foreach (var (name, value) in files.Properties)
        {
            string path = Path.Combine(directory, name);
            if (!File.Exists(path))
                return $"{path} is missing";
            if (value is not JObject f || (f["SHA256"] as JString)?.Value != Sha256(path))
                return $"{path} does not match the manifest";
        }

        return null;
    }

    /// <summary>Assembles the runtime, or does nothing when it is complete and current. Returns what it did, a line each.</summary>
    /// <exception cref="EnclaveBuildException"><see cref="BuildError.MissingBlob"/> or <see cref="BuildError.RemoteError"/>.</exception>
    public static IReadOnlyList<string> Install(RuntimeInstallOptions options)
    {
        if (options.Architecture != "x86_64")
            throw new EnclaveBuildException(BuildError.MissingBlob, $"the default runtime exists for x86_64 only, not {options.Architecture}; give --blobs for it");
        var done = new List<string>();
        string directory = options.Directory;
        System.IO.Directory.CreateDirectory(directory);
        JObject? manifest = ReadManifest(directory);
        bool intact = Check(directory) is null;
        bool kernelNeeded = options.Update || !intact || manifest?["Kernel"] is not JObject;
        bool initNeeded = kernelNeeded || (manifest?["Init"] as JObject)?["SourceSha256"] is not JString { Value: var hash } || hash != options.InitSourceHash;
        if (!kernelNeeded && !initNeeded)
        {
            done.Add($"up to date: {directory} ({Describe(manifest!)})");
            return done;
        }

        string work = Path.Combine(directory, $".work-{Environment.ProcessId}-{Guid.NewGuid():N}");
        System.IO.Directory.CreateDirectory(work);
        try
        {
            JObject kernel = kernelNeeded ? InstallKernel(options, directory, work, done) : (JObject)manifest!["Kernel"]!;
            string initBuiltBy;
            if (initNeeded)
            {
                string initOut = System.IO.Directory.CreateDirectory(Path.Combine(work, "init-out")).FullName;
                initBuiltBy = options.BuildInit(initOut);
                CopyAtomically(Path.Combine(initOut, "init"), Path.Combine(directory, "init"), executable: true);
                done.Add($"init: built ({initBuiltBy})");
            }
            else
            {
                initBuiltBy = ((manifest!["Init"] as JObject)?["BuiltBy"] as JString)?.Value ?? "unknown";
            }

            WriteAtomically(Path.Combine(directory, "cmdline"), System.Text.Encoding.ASCII.GetBytes(DefaultCmdline + "\n"));
            var files = new List<string> { "bzImage", "bzImage.config", "cmdline", "init", "nsm.ko", "modules/order" };
            files.AddRange(File.ReadAllLines(Path.Combine(directory, "modules", "order")).Where(l => l.Length > 0));
            var newManifest = JObject.Of(
                ("Architecture", new JString(options.Architecture)),
                ("Kernel", kernel),
                ("Init", JObject.Of(("SourceSha256", new JString(options.InitSourceHash)), ("BuiltBy", new JString(initBuiltBy)))),
                ("Cmdline", new JString(DefaultCmdline)),
                ("Files", new JObject(files.Select(f => new KeyValuePair<string, JValue>(f, JObject.Of(
                    ("SHA256", new JString(Sha256(Path.Combine(directory, f)))),
                    ("Size", JNumber.From(new FileInfo(Path.Combine(directory, f)).Length))))))));
            WriteAtomically(Path.Combine(directory, ManifestName), System.Text.Encoding.UTF8.GetBytes(newManifest.ToPrettyString() + "\n"));
            done.Add($"installed: {directory} ({Describe(newManifest)})");
            return done;
        }
        finally
        {
            System.IO.Directory.Delete(work, recursive: true);
        }
    }

    /// <summary>One line naming the kernel and how the init was built.</summary>
    public static string Describe(JObject manifest)
    {
        var kernel = manifest["Kernel"] as JObject;
        return $"kernel {(kernel?["Package"] as JString)?.Value} {(kernel?["Version"] as JString)?.Value}, init {((manifest["Init"] as JObject)?["BuiltBy"] as JString)?.Value}";
    }

    /// <summary>The SHA-256 of a file, lowercase hex.</summary>
    public static string Sha256(string path)
    {
        using var stream = File.OpenRead(path);
        return Convert.ToHexStringLower(SHA256.HashData(stream));
    }

    private static JObject InstallKernel(RuntimeInstallOptions options, string directory, string work, List<string> done)
    {
        string mirror = options.Mirror ?? SystemMirror() ?? "http://deb.debian.org/debian";
        string apt = options.AptDirectory ?? Path.Combine(CacheRoot(), "apt");
        foreach (string sub in new[] { "lists/partial", "cache/archives/partial" })
            System.IO.Directory.CreateDirectory(Path.Combine(apt, sub));
        File.WriteAllText(Path.Combine(apt, "sources.list"), $"deb {mirror} {options.Suite} main\n");

        // A private apt: its own sources, lists and cache; no lock on the system's dpkg database (nothing is installed).
        string[] config =
        [
            "-o", $"Dir::Etc::sourcelist={Path.Combine(apt, "sources.list")}", "-o", "Dir::Etc::sourceparts=-",
            "-o", $"Dir::State::Lists={Path.Combine(apt, "lists")}", "-o", $"Dir::Cache={Path.Combine(apt, "cache")}",
            "-o", "Debug::NoLocking=1", "-o", "APT::Sandbox::User=root",
        ];
        options.Log($"apt: reading {mirror} {options.Suite}");
        Run("apt-get", [.. config, "-q", "update"], work, $"apt-get update of {mirror} {options.Suite}");
        string package = options.KernelPackage ?? KernelPackageOf(Run("apt-cache", [.. config, "depends", "linux-image-amd64"], work, "apt-cache depends linux-image-amd64"), mirror, options.Suite);
        string version = CandidateOf(Run("apt-cache", [.. config, "policy", package], work, $"apt-cache policy {package}"), package);
        options.Log($"apt: downloading {package} {version}");
        Run("apt-get", [.. config, "-q", "download", package], work, $"apt-get download {package}");
        string deb = System.IO.Directory.GetFiles(work, "*.deb").Single();
        string debSha = Sha256(deb);
        string extract = Path.Combine(work, "extract");
        Run("dpkg-deb", ["-x", deb, extract], work, $"dpkg-deb -x {Path.GetFileName(deb)}");
        File.Delete(deb);

        string boot = Path.Combine(extract, "boot");
        string vmlinuz = System.IO.Directory.GetFiles(boot, "vmlinuz-*").Single();
        string release = Path.GetFileName(vmlinuz)["vmlinuz-".Length..];
        CopyAtomically(vmlinuz, Path.Combine(directory, "bzImage"), executable: false);
        CopyAtomically(Path.Combine(boot, $"config-{release}"), Path.Combine(directory, "bzImage.config"), executable: false);
        done.Add($"kernel: {package} {version} ({release}) from {mirror} {options.Suite}");

        // Modules by name (file names use '-' or '_'; modprobe treats them alike), decompressed from .ko.xz.
        string moduleRoot = Path.Combine(extract, "lib", "modules", release, "kernel");
        var files = System.IO.Directory.EnumerateFiles(moduleRoot, "*.ko*", SearchOption.AllDirectories)
            .GroupBy(f => Path.GetFileName(f).Split(".ko")[0].Replace('-', '_'))
            .ToDictionary(g => g.Key, g => g.First(), StringComparer.Ordinal);
        var decompressed = new Dictionary<string, byte[]>(StringComparer.Ordinal);
        byte[]? Module(string name)
        {
            if (decompressed.TryGetValue(name, out byte[]? bytes))
                return bytes;
            if (!files.TryGetValue(name, out string? file))
                return null;
            return decompressed[name] = Decompress(file);
        }

        IReadOnlyList<string>? DependsOf(string name) => Module(name) is { } elf ? KernelModules.Read(elf, name + ".ko").Depends : null;
        IReadOnlyList<string> order = KernelModules.LoadOrder(Modules, DependsOf);
        IReadOnlyList<string> nsmOrder = KernelModules.LoadOrder(["nsm"], DependsOf);
        string modules = Path.Combine(directory, "modules");
        if (System.IO.Directory.Exists(modules))
            System.IO.Directory.Delete(modules, recursive: true);
        System.IO.Directory.CreateDirectory(modules);
        var lines = new List<string>();
        foreach (string name in order.Concat(nsmOrder.Where(n => n != "nsm")).Distinct())
        {
            WriteAtomically(Path.Combine(modules, name + ".ko"), Module(name)!);
            lines.Add($"modules/{name}.ko");
        }

        WriteAtomically(Path.Combine(modules, "order"), System.Text.Encoding.ASCII.GetBytes(string.Concat(lines.Select(l => l + "\n"))));
        WriteAtomically(Path.Combine(directory, "nsm.ko"), Module("nsm")!);
        done.Add($"modules: {string.Join(", ", lines.Select(l => Path.GetFileNameWithoutExtension(l)))} (in load order), nsm.ko");
        return JObject.Of(
            ("Package", new JString(package)),
            ("Version", new JString(version)),
            ("Release", new JString(release)),
            ("Mirror", new JString(mirror)),
            ("Suite", new JString(options.Suite)),
            ("DebSHA256", new JString(debSha)));
    }

    private static byte[] Decompress(string file)
    {
        using var input = File.OpenRead(file);
        using Stream stream = file.EndsWith(".xz", StringComparison.Ordinal) ? new SharpCompress.Compressors.Xz.XZStream(input)
            : file.EndsWith(".zst", StringComparison.Ordinal) ? new SharpCompress.Compressors.ZStandard.DecompressionStream(input, 1 << 16, true, false)
            : input;
        var output = new MemoryStream();
        stream.CopyTo(output);
        return output.ToArray();
    }

    // "linux-image-amd64\n  Depends: linux-image-6.12.95+deb12-amd64" → the versioned package.
    private static string KernelPackageOf(string depends, string mirror, string suite) =>
        depends.Split('\n').Select(l => l.Trim()).Where(l => l.StartsWith("Depends: linux-image-", StringComparison.Ordinal))
            .Select(l => l["Depends: ".Length..]).FirstOrDefault()
        ?? throw new EnclaveBuildException(BuildError.MissingBlob, $"{mirror} {suite} has no linux-image-amd64 kernel (apt-cache depends said: {EifFormat.PrintableText.Of(depends, 200)})");

    private static string CandidateOf(string policy, string package) =>
        policy.Split('\n').Select(l => l.Trim()).Where(l => l.StartsWith("Candidate: ", StringComparison.Ordinal))
            .Select(l => l["Candidate: ".Length..]).FirstOrDefault(v => v != "(none)")
        ?? throw new EnclaveBuildException(BuildError.MissingBlob, $"apt has no candidate version of {package}");

    // The first Debian mirror in this machine's apt sources (deb822 URIs: or one-line "deb URI suite"), when there is one.
    private static string? SystemMirror()
    {
        var candidates = new List<string>();
        if (System.IO.Directory.Exists("/etc/apt/sources.list.d"))
            candidates.AddRange(System.IO.Directory.GetFiles("/etc/apt/sources.list.d").Order(StringComparer.Ordinal));
        candidates.Add("/etc/apt/sources.list");
        foreach (string file in candidates.Where(File.Exists))
        {
            foreach (string line in File.ReadLines(file).Select(l => l.Trim()))
            {
                string[] words = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
                string? uri = line.StartsWith("URIs:", StringComparison.Ordinal) && words.Length > 1 ? words[1]
                    : words.Length > 2 && words[0] == "deb" && !words[1].StartsWith('[') ? words[1] : null;
                if (uri is not null && uri.Contains("/debian", StringComparison.Ordinal) && !uri.Contains("security", StringComparison.Ordinal))
                    return uri.TrimEnd('/');
            }
        }

        return null;
    }

    private static string Run(string program, string[] arguments, string workingDirectory, string what)
    {
        var info = new ProcessStartInfo(program)
        {
            WorkingDirectory = workingDirectory,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        foreach (string argument in arguments)
            info.ArgumentList.Add(argument);
        info.Environment["LC_ALL"] = "C";
        Process process;
        try
        {
            process = Process.Start(info)!;
        }
        catch (System.ComponentModel.Win32Exception ex)
        {
            throw new EnclaveBuildException(BuildError.MissingBlob, $"{what}: '{program}' cannot be run ({ex.Message}); the default runtime is assembled with Debian's apt and dpkg", ex);
        }

        using (process)
        {
            var stdout = process.StandardOutput.ReadToEndAsync();
            string stderr = process.StandardError.ReadToEnd();
            process.WaitForExit();
            if (process.ExitCode != 0)
            {
                string last = stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries).LastOrDefault() ?? $"exit code {process.ExitCode}";
                throw new EnclaveBuildException(BuildError.RemoteError, $"{what} failed: {EifFormat.PrintableText.Of(last, 200)}");
            }

            return stdout.Result;
        }
    }

    private static void CopyAtomically(string source, string target, bool executable)
    {
        AtomicFile.Write(target, stream =>
        {
            using var input = File.OpenRead(source);
            input.CopyTo(stream);
            return 0;
        });
        if (executable && !OperatingSystem.IsWindows())
            File.SetUnixFileMode(target, (UnixFileMode)0x1ED);
    }

    private static void WriteAtomically(string target, byte[] bytes) =>
        AtomicFile.Write(target, stream =>
        {
            stream.Write(bytes);
            return 0;
        });

    private static string CacheRoot()
    {
        string? xdg = Environment.GetEnvironmentVariable("XDG_CACHE_HOME");
        string root = !string.IsNullOrEmpty(xdg) ? xdg : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache");
        return Path.Combine(root, "eif");
    }
}

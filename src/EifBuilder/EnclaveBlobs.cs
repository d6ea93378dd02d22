namespace EifBuilder;

/// <summary>The non-image parts of an enclave image: kernel, command line, init, NSM driver, kernel config.</summary>
/// <param name="Kernel">bzImage (x86_64) or Image (aarch64).</param>
/// <param name="Cmdline">The kernel command line (trimmed, as nitro-cli trims the cmdline file).</param>
/// <param name="Init">The enclave's PID 1.</param>
/// <param name="Nsm">nsm.ko, when there is one (kernels with the driver built in need none).</param>
/// <param name="KernelConfig">The kernel's .config (OperatingSystem and KernelVersion come from it), when there is one.</param>
/// <param name="ExtraBootstrapFiles">More files for the bootstrap ramdisk (kernel modules a runtime loads), name → path.</param>
/// <param name="Origin">Where they were found, for messages and metadata.</param>
public sealed record EnclaveBlobs(
    string Kernel, string Cmdline, string Init, string? Nsm, string? KernelConfig,
    IReadOnlyList<(string Name, string Path)> ExtraBootstrapFiles, string Origin)
{
    /// <summary>The kernel file name nitro-cli uses for an architecture.</summary>
    public static string KernelName(string architecture) => architecture == "aarch64" ? "Image" : "bzImage";

    /// <summary>
    /// Finds the blobs as nitro-cli does, with per-file overrides: <paramref name="directory"/> (--blobs), else
    /// <c>NITRO_CLI_BLOBS</c>, else nitro-cli's installed <c>/usr/share/nitro_enclaves/blobs</c> (or its
    /// <c>ARCH</c> sub-folder), else <paramref name="defaultRuntime"/> (the project's own runtime, when installed).
    /// </summary>
    /// <exception cref="EnclaveBuildException"><see cref="BuildError.MissingBlob"/>, naming every place it looked.</exception>
    public static EnclaveBlobs Locate(
        string architecture, string? directory, string? kernel, string? cmdline, string? init, string? nsm,
        Func<string?>? defaultRuntime = null, string? environmentBlobs = null)
    {
        var looked = new List<string>();
        string? folder = null, origin = null;
        void Consider(string? candidate, string how)
        {
            if (folder is not null || string.IsNullOrEmpty(candidate))
                return;
            looked.Add($"{candidate} ({how})");
            if (Directory.Exists(candidate))
            {
                folder = candidate;
                origin = $"{candidate} ({how})";
            }
        }

        Consider(directory, "--blobs");
        Consider(environmentBlobs ?? Environment.GetEnvironmentVariable("NITRO_CLI_BLOBS"), "NITRO_CLI_BLOBS");
        if (folder is null && directory is null)
        {
            const string installed = "/usr/share/nitro_enclaves/blobs";
            foreach (string candidate in new[] { installed, Path.Combine(installed, architecture) })
            {
                if (File.Exists(Path.Combine(candidate, KernelName(architecture))))
                {
                    Consider(candidate, "nitro-cli's installed blobs");
                    break;
                }
            }

            if (folder is null)
                looked.Add($"{installed} (nitro-cli's installed blobs: absent)");
            if (folder is null)
                Consider(defaultRuntime?.Invoke(), "the default runtime");
        }

        string Require(string? overridePath, string name, string option)
        {
            if (overridePath is not null)
            {
                if (!File.Exists(overridePath))
                    throw new EnclaveBuildException(BuildError.MissingBlob, $"{option} '{overridePath}': no such file");
                return overridePath;
            }

            if (folder is not null && File.Exists(Path.Combine(folder, name)))
                return Path.Combine(folder, name);
            string where = folder is not null ? $"in {origin}" : $"anywhere: looked in {(looked.Count == 0 ? "no place" : string.Join(", ", looked))}";
            throw new EnclaveBuildException(BuildError.MissingBlob,
                $"no {name} for {architecture} {where}; give {option}, --blobs DIR or NITRO_CLI_BLOBS, or install the default runtime with 'eif runtime install'");
        }

        string kernelPath = Require(kernel, KernelName(architecture), "--kernel");
        string initPath = Require(init, "init", "--init");
        string text = cmdline ?? File.ReadAllText(Require(null, "cmdline", "--cmdline")).Trim();
        string? nsmPath = nsm ?? (folder is not null && File.Exists(Path.Combine(folder, "nsm.ko")) ? Path.Combine(folder, "nsm.ko") : null);
        if (nsm is not null && !File.Exists(nsm))
            throw new EnclaveBuildException(BuildError.MissingBlob, $"--nsm '{nsm}': no such file");
        string configName = Path.GetFileName(kernelPath) + ".config";
        string? config = new[] { Path.Combine(Path.GetDirectoryName(kernelPath) ?? ".", configName), folder is null ? null : Path.Combine(folder, KernelName(architecture) + ".config") }
            .FirstOrDefault(p => p is not null && File.Exists(p));
        return new EnclaveBlobs(kernelPath, text, initPath, nsmPath, config, ModuleFiles(folder, init), origin ?? "the options");
    }

    // A runtime folder may carry modules/order (one path per line, relative to the folder) and the modules it lists:
    // the init loads them in that order. Only with the folder's own init: another init would not know the list.
    private static IReadOnlyList<(string Name, string Path)> ModuleFiles(string? folder, string? initOverride)
    {
        if (folder is null || initOverride is not null)
            return [];
        string order = Path.Combine(folder, "modules", "order");
        if (!File.Exists(order))
            return [];
        var files = new List<(string, string)> { ("modules/order", order) };
        foreach (string line in File.ReadLines(order).Select(l => l.Trim()).Where(l => l.Length > 0))
        {
            string full = Path.GetFullPath(Path.Combine(folder, line));
            if (!full.StartsWith(Path.GetFullPath(folder) + Path.DirectorySeparatorChar, StringComparison.Ordinal) || line.Contains("..", StringComparison.Ordinal))
                throw new EnclaveBuildException(BuildError.MissingBlob, $"{order}: '{EifFormat.PrintableText.Of(line, 100)}' is outside the blobs folder");
            if (!File.Exists(full))
                throw new EnclaveBuildException(BuildError.MissingBlob, $"{order} lists '{line}', which is missing");
            files.Add((line, full));
        }

        return files;
    }
}

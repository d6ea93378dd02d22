using System.Diagnostics;
using System.Reflection;
using System.Security.Cryptography;
using EifBuilder;
using EifBuilder.Runtime;

namespace EifCli;

/// <summary>
/// The project's own enclave runtime (Debian kernel, our init, modules) as the CLI installs and finds it; the init's
/// sources travel inside this program (tools/enclave-init, embedded) and are compiled on the machine.
/// </summary>
internal static class DefaultRuntime
{
    private const string ResourcePrefix = "enclave-init/";

    /// <summary>The runtime's blobs folder for this machine, or null when none is installed.</summary>
    internal static string? Locate() => EnclaveRuntime.Locate(BuildEnclaveCommand.HostArchitecture);

    /// <summary>The embedded init sources, by file name.</summary>
    internal static IReadOnlyList<(string Name, byte[] Bytes)> InitSources()
    {
        var assembly = typeof(DefaultRuntime).Assembly;
        return assembly.GetManifestResourceNames()
            .Where(n => n.StartsWith(ResourcePrefix, StringComparison.Ordinal))
            .Order(StringComparer.Ordinal)
            .Select(n =>
            {
                using var stream = assembly.GetManifestResourceStream(n)!;
                var bytes = new MemoryStream();
                stream.CopyTo(bytes);
                return (n[ResourcePrefix.Length..], bytes.ToArray());
            })
            .ToList();
    }

    /// <summary>SHA-256 over the sources' names and bytes: the init is rebuilt when it changes.</summary>
    internal static string InitSourceHash()
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        foreach (var (name, bytes) in InitSources())
        {
            hash.AppendData(System.Text.Encoding.UTF8.GetBytes(name + "\0" + bytes.Length + "\0"));
            hash.AppendData(bytes);
        }

        return Convert.ToHexStringLower(hash.GetHashAndReset());
    }

    /// <summary>Builds the init into <paramref name="output"/> from the embedded sources; returns the build's own one-line account.</summary>
    /// <exception cref="EnclaveBuildException"><see cref="BuildError.MissingBlob"/>: no sources, or the build failed.</exception>
    internal static string BuildInit(string output)
    {
        var sources = InitSources();
        if (sources.All(s => s.Name != "build"))
            throw new EnclaveBuildException(BuildError.MissingBlob, "this eif has no enclave init sources embedded (tools/enclave-init)");
        string work = Directory.CreateTempSubdirectory("eif-init-").FullName;
        try
        {
            foreach (var (name, bytes) in sources)
                File.WriteAllBytes(Path.Combine(work, name), bytes);
            var info = new ProcessStartInfo("bash") { WorkingDirectory = work, RedirectStandardOutput = true, RedirectStandardError = true };
            info.ArgumentList.Add(Path.Combine(work, "build"));
            info.ArgumentList.Add(output);
            using var process = Process.Start(info)!;
            var stdout = process.StandardOutput.ReadToEndAsync();
            string stderr = process.StandardError.ReadToEnd();
            process.WaitForExit();
            string all = (stdout.Result + "\n" + stderr).Trim();
            if (process.ExitCode != 0 || !File.Exists(Path.Combine(output, "init")))
            {
                throw new EnclaveBuildException(BuildError.MissingBlob,
                    $"building the enclave init failed ({EifFormat.PrintableText.Of(all.Split('\n').LastOrDefault() ?? string.Empty, 200)}); it needs gcc or musl-gcc (apt-get install musl-tools)");
            }

            string line = all.Split('\n', StringSplitOptions.RemoveEmptyEntries).LastOrDefault()?.Trim() ?? "built";
            return line.Replace(Path.Combine(output, "init"), "init", StringComparison.Ordinal); // no temporary path in the manifest

        }
        finally
        {
            Directory.Delete(work, recursive: true);
        }
    }
}

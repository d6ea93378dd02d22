namespace EifTests.Shared;

/// <summary>
/// The images tools/test-images builds from tests/images/ with the real Docker daemon and writes in every form the
/// builder reads, under .build/test-images/NAME/ (docker-archive.tar, oci/, oci-zstd/, oci-archive.tar,
/// export.tar, inspect.json; pushed to the registry on 127.0.0.1:5000). tools/test runs it before the tests.
/// </summary>
public static class TestImages
{
    /// <summary>The repository root (the folder holding NitroEnclaves.sln).</summary>
    public static string RepositoryRoot
    {
        get
        {
            for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            {
                if (File.Exists(Path.Combine(dir.FullName, "NitroEnclaves.sln")))
                    return dir.FullName;
            }

            throw new InvalidOperationException("NitroEnclaves.sln not found above " + AppContext.BaseDirectory);
        }
    }

    /// <summary>The folder of one image's forms; skips the test, with the reason, when tools/test-images has not run.</summary>
    public static string Require(string name)
    {
        string dir = Path.Combine(RepositoryRoot, ".build", "test-images", name);
        if (!File.Exists(Path.Combine(dir, "export.tar")) || !File.Exists(Path.Combine(dir, "docker-archive.tar")))
            Assert.Skip($"test image '{name}' is not built: run tools/test-images (tools/test and CI do), which needs Docker (tools/provision, tools/services)");
        return dir;
    }

    /// <summary>Whether the registry tools/services starts answers.</summary>
    public static bool RegistryAnswers()
    {
        try
        {
            using var client = new HttpClient { Timeout = TimeSpan.FromSeconds(2) };
            return client.GetAsync("http://127.0.0.1:5000/v2/").Result.IsSuccessStatusCode;
        }
        catch (Exception ex) when (ex is HttpRequestException or AggregateException or TaskCanceledException)
        {
            return false;
        }
    }

    /// <summary>Runs a program; returns its stdout; fails the test with its stderr on a non-zero exit.</summary>
    public static string Run(string program, params string[] args) => Run(System.Text.Encoding.UTF8, program, args);

    /// <summary>Runs a program, decoding its stdout with <paramref name="encoding"/> (Latin-1 keeps raw file-name bytes).</summary>
    public static string Run(System.Text.Encoding encoding, string program, params string[] args)
    {
        var info = new System.Diagnostics.ProcessStartInfo(program) { RedirectStandardOutput = true, RedirectStandardError = true, StandardOutputEncoding = encoding };
        foreach (string a in args)
            info.ArgumentList.Add(a);
        using var process = System.Diagnostics.Process.Start(info)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        string stderr = process.StandardError.ReadToEnd();
        process.WaitForExit();
        Assert.True(process.ExitCode == 0, $"{program} {string.Join(' ', args)} exited {process.ExitCode}: {stderr}");
        return stdout.Result;
    }

    /// <summary>The absolute path of a program on PATH, or null.</summary>
    public static string? Which(string program) =>
        (Environment.GetEnvironmentVariable("PATH") ?? string.Empty).Split(':')
            .Select(d => Path.Combine(d, program)).FirstOrDefault(File.Exists);
}

using System.Diagnostics;

namespace EnclaveInit.Tests;

/// <summary>
/// Builds tools/enclave-init with its own script (<c>build OUTDIR [test]</c>), as the runtime installer does, and runs
/// programs with a timeout. The init every integration test runs is built once per test run.
/// </summary>
internal static class InitBuild
{
    private static readonly Lazy<BuildResult> Shared = new(() =>
    {
        string dir = Directory.CreateTempSubdirectory("enclave-init-bin").FullName;
        // 0755 instead of the temporary folder's 0700: one test runs the init as nobody.
        if (!OperatingSystem.IsWindows())
            File.SetUnixFileMode(dir, (UnixFileMode)0b111_101_101);
        AppDomain.CurrentDomain.ProcessExit += (_, _) => Directory.Delete(dir, recursive: true);
        return Build(dir);
    });

    /// <summary>tools/enclave-init of this repository (the folder above holding NitroEnclaves.sln).</summary>
    public static string SourceDirectory
    {
        get
        {
            for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            {
                if (File.Exists(Path.Combine(dir.FullName, "NitroEnclaves.sln")))
                    return Path.Combine(dir.FullName, "tools", "enclave-init");
            }

            throw new InvalidOperationException("NitroEnclaves.sln not found above " + AppContext.BaseDirectory);
        }
    }

    /// <summary>The init built once for the whole run; fails the test with the build's output if the build failed.</summary>
    public static string SharedInit
    {
        get
        {
            RequireCompiler();
            BuildResult result = Shared.Value;
            Assert.True(result.Run.ExitCode == 0, $"tools/enclave-init/build failed:\n{result.Run.Output}");
            return result.Init;
        }
    }

    /// <summary>Runs <c>bash SOURCE/build OUTDIR [test]</c>, with EIF_INIT_CC set when <paramref name="compiler"/> is given.</summary>
    public static BuildResult Build(string outDir, bool test = false, string? compiler = null, string? sourceDirectory = null)
    {
        string script = Path.Combine(sourceDirectory ?? SourceDirectory, "build");
        var env = new Dictionary<string, string?> { ["EIF_INIT_CC"] = compiler };
        string[] args = test ? [script, outDir, "test"] : [script, outDir];
        return new BuildResult(Path.Combine(outDir, "init"), Run("bash", args, env, TimeSpan.FromMinutes(2)));
    }

    /// <summary>Skips the test, with the reason, when neither musl-gcc nor gcc is installed.</summary>
    public static void RequireCompiler()
    {
        if (Which("musl-gcc") is null && Which("gcc") is null)
            Assert.Skip("neither musl-gcc nor gcc is installed (tools/provision installs musl-tools and gcc)");
    }

    /// <summary>The absolute path of a program on PATH, or null.</summary>
    public static string? Which(string program) =>
        (Environment.GetEnvironmentVariable("PATH") ?? string.Empty).Split(':', StringSplitOptions.RemoveEmptyEntries)
            .Select(d => Path.Combine(d, program)).FirstOrDefault(File.Exists);

    /// <summary>
    /// Runs a program with stdout and stderr merged in the order written (through <c>sh -c 'exec "$0" "$@" 2&gt;&amp;1'</c>:
    /// the program keeps the shell's PID). Environment values that are null are removed. Kills the program and fails
    /// the test if it runs longer than <paramref name="timeout"/>. <paramref name="whileRunning"/> gets the process and
    /// the output so far, to signal it.
    /// </summary>
    public static ProcessRun Run(string program, IReadOnlyList<string> args, IReadOnlyDictionary<string, string?> env, TimeSpan timeout,
        Action<Process, OutputLines>? whileRunning = null)
    {
        var info = new ProcessStartInfo("/bin/sh") { RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = true };
        info.ArgumentList.Add("-c");
        info.ArgumentList.Add("exec \"$0\" \"$@\" 2>&1");
        info.ArgumentList.Add(program);
        foreach (string a in args)
            info.ArgumentList.Add(a);
        foreach (var (name, value) in env)
        {
            if (value is null)
                info.Environment.Remove(name);
            else
                info.Environment[name] = value;
        }

        var lines = new OutputLines();
        using var process = Process.Start(info)!;
        process.StandardInput.Close();
        process.OutputDataReceived += (_, e) => lines.Add(e.Data);
        process.ErrorDataReceived += (_, e) => lines.Add(e.Data);
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        try
        {
            whileRunning?.Invoke(process, lines);
            using var cts = new CancellationTokenSource(timeout);
            process.WaitForExitAsync(cts.Token).GetAwaiter().GetResult();
        }
        catch (OperationCanceledException)
        {
            Assert.Fail($"{program} did not end within {timeout.TotalSeconds} s; its output so far:\n{lines.Text}");
        }
        finally
        {
            if (!process.HasExited)
                process.Kill(entireProcessTree: true);
        }

        return new ProcessRun(process.ExitCode, lines.Snapshot());
    }
}

/// <summary>The init binary a build wrote, and how the build went.</summary>
internal sealed record BuildResult(string Init, ProcessRun Run);

/// <summary>The exit code of a finished program and its output lines (stdout and stderr merged).</summary>
internal sealed record ProcessRun(int ExitCode, IReadOnlyList<string> Lines)
{
    public string Output => string.Join('\n', Lines);
}

/// <summary>Output lines collected while a program runs; a test can wait for one to appear.</summary>
internal sealed class OutputLines
{
    private readonly List<string> _lines = [];

    public string Text
    {
        get
        {
            lock (_lines)
                return string.Join('\n', _lines);
        }
    }

    public void Add(string? line)
    {
        if (line is null)
            return; // end of the stream
        lock (_lines)
        {
            _lines.Add(line);
            Monitor.PulseAll(_lines);
        }
    }

    public IReadOnlyList<string> Snapshot()
    {
        lock (_lines)
            return _lines.ToList();
    }

    /// <summary>Waits until a line equal to <paramref name="line"/> has been written; fails the test after the timeout.</summary>
    public void WaitFor(string line, TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        lock (_lines)
        {
            while (!_lines.Contains(line))
            {
                var left = deadline - DateTime.UtcNow;
                if (left <= TimeSpan.Zero)
                    Assert.Fail($"the line '{line}' did not appear within {timeout.TotalSeconds} s; output so far:\n{string.Join('\n', _lines)}");
                Monitor.Wait(_lines, left);
            }
        }
    }
}

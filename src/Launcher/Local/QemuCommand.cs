using System.ComponentModel;
using System.Diagnostics;
using System.Text;

namespace Launcher.Local;

/// <summary>What one bounded run of a QEMU binary produced.</summary>
/// <param name="ExitCode">The exit status (128 + signal number when a signal ended it), or null when QEMU was killed or never started.</param>
/// <param name="Stdout">Standard output, up to <see cref="QemuCommand.MaxCapture"/> characters.</param>
/// <param name="Stderr">Standard error, up to <see cref="QemuCommand.MaxCapture"/> characters.</param>
/// <param name="TimedOut">True when the time ran out before QEMU exited or printed the marker.</param>
/// <param name="MarkerSeen">True when standard output showed the marker (QEMU was then killed).</param>
/// <param name="StartError">Why the program could not be started, or null.</param>
/// <param name="Elapsed">From the start until QEMU was gone.</param>
internal sealed record QemuRunResult(int? ExitCode, string Stdout, string Stderr, bool TimedOut, bool MarkerSeen, string? StartError, TimeSpan Elapsed);

/// <summary>
/// Runs a QEMU binary (or anything standing in for one) under a timeout and always reaps it: on a timeout, on the
/// marker, or on an exception the whole process tree is killed and waited for, so no QEMU outlives the call.
/// </summary>
internal static class QemuCommand
{
    /// <summary>The most characters kept of each output stream (a console that never stops must not fill memory).</summary>
    internal const int MaxCapture = 1 << 20;

    // After a kill, how long to wait for the kernel to deliver the exit and for the pipes to close.
    private static readonly TimeSpan ReapWait = TimeSpan.FromSeconds(5);

    // Runs PROGRAM ARGUMENTS with stdin closed; returns when it exits, when stdout contains stopMarker (then it is
    // killed), or when timeout passes (then it is killed). Never throws for a program that cannot be started: the
    // result's StartError says why.
    internal static QemuRunResult Run(string program, IReadOnlyList<string> arguments, TimeSpan timeout, string? stopMarker = null)
    {
        var info = new ProcessStartInfo(program)
        {
            UseShellExecute = false,
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        foreach (string argument in arguments)
            info.ArgumentList.Add(argument);
        info.Environment["LC_ALL"] = "C";

        var stopwatch = Stopwatch.StartNew();
        Process? process;
        try
        {
            process = Process.Start(info);
        }
        catch (Win32Exception ex)
        {
            return new QemuRunResult(null, string.Empty, string.Empty, false, false, ex.Message, stopwatch.Elapsed);
        }

        if (process is null)
            return new QemuRunResult(null, string.Empty, string.Empty, false, false, "the process did not start", stopwatch.Elapsed);

        using (process)
        {
            var stdout = new StringBuilder();
            var stderr = new StringBuilder();
            var marker = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            Task stdoutPump = Pump(process.StandardOutput, stdout, stopMarker, marker);
            Task stderrPump = Pump(process.StandardError, stderr, null, null);
            int first = -1;
            bool killed;
            try
            {
                try
                {
                    // QEMU with -serial stdio reads stdin; closed, it sees end of file instead of a terminal.
                    process.StandardInput.Close();
                }
                catch (IOException)
                {
                    // It has already exited; the wait below says how.
                }

                first = Task.WaitAny([process.WaitForExitAsync(), marker.Task], timeout);
            }
            finally
            {
                killed = Reap(process);
                // The pumps end when the pipes close, i.e. when the process tree is gone.
                Task.WaitAll([stdoutPump, stderrPump], ReapWait);
            }

            // A program that prints the marker and exits at once may be seen to exit before the pump reads it.
            bool markerSeen = marker.Task.IsCompleted;
            bool timedOut = first == -1 && !markerSeen;
            int? exitCode = !killed && process.HasExited ? process.ExitCode : null;
            return new QemuRunResult(exitCode, Snapshot(stdout), Snapshot(stderr), timedOut, markerSeen, null, stopwatch.Elapsed);
        }
    }

    // Kills the process and its descendants if still running, then waits for the exit to be delivered (reaped).
    // Returns true when it had to kill. (LocalEnclave reaps its QEMU with it too.)
    internal static bool Reap(Process process)
    {
        bool killed = false;
        try
        {
            if (!process.HasExited)
            {
                process.Kill(entireProcessTree: true);
                killed = true;
            }
        }
        catch (InvalidOperationException)
        {
            // Exited between the check and the kill.
        }
        catch (Win32Exception)
        {
            // Exited and already reaped, or not ours to kill any more; the wait below settles it.
        }

        process.WaitForExit(ReapWait);
        return killed;
    }

    // Copies a stream into sb (up to MaxCapture characters) until end of file; completes marker once sb contains
    // stopMarker.
    private static async Task Pump(StreamReader reader, StringBuilder sb, string? stopMarker, TaskCompletionSource? marker)
    {
        var buffer = new char[4096];
        try
        {
            int read;
            while ((read = await reader.ReadAsync(buffer.AsMemory()).ConfigureAwait(false)) > 0)
            {
                lock (sb)
                {
                    if (sb.Length < MaxCapture)
                        sb.Append(buffer, 0, Math.Min(read, MaxCapture - sb.Length));
                    // Search only the end that can hold a marker split across two reads.
                    if (stopMarker is not null && marker is not null && !marker.Task.IsCompleted)
                    {
                        int from = Math.Max(0, sb.Length - read - stopMarker.Length);
                        if (sb.ToString(from, sb.Length - from).Contains(stopMarker, StringComparison.Ordinal))
                            marker.TrySetResult();
                    }
                }
            }
        }
        catch (Exception ex) when (ex is IOException or ObjectDisposedException)
        {
            // The pipe went away with the process.
        }
    }

    private static string Snapshot(StringBuilder sb)
    {
        lock (sb)
            return sb.ToString();
    }
}

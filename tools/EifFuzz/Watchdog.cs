using System.Diagnostics;

namespace EifFuzz;

/// <summary>Called on the watchdog thread when an iteration overruns; must not return (it ends the process).</summary>
/// <param name="iteration">The iteration that overran.</param>
/// <param name="input">Its input.</param>
/// <param name="seconds">How long it has run.</param>
internal delegate void HangHandler(long iteration, ReadOnlySpan<byte> input, double seconds);

/// <summary>
/// Watches the iteration in progress from a background thread and calls a <see cref="HangHandler"/> once it has
/// run longer than the timeout. A hung reader cannot be interrupted from outside, so reporting and exiting is all
/// that can be done.
/// </summary>
internal sealed class Watchdog
{
    // How often the thread looks; a hang is reported at most this much later than the timeout.
    private const int PollMilliseconds = 50;

    private readonly Lock _gate = new();
    private readonly long _timeoutTicks;
    private readonly HangHandler _onHang;
    private bool _active;
    private long _iteration;
    private long _startedAt;
    private byte[] _input = [];
    private int _length;

    /// <param name="timeoutSeconds">The longest an iteration may take.</param>
    /// <param name="onHang">Reports the hang and ends the process.</param>
    internal Watchdog(double timeoutSeconds, HangHandler onHang)
    {
        _timeoutTicks = (long)(timeoutSeconds * Stopwatch.Frequency);
        _onHang = onHang;
        var thread = new Thread(Run) { IsBackground = true, Name = "eif-fuzz-watchdog" };
        thread.Start();
    }

    /// <summary>Starts timing an iteration whose input is <c>input[..length]</c>; the caller must not change it before <see cref="End"/>.</summary>
    internal void Begin(long iteration, byte[] input, int length)
    {
        lock (_gate)
        {
            _iteration = iteration;
            _input = input;
            _length = length;
            _startedAt = Stopwatch.GetTimestamp();
            _active = true;
        }
    }

    /// <summary>Stops timing; afterwards the caller may reuse the input buffer and the state that describes it.</summary>
    /// <remarks>
    /// Takes the lock, which the watchdog holds while it reports a hang: an iteration that finishes just after
    /// the timeout then blocks here until the process exits, instead of changing the input being saved.
    /// </remarks>
    internal void End()
    {
        lock (_gate)
            _active = false;
    }

    private void Run()
    {
        while (true)
        {
            Thread.Sleep(PollMilliseconds);
            lock (_gate)
            {
                long elapsed = Stopwatch.GetTimestamp() - _startedAt;
                if (_active && elapsed > _timeoutTicks)
                    _onHang(_iteration, _input.AsSpan(0, _length), (double)elapsed / Stopwatch.Frequency);
            }
        }
    }
}

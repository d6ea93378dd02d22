using System.Globalization;

namespace EifFuzz;

/// <summary>Counts per pass (strict, lenient): successful parses, format errors by code, unexpected exceptions.</summary>
internal sealed class FuzzStats
{
    private readonly long[] _parsed = new long[FuzzTarget.Passes.Length];
    private readonly long[] _crcMatched = new long[FuzzTarget.Passes.Length];
    private readonly long[] _unexpected = new long[FuzzTarget.Passes.Length];
    private readonly SortedDictionary<EifFormat.EifFormatError, long[]> _errors = [];

    // The pass that came closest to its allocation limit.
    private double _worstShare = -1;
    private long _worstBytes;
    private long _worstLimit;
    private int _worstLength;
    private long _worstIteration;
    private int _worstPass;

    /// <summary>Allocation spikes that a re-run of the same pass did not repeat (one-time costs), and so are not findings.</summary>
    internal long OneTimeSpikes { get; set; }

    internal void Record(int pass, PassOutcome outcome, long iteration, int inputLength)
    {
        switch (outcome.Result)
        {
            case PassResult.Parsed:
                _parsed[pass]++;
                _crcMatched[pass]++;
                break;
            case PassResult.ParsedCrcMismatch:
                _parsed[pass]++;
                break;
            case PassResult.FormatError:
                if (!_errors.TryGetValue(outcome.Error, out long[]? counts))
                    _errors[outcome.Error] = counts = new long[FuzzTarget.Passes.Length];
                counts[pass]++;
                break;
            default:
                _unexpected[pass]++;
                break;
        }

        long limit = FuzzTarget.AllocationLimit(inputLength, outcome.CheckedSignature, outcome.Decompressed);
        double share = (double)outcome.AllocatedBytes / limit;
        if (share > _worstShare)
        {
            (_worstShare, _worstBytes, _worstLimit, _worstLength, _worstIteration, _worstPass) =
                (share, outcome.AllocatedBytes, limit, inputLength, iteration, pass);
        }
    }

    internal void WriteSummary(TextWriter w, long iterations, int seed, double seconds, int findings, int distinctFindings)
    {
        var c = CultureInfo.InvariantCulture;
        string Pair(long[] counts) => string.Join(", ", FuzzTarget.Passes.Select((p, i) => $"{p.Name} {counts[i].ToString(c)}"));

        w.WriteLine("summary");
        w.WriteLine(string.Create(c, $"  iterations:          {iterations}"));
        w.WriteLine(string.Create(c, $"  seed:                {seed}"));
        w.WriteLine(string.Create(c, $"  elapsed:             {seconds:F1} s"));
        w.WriteLine(string.Create(c, $"  rate:                {(seconds > 0 ? iterations / seconds : 0):F0} iterations/s"));
        w.WriteLine(string.Create(c, $"  successful parses:   {Pair(_parsed)} (CRC matching: {Pair(_crcMatched)})"));
        w.WriteLine(string.Create(c, $"  EifFormatError counts {string.Concat(FuzzTarget.Passes.Select(p => p.Name.PadLeft(10)))}"));
        foreach ((EifFormat.EifFormatError error, long[] counts) in _errors)
            w.WriteLine(string.Create(c, $"    {error,-20}{string.Concat(counts.Select(n => n.ToString(c).PadLeft(10)))}"));
        w.WriteLine(string.Create(c, $"  ramdisks read:       {FuzzTarget.RamdisksRead} ({FuzzTarget.RamdiskEntries} entries; {FuzzTarget.RamdisksRejected} rejected as InvalidRamdisk)"));
        w.WriteLine(string.Create(c, $"  unexpected exceptions: {Pair(_unexpected)}"));
        if (_worstShare >= 0)
        {
            w.WriteLine(string.Create(c, $"  largest allocation:  {_worstBytes} bytes in one pass, {_worstShare:P1} of the limit {_worstLimit} for its {_worstLength}-byte input (iteration {_worstIteration}, {FuzzTarget.Passes[_worstPass].Name})"));
        }

        w.WriteLine(string.Create(c, $"  one-time allocation spikes (not repeated on a re-run, not findings): {OneTimeSpikes}"));
        w.WriteLine(string.Create(c, $"  findings:            {findings} ({distinctFindings} distinct)"));
    }
}

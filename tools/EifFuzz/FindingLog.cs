using System.Globalization;
using System.Text;

namespace EifFuzz;

/// <summary>Prints findings and saves their inputs (with a .txt report beside each) to the findings folder.</summary>
/// <remarks>
/// Findings with the same signature (kind, exception type and stack) are one bug seen again: the first
/// <see cref="DetailedPerSignature"/> are printed in full and the rest as one line each, and inputs are saved for
/// the first <see cref="SavedPerSignature"/>, so that a frequent bug neither buries the others nor fills the disk.
/// Every occurrence is counted. Thread-safe: the watchdog reports from its own thread.
/// </remarks>
internal sealed class FindingLog(string directory, int seed, TextWriter output)
{
    private const int DetailedPerSignature = 3;
    private const int SavedPerSignature = 20;

    private readonly Lock _gate = new();
    private readonly Dictionary<string, (int Count, int First)> _bySignature = new(StringComparer.Ordinal);

    /// <summary>Findings so far, repeats included.</summary>
    internal int Count { get; private set; }

    /// <summary>Distinct signatures so far.</summary>
    internal int Distinct
    {
        get
        {
            lock (_gate)
                return _bySignature.Count;
        }
    }

    /// <summary>Reports one finding.</summary>
    /// <param name="kind">A short tag, also used in the file name: "unexpected-strict", "allocation-lenient", "hang"….</param>
    /// <param name="signature">What makes two findings the same bug.</param>
    /// <param name="headline">One line: what happened.</param>
    /// <param name="details">The stack trace or measurements; printed for the first few of a signature.</param>
    internal void Report(
        string kind, string signature, long iteration, string corpusFile, string mutations, ReadOnlySpan<byte> input,
        string headline, string details)
    {
        lock (_gate)
        {
            Count++;
            int number = Count;
            (int seen, int first) = _bySignature.TryGetValue(signature, out var entry) ? entry : (0, number);
            _bySignature[signature] = (seen + 1, first);

            string? saved = null;
            string inputNote = "not saved (enough inputs of this signature are saved already)";
            if (seen < SavedPerSignature)
            {
                string path = Path.Combine(directory, $"seed{seed}-iter{iteration}-{kind}.eif");
                string? error = TryWrite(path, input.ToArray());
                saved = error is null ? path : null;
                inputNote = error is null ? path : $"could not be saved ({error})";
            }

            var text = new StringBuilder();
            text.Append(CultureInfo.InvariantCulture, $"FINDING #{number} ({kind}): {headline}\n");
            text.Append(CultureInfo.InvariantCulture, $"  seed {seed}, iteration {iteration}, corpus file {corpusFile}, input {input.Length} bytes\n");
            text.Append(CultureInfo.InvariantCulture, $"  mutations: {mutations}\n");
            text.Append(CultureInfo.InvariantCulture, $"  input: {inputNote}\n");
            if (seen < DetailedPerSignature)
            {
                foreach (string line in details.Split('\n'))
                    text.Append("  ").Append(line.TrimEnd('\r')).Append('\n');
            }
            else
            {
                text.Append(CultureInfo.InvariantCulture, $"  (same signature as finding #{first}; details printed there)\n");
            }

            output.Write(text.ToString());
            output.Flush();
            if (saved is not null)
                TryWrite(Path.ChangeExtension(saved, ".txt"), Encoding.UTF8.GetBytes(text.ToString()));
        }
    }

    // Returns null on success, else the error's message.
    private string? TryWrite(string path, byte[] bytes)
    {
        try
        {
            Directory.CreateDirectory(directory);
            File.WriteAllBytes(path, bytes);
            return null;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return ex.Message;
        }
    }
}

using System.Globalization;

namespace EifFuzz;

/// <summary>The fuzzer's command line. Parsing reports an error instead of throwing (STYLE.md rule 12).</summary>
internal sealed class FuzzOptions
{
    internal const string Usage = """
        Usage: tools/fuzz [options]

        Mutates the EIF files of a corpus and runs each result through EifReader (strict and lenient layout),
        DescribeEifCommand.Describe, every section stream and the JSON rendering. Only EifFormatException is an
        expected failure; any other exception, an iteration slower than the timeout, or an allocation out of
        proportion to the input is a finding. Exit code: 0 without findings, 1 with findings, 2 for a usage error.

        Options:
          --corpus DIR            folder of *.eif seed files (default: tests/golden of this repository)
          --iterations N          number of mutated inputs (default 10000)
          --seed S                seed of the one pseudo-random sequence (default 1); same seed and corpus, same inputs
          --findings DIR          where inputs of findings are saved (default /tmp/eif-fuzz-findings)
          --timeout-seconds T     an iteration slower than this is a hang: report it and exit 1 (default 10)
          --replay FILE           run FILE once through the same checks instead of fuzzing (repeatable)
          -h, --help              print this text
        """;

    // One day: longer is no timeout at all, and keeps the watchdog's tick arithmetic far from overflow.
    private const int MaxTimeoutSeconds = 86_400;

    internal string? Corpus { get; private set; }

    internal long Iterations { get; private set; } = 10_000;

    internal int Seed { get; private set; } = 1;

    internal string FindingsDirectory { get; private set; } = "/tmp/eif-fuzz-findings";

    internal double TimeoutSeconds { get; private set; } = 10;

    internal List<string> Replay { get; } = [];

    internal bool Help { get; private set; }

    // Returns null and sets error (one sentence) when the arguments are not valid.
    internal static FuzzOptions? Parse(string[] args, out string? error)
    {
        var options = new FuzzOptions();
        error = null;
        for (int i = 0; i < args.Length; i++)
        {
            string name = args[i];
            string? value = null;
            int equals = name.IndexOf('=', StringComparison.Ordinal);
            if (name.StartsWith("--", StringComparison.Ordinal) && equals > 0)
            {
                value = name[(equals + 1)..];
                name = name[..equals];
            }

            if (name is "-h" or "--help")
            {
                options.Help = true;
                continue;
            }

            if (name is not ("--corpus" or "--iterations" or "--seed" or "--findings" or "--timeout-seconds" or "--replay"))
            {
                error = $"unknown argument '{args[i]}' (see --help)";
                return null;
            }

            if (value is null)
            {
                if (i + 1 >= args.Length)
                {
                    error = $"option '{name}' needs a value";
                    return null;
                }

                value = args[++i];
            }

            switch (name)
            {
                case "--corpus":
                    options.Corpus = value;
                    break;
                case "--findings":
                    options.FindingsDirectory = value;
                    break;
                case "--replay":
                    options.Replay.Add(value);
                    break;
                case "--iterations":
                    if (!long.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out long iterations))
                    {
                        error = $"'--iterations' is '{value}', not a whole number of zero or more";
                        return null;
                    }

                    options.Iterations = iterations;
                    break;
                case "--seed":
                    if (!int.TryParse(value, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out int seed))
                    {
                        error = $"'--seed' is '{value}', not a 32-bit signed integer";
                        return null;
                    }

                    options.Seed = seed;
                    break;
                case "--timeout-seconds":
                    if (!double.TryParse(value, NumberStyles.Float, CultureInfo.InvariantCulture, out double timeout)
                        || !double.IsFinite(timeout) || timeout <= 0 || timeout > MaxTimeoutSeconds)
                    {
                        error = $"'--timeout-seconds' is '{value}', not a positive number of seconds up to {MaxTimeoutSeconds}";
                        return null;
                    }

                    options.TimeoutSeconds = timeout;
                    break;
            }
        }

        return options;
    }
}

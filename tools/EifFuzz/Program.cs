using System.Diagnostics;
using System.Globalization;

namespace EifFuzz;

/// <summary>
/// A seeded mutation fuzzer for the EIF reader: mutates the corpus files and runs every result through the
/// describe-eif path (<see cref="FuzzTarget"/>), in memory, under three oracles: no exception but
/// <c>EifFormatException</c>, no iteration slower than the timeout, no allocation out of proportion to the input.
/// </summary>
internal static class Program
{
    private const int ExitFindings = 1;
    private const int ExitUsage = 2;

    // Inputs run before measuring starts: the first iterations of the same sequence, so that JIT compilation,
    // type loading and the array pool's first buffers are paid for on paths the run will take. They are run again,
    // with every check, as the first iterations of the measured run.
    private const int WarmupIterations = 1000;

    private const long ProgressInterval = 100_000;

    // One line is printed for each of the first few allocation spikes that a re-run does not repeat; more are counted.
    private const int SpikeNotes = 10;

    private static readonly CultureInfo C = CultureInfo.InvariantCulture;

    private static int Main(string[] args)
    {
        FuzzOptions? options = FuzzOptions.Parse(args, out string? error);
        if (options is null)
        {
            Console.Error.WriteLine($"fuzz: {error}.");
            return ExitUsage;
        }

        if (options.Help)
        {
            Console.Out.WriteLine(FuzzOptions.Usage);
            return 0;
        }

        if (options.Replay.Count > 0)
            return Replay(options);

        string? corpusDirectory = options.Corpus;
        if (corpusDirectory is null)
        {
            string? root = FindRepositoryRoot();
            if (root is null)
            {
                Console.Error.WriteLine("fuzz: no folder holding NitroEnclaves.sln lies above the fuzzer or the current directory, so pass --corpus DIR.");
                return ExitUsage;
            }

            corpusDirectory = Path.Combine(root, "tests", "golden");
        }

        if (!Directory.Exists(corpusDirectory))
        {
            Console.Error.WriteLine($"fuzz: the corpus folder '{corpusDirectory}' does not exist.");
            return ExitUsage;
        }

        List<CorpusFile> corpus = CorpusFile.Load(corpusDirectory);
        if (corpus.Count == 0)
        {
            Console.Error.WriteLine($"fuzz: the corpus folder '{corpusDirectory}' holds no *.eif files.");
            return ExitUsage;
        }

        corpus.AddRange(SyntheticCorpus.Build());

        return Fuzz(options, corpus, corpusDirectory);
    }

    private static int Fuzz(FuzzOptions options, List<CorpusFile> corpus, string corpusDirectory)
    {
        TextWriter output = Console.Out;
        output.WriteLine(string.Create(C, $"eif-fuzz: seed {options.Seed}, {options.Iterations} iterations, corpus {Path.GetFullPath(corpusDirectory)} ({corpus.Count} files), timeout {options.TimeoutSeconds} s, findings to {options.FindingsDirectory}"));

        var findings = new FindingLog(options.FindingsDirectory, options.Seed, output);
        var stats = new FuzzStats();
        var scratch = new byte[64 * 1024];
        int maxSeedLength = corpus.Max(f => f.Bytes.Length);
        Mutator? current = null;
        var watchdog = new Watchdog(options.TimeoutSeconds, (iteration, input, seconds) =>
        {
            // The main thread is inside the iteration or blocked in Watchdog.End, so the mutator is stable.
            findings.Report(
                "hang", "hang", iteration, current?.Seed.Name ?? "?", current?.DescribeMutations() ?? "?", input,
                $"iteration {iteration} has run for {seconds:F1} s, longer than the {options.TimeoutSeconds} s timeout",
                "The run stops here: a hung reader cannot be interrupted.");
            output.Flush();
            Environment.Exit(ExitFindings);
        });

        // Warm-up: the corpus files as they are (the full success path), then the first inputs of the sequence.
        var warmup = Stopwatch.StartNew();
        foreach (CorpusFile file in corpus)
        {
            foreach (var pass in FuzzTarget.Passes)
                FuzzTarget.Measure(file.Bytes, file.Bytes.Length, pass.Options, scratch);
        }

        current = new Mutator(new Random(options.Seed), maxSeedLength);
        for (long i = 0; i < Math.Min(options.Iterations, WarmupIterations); i++)
        {
            current.Next(corpus);
            watchdog.Begin(i, current.Buffer, current.Length);
            foreach (var pass in FuzzTarget.Passes)
                FuzzTarget.Measure(current.Buffer, current.Length, pass.Options, scratch);
            watchdog.End();
        }

        output.WriteLine(string.Create(C, $"warm-up: {corpus.Count} corpus files and {Math.Min(options.Iterations, WarmupIterations)} inputs in {warmup.Elapsed.TotalSeconds:F1} s"));

        // The measured run starts the same sequence over: iteration i's input depends only on the seed.
        current = new Mutator(new Random(options.Seed), maxSeedLength);
        var outcomes = new PassOutcome[FuzzTarget.Passes.Length];
        var clock = Stopwatch.StartNew();
        for (long i = 0; i < options.Iterations; i++)
        {
            current.Next(corpus);
            int length = current.Length;
            watchdog.Begin(i, current.Buffer, length);
            for (int p = 0; p < FuzzTarget.Passes.Length; p++)
                outcomes[p] = FuzzTarget.Measure(current.Buffer, length, FuzzTarget.Passes[p].Options, scratch);
            watchdog.End();

            for (int p = 0; p < FuzzTarget.Passes.Length; p++)
            {
                var pass = FuzzTarget.Passes[p];
                PassOutcome outcome = outcomes[p];
                stats.Record(p, outcome, i, length);
                if (outcome.Exception is { } ex)
                {
                    findings.Report(
                        $"unexpected-{pass.Name}", $"unexpected|{ex.GetType().FullName}|{ex.StackTrace}", i, current.Seed.Name,
                        current.DescribeMutations(), current.Buffer.AsSpan(0, length),
                        $"{ex.GetType().FullName} with {pass.Name} options: {ex.Message}",
                        ex.ToString());
                }

                long limit = FuzzTarget.AllocationLimit(length, outcome.CheckedSignature, outcome.Decompressed);
                if (outcome.AllocatedBytes > limit)
                {
                    // A first-time cost (JIT of a rare path, a pool's first buffer of a size) does not recur;
                    // allocation that depends on the input does.
                    watchdog.Begin(i, current.Buffer, length);
                    PassOutcome again = FuzzTarget.Measure(current.Buffer, length, pass.Options, scratch);
                    watchdog.End();
                    if (again.AllocatedBytes > limit)
                    {
                        string ending = again.Result == PassResult.FormatError ? $"EifFormatException {again.Error}" : again.Result.ToString();
                        findings.Report(
                            $"allocation-{pass.Name}", $"allocation|{pass.Name}|{ending}", i, current.Seed.Name,
                            current.DescribeMutations(), current.Buffer.AsSpan(0, length),
                            $"one {pass.Name} pass allocated {again.AllocatedBytes} bytes (first run {outcome.AllocatedBytes}), over the limit of {limit} for a {length}-byte input",
                            $"The pass ended with {ending}. Limit: 64 KiB + 32 x input length (+ 2 MiB when a signature was checked).");
                    }
                    else
                    {
                        stats.OneTimeSpikes++;
                        if (stats.OneTimeSpikes <= SpikeNotes)
                            output.WriteLine(string.Create(C, $"note: iteration {i}, {pass.Name}: {outcome.AllocatedBytes} bytes allocated once, {again.AllocatedBytes} on a re-run (limit {limit}); a one-time cost, not a finding"));
                    }
                }
            }

            if ((i + 1) % ProgressInterval == 0)
            {
                double elapsed = clock.Elapsed.TotalSeconds;
                output.WriteLine(string.Create(C, $"progress: {i + 1} iterations, {elapsed:F1} s, {(i + 1) / elapsed:F0} iterations/s, {findings.Count} findings"));
            }
        }

        clock.Stop();
        stats.WriteSummary(output, options.Iterations, options.Seed, clock.Elapsed.TotalSeconds, findings.Count, findings.Distinct);
        return findings.Count > 0 ? ExitFindings : 0;
    }

    // Runs saved inputs (a finding's .eif) once more through the same checks and prints what happened.
    private static int Replay(FuzzOptions options)
    {
        TextWriter output = Console.Out;
        var watchdog = new Watchdog(options.TimeoutSeconds, (iteration, input, seconds) =>
        {
            output.WriteLine(string.Create(C, $"fuzz: {options.Replay[(int)iteration]} has run for {seconds:F1} s, longer than the {options.TimeoutSeconds} s timeout: a hang."));
            output.Flush();
            Environment.Exit(ExitFindings);
        });
        var scratch = new byte[64 * 1024];
        int failures = 0;
        for (int f = 0; f < options.Replay.Count; f++)
        {
            string path = options.Replay[f];
            byte[] input;
            try
            {
                input = File.ReadAllBytes(path);
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                Console.Error.WriteLine($"fuzz: cannot read '{path}' ({ex.Message}).");
                return ExitUsage;
            }

            foreach (var pass in FuzzTarget.Passes)
            {
                // The first run pays the one-time costs; the second one's allocation is compared with the limit.
                watchdog.Begin(f, input, input.Length);
                FuzzTarget.Measure(input, input.Length, pass.Options, scratch);
                PassOutcome outcome = FuzzTarget.Measure(input, input.Length, pass.Options, scratch);
                watchdog.End();
                long limit = FuzzTarget.AllocationLimit(input.Length, outcome.CheckedSignature, outcome.Decompressed);
                string ending = outcome.Result switch
                {
                    PassResult.FormatError => $"EifFormatException {outcome.Error}",
                    PassResult.Unexpected => $"UNEXPECTED {outcome.Exception!.GetType().FullName}",
                    _ => outcome.Result.ToString(),
                };
                bool tooMuch = outcome.AllocatedBytes > limit;
                output.WriteLine(string.Create(C, $"{path} ({input.Length} bytes), {pass.Name}: {ending}; allocated {outcome.AllocatedBytes} bytes (limit {limit}){(tooMuch ? ": OVER THE LIMIT" : string.Empty)}"));
                if (outcome.Exception is not null)
                    output.WriteLine(outcome.Exception.ToString());
                if (outcome.Result == PassResult.Unexpected || tooMuch)
                    failures++;
            }
        }

        return failures > 0 ? ExitFindings : 0;
    }

    // The repository root: the nearest folder holding NitroEnclaves.sln above the fuzzer's binaries (.build/fuzz
    // when run through tools/fuzz) or, failing that, above the current directory.
    private static string? FindRepositoryRoot()
    {
        foreach (string start in new[] { AppContext.BaseDirectory, Environment.CurrentDirectory })
        {
            for (var dir = new DirectoryInfo(start); dir is not null; dir = dir.Parent)
            {
                if (File.Exists(Path.Combine(dir.FullName, "NitroEnclaves.sln")))
                    return dir.FullName;
            }
        }

        return null;
    }
}

using System.CommandLine;
using System.Globalization;
using System.Text.RegularExpressions;
using EifBuilder.Cpio;
using EifBuilder.Inspect;
using EifFormat;
using EifFormat.Json;

namespace EifCli;

/// <summary>
/// <c>eif extract</c>: writes an EIF's sections to files in a folder (<c>kernel</c>, <c>cmdline</c>,
/// <c>metadata.json</c>, <c>signature.cbor</c>, <c>ramdisk-N.cpio[.gz|.zst]</c>), all of them or those named by
/// <c>--section</c>; with <c>--unpack</c> each selected ramdisk is also unpacked into <c>ramdisk-N/</c>, with a
/// <c>ramdisk-N.manifest.json</c> (<see cref="RamdiskUnpacker"/> says how carefully). Nothing in the folder is ever
/// replaced, and a failure leaves nothing behind (<see cref="EifExtractor"/>).
/// </summary>
internal sealed partial class ExtractCommand : Command
{
    private static readonly string[] SectionWords = ["kernel", "cmdline", "metadata", "signature"];

    private readonly TextWriter _stdout;

    internal ExtractCommand(TextWriter stdout)
        : base("extract", "Write an EIF's sections to files in a folder; with --unpack, also unpack its ramdisks (never following a symlink, never writing outside the folder).")
    {
        _stdout = stdout;
        Options.Add(EifPathOption);
        Options.Add(OutputDirOption);
        Options.Add(SectionOption);
        Options.Add(UnpackOption);
        Options.Add(NoDevicesOption);
        Options.Add(JsonOption);
        SectionOption.Validators.Add(result =>
        {
            foreach (string spec in result.GetValueOrDefault<string[]>() ?? [])
            {
                if (!IsSpec(spec))
                    result.AddError($"--section '{spec}' is none of kernel, cmdline, metadata, signature, ramdisk:N (a ramdisk, from 0) and N (a section index).");
            }
        });
        OutputDirOption.Validators.Add(result =>
        {
            if (result.GetValueOrDefault<string>() is { } path && File.Exists(path))
                result.AddError($"--output-dir '{path}' is a file; give a folder (it is created if missing).");
        });
        Validators.Add(result =>
        {
            if (result.GetValue(NoDevicesOption) && !result.GetValue(UnpackOption))
                result.AddError("--no-devices applies to --unpack only.");
        });
        SetAction(result => Execute(result));
    }

    internal Option<string> EifPathOption { get; } = EifCli.Options.ExistingFile("--eif-path", "The EIF.");

    internal Option<string> OutputDirOption { get; } = new("--output-dir")
    {
        Description = "The folder to write into; created if missing. Nothing in it is ever replaced.",
        Required = true,
        HelpName = "DIR",
    };

    internal Option<string[]> SectionOption { get; } = new("--section")
    {
        Description = "A section to write (repeatable; default: every section): kernel, cmdline, metadata, signature, ramdisk:N (ramdisks from 0) or a section index (describe-eif's Sections Index).",
        HelpName = "SPEC",
        AllowMultipleArgumentsPerToken = false,
    };

    internal Option<bool> UnpackOption { get; } = new("--unpack")
    {
        Description = "Also unpack each selected ramdisk into ramdisk-N/ with a ramdisk-N.manifest.json (the ramdisk-N.cpio file is written too).",
    };

    internal Option<bool> NoDevicesOption { get; } = new("--no-devices")
    {
        Description = "With --unpack: record device nodes and FIFOs in the manifest instead of creating them (only root creates them in any case).",
    };

    internal Option<bool> JsonOption { get; } = new("--json") { Description = "Print a JSON summary of what was written instead of one line per file." };

    /// <summary>Whether <paramref name="spec"/> is a section word, <c>ramdisk:N</c> or a section index.</summary>
    internal static bool IsSpec(string spec) => SectionWords.Contains(spec) || SpecPattern().IsMatch(spec);

    /// <summary>
    /// The sections <paramref name="specs"/> name (every section when there are none). A spec the EIF does not have is
    /// a usage error naming what it has.
    /// </summary>
    /// <exception cref="CliException">A spec names nothing in this EIF (<see cref="ExitCode.Usage"/>).</exception>
    internal static IReadOnlyList<EifSection> Select(EifReader reader, string path, IReadOnlyList<string>? specs)
    {
        if (specs is null || specs.Count == 0)
            return reader.Sections;
        IReadOnlyList<RamdiskSection> ramdisks = EifRamdisks.List(reader);
        var selected = new List<EifSection>();
        foreach (string spec in specs)
        {
            EifSection? section = spec switch
            {
                "kernel" => reader.FindSection(EifSectionType.Kernel),
                "cmdline" => reader.FindSection(EifSectionType.Cmdline),
                "metadata" => reader.FindSection(EifSectionType.Metadata),
                "signature" => reader.FindSection(EifSectionType.Signature),
                _ when spec.StartsWith("ramdisk:", StringComparison.Ordinal) =>
                    int.TryParse(spec.AsSpan(8), NumberStyles.None, CultureInfo.InvariantCulture, out int n) && n < ramdisks.Count ? ramdisks[n].Section : null,
                _ => int.TryParse(spec, NumberStyles.None, CultureInfo.InvariantCulture, out int i) && i < reader.Sections.Count ? reader.Sections[i] : null,
            };
            selected.Add(section ?? throw new CliException(ExitCode.Usage, $"{path} has no section '{spec}'; it has {Available(reader, ramdisks)}"));
        }

        return selected;
    }

    // "0 (kernel), 1 (cmdline), 2 (metadata), 3 (ramdisk:0), 4 (ramdisk:1)".
    private static string Available(EifReader reader, IReadOnlyList<RamdiskSection> ramdisks) =>
        string.Join(", ", reader.Sections.Select(s => s.Type == EifSectionType.Ramdisk
            ? $"{s.Index} (ramdisk:{ramdisks.Single(r => r.Section.Index == s.Index).Number})"
            : $"{s.Index} ({EifSectionTypes.Name(s.Type).ToLowerInvariant()})"));

    private int Execute(ParseResult result)
    {
        string path = result.GetValue(EifPathOption)!;
        string output = result.GetValue(OutputDirOption)!;
        bool unpack = result.GetValue(UnpackOption);
        using EifReader reader = EifReader.Open(path);
        IReadOnlyList<EifSection> sections = Select(reader, path, result.GetValue(SectionOption));
        if (unpack && sections.All(s => s.Type != EifSectionType.Ramdisk))
            throw new CliException(ExitCode.Usage, "--unpack: none of the selected sections is a ramdisk");

        var options = new RamdiskUnpackOptions { CreateDevices = !result.GetValue(NoDevicesOption) }; // honoured as root only
        ExtractResult extracted = EifExtractor.Extract(reader, sections, output, unpack, options);
        if (result.GetValue(JsonOption))
        {
            Output.WriteJson(_stdout, Json(path, extracted));
            return ExitCode.Success;
        }

        foreach (ExtractedFile file in extracted.Files)
        {
            string what = file.Ramdisk is { } ramdisk
                ? $"ramdisk {ramdisk.Number}{(file.Compression is RamdiskCompression.None ? string.Empty : ", " + file.Compression.ToString()!.ToLowerInvariant())}"
                : EifSectionTypes.Name(file.Section.Type).ToLowerInvariant();
            _stdout.WriteLine($"{file.Path}: section {file.Section.Index} ({what}), {file.Size} bytes");
            if (extracted.Trees.FirstOrDefault(t => t.Ramdisk.Section.Index == file.Section.Index) is { } tree)
            {
                _stdout.WriteLine($"{tree.Path}/: ramdisk {tree.Ramdisk.Number} unpacked, {Counts(tree)}");
                _stdout.WriteLine($"{tree.ManifestPath}: the manifest of those entries");
            }
        }

        _stdout.Flush();
        return ExitCode.Success;
    }

    // "120 entries: 117 created, 3 recorded" (the actions that happened).
    private static string Counts(ExtractedTree tree) =>
        $"{tree.Entries.Count} entr{(tree.Entries.Count == 1 ? "y" : "ies")}: " + string.Join(", ", Enum.GetValues<UnpackAction>()
            .Select(a => (Action: a, Count: tree.Entries.Count(e => e.Action == a)))
            .Where(c => c.Count > 0 || c.Action == UnpackAction.Created)
            .Select(c => $"{c.Count} {c.Action.ToString().ToLowerInvariant()}"));

    private static JObject Json(string path, ExtractResult extracted) => JObject.Of(
        ("EifPath", new JString(path)),
        ("OutputDir", new JString(extracted.OutputDirectory)),
        ("Files", new JArray(extracted.Files.Select(f =>
        {
            var properties = new List<(string, JValue)>
            {
                ("Path", new JString(f.Path)),
                ("Section", JNumber.From((long)f.Section.Index)),
                ("Type", new JString(EifSectionTypes.Name(f.Section.Type))),
            };
            if (f.Ramdisk is { } ramdisk)
            {
                properties.Add(("Ramdisk", JNumber.From((long)ramdisk.Number)));
                properties.Add(("Compression", new JString(f.Compression.ToString()!.ToLowerInvariant())));
            }

            properties.Add(("Size", JNumber.From(f.Size)));
            properties.Add(("Sha256", new JString(Convert.ToHexString(f.Sha256).ToLowerInvariant())));
            return (JValue)JObject.Of(properties.ToArray());
        }))),
        ("Unpacked", new JArray(extracted.Trees.Select(t => (JValue)JObject.Of(
            ("Ramdisk", JNumber.From((long)t.Ramdisk.Number)),
            ("Section", JNumber.From((long)t.Ramdisk.Section.Index)),
            ("Path", new JString(t.Path)),
            ("Manifest", new JString(t.ManifestPath)),
            ("Entries", JNumber.From((long)t.Entries.Count)),
            ("Counts", JObject.Of(Enum.GetValues<UnpackAction>().Select(a => (a.ToString(), (JValue)JNumber.From((long)t.Entries.Count(e => e.Action == a)))).ToArray())),
            ("CreatedDevices", JBool.From(t.CreatedDevices)),
            ("PreservedOwnership", JBool.From(t.PreservedOwnership)))))));

    [GeneratedRegex("^(ramdisk:)?[0-9]{1,9}$", RegexOptions.CultureInvariant)]
    private static partial Regex SpecPattern();
}

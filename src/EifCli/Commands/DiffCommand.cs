using System.CommandLine;
using System.Globalization;
using System.Text;
using EifBuilder.Inspect;
using EifFormat;
using EifFormat.Json;

namespace EifCli;

/// <summary>
/// <c>eif diff OLD.eif NEW.eif [--json]</c>: why two images measure differently. Prints each PCR (same, differs,
/// added, removed, absent), each section pair and the PCRs it feeds, and for every differing ramdisk the files that
/// differ; the command lines and kernels when they differ; the metadata path by path. Exit 0 when the PCRs that an
/// enclave is measured by are equal (PCR0, PCR1, PCR2, and PCR8 equal or absent from both), even if metadata or
/// signature bytes differ; otherwise the report, one line on stderr, and <see cref="ExitCode.VerificationFailed"/>.
/// </summary>
internal sealed class DiffCommand : Command
{
    // Text output shortens hashes to this many hex digits (the JSON has them whole).
    private const int ShortHash = 8;

    // Paths are padded to a common column, up to this width; longer ones push their line's values right.
    private const int MaxPathColumn = 40;

    private readonly TextWriter _stdout;
    private readonly TextWriter _stderr;

    internal DiffCommand(TextWriter stdout, TextWriter stderr)
        : base("diff", "Compare two EIFs: PCRs, sections, the files of differing ramdisks, cmdline, kernel and metadata. Exit 0 when PCR0/1/2/8 are equal.")
    {
        _stdout = stdout;
        _stderr = stderr;
        Arguments.Add(OldArgument);
        Arguments.Add(NewArgument);
        Options.Add(JsonOption);
        SetAction(result => Execute(result));
    }

    internal Argument<string> OldArgument { get; } = ExistingFile("OLD", "The first (old) EIF.");

    internal Argument<string> NewArgument { get; } = ExistingFile("NEW", "The second (new) EIF.");

    internal Option<bool> JsonOption { get; } = new("--json") { Description = "Print the report as JSON." };

    /// <summary>The report as JSON: the same content as the text, with whole hashes and each file's attributes.</summary>
    internal static JObject ToJson(EifDiffResult diff)
    {
        var properties = new List<(string, JValue)>
        {
            ("Old", new JString(diff.Old)),
            ("New", new JString(diff.New)),
            ("MeasurementsEqual", JBool.From(diff.MeasurementsEqual)),
            ("Measurements", JObject.Of(diff.Measurements.Select(p => (p.Register, (JValue)JObject.Of(
                ("Status", Status(p.Status)),
                ("Old", OrNull(p.Old)),
                ("New", OrNull(p.New))))).ToArray())),
            ("Sections", new JArray(diff.Sections.Select(s => (JValue)JObject.Of(
                ("Name", new JString(s.Name)),
                ("Type", new JString(EifSectionTypes.Name(s.Type))),
                ("Status", Status(s.Status)),
                ("Pcrs", new JArray(s.Registers.Select(r => (JValue)new JString(r)))),
                ("Old", Digest(s.Old)),
                ("New", Digest(s.New)))))),
        };
        if (diff.Order is { } order)
        {
            properties.Add(("MeasuredOrder", JObject.Of(
                ("Old", new JArray(order.Old.Select(n => (JValue)new JString(n)))),
                ("New", new JArray(order.New.Select(n => (JValue)new JString(n)))))));
        }

        if (diff.Kernel is { } kernel)
            properties.Add(("Kernel", JObject.Of(("Old", Digest(kernel.Old)), ("New", Digest(kernel.New)))));
        if (diff.Cmdline is { } cmdline)
            properties.Add(("Cmdline", JObject.Of(("Old", new JString(cmdline.Old)), ("New", new JString(cmdline.New)))));
        properties.Add(("Ramdisks", new JArray(diff.Ramdisks.Select(r => (JValue)JObject.Of(
            ("Ramdisk", JNumber.From((long)r.Number)),
            ("Compression", JObject.Of(("Old", CompressionValue(r.OldCompression)), ("New", CompressionValue(r.NewCompression)))),
            ("Error", OrNull(r.Error)),
            ("Files", new JArray(r.Files.Select(f => (JValue)JObject.Of(
                ("Path", new JString(JsonName(f.Path))),
                ("Change", new JString(f.Kind.ToString().ToLowerInvariant())),
                ("Fields", new JArray(f.Fields.Select(c => (JValue)JObject.Of(
                    ("Field", new JString(c.Field)), ("Old", new JString(JsonName(c.Old))), ("New", new JString(JsonName(c.New))))))),
                ("Old", File(f.Old)),
                ("New", File(f.New)))))))))));
        if (diff.Metadata is { } metadata)
        {
            properties.Add(("Metadata", JObject.Of(
                ("Error", OrNull(metadata.Error)),
                ("Changes", new JArray(metadata.Changes.Select(c => (JValue)JObject.Of(
                    ("Path", new JString(c.Path)),
                    ("Change", new JString(c.Kind.ToString().ToLowerInvariant())),
                    ("Old", c.Old is null ? JNull.Instance : JsonValue(c.Old)),
                    ("New", c.New is null ? JNull.Instance : JsonValue(c.New)))))))));
        }

        properties.Add(("Warnings", new JArray(diff.Warnings.Select(w => (JValue)new JString(w)))));
        return JObject.Of(properties.ToArray());
    }

    /// <summary>The report as text: PCRs, sections, then the details of what differs.</summary>
    internal static void WriteText(TextWriter writer, EifDiffResult diff)
    {
        foreach (PcrDifference p in diff.Measurements)
        {
            string values = p.Status switch
            {
                DiffStatus.Same => Short(p.Old!),
                DiffStatus.Differs => $"{Short(p.Old!)} → {Short(p.New!)}",
                DiffStatus.Added => $"— → {Short(p.New!)}",
                DiffStatus.Removed => $"{Short(p.Old!)} → —",
                _ => string.Empty,
            };
            writer.WriteLine($"{p.Register}  {StatusText(p.Status),-8} {values}".TrimEnd());
        }

        writer.WriteLine("sections");
        foreach (SectionDifference s in diff.Sections)
        {
            string feeds = s.Registers.Count == 0 ? "(not measured)" : $"({string.Join(", ", s.Registers)})";
            writer.WriteLine($"  {s.Name,-11} {StatusText(s.Status),-9} {feeds}");
        }

        if (diff.Order is { } order)
            writer.WriteLine($"measured order: {string.Join(", ", order.Old)} → {string.Join(", ", order.New)}");
        if (diff.Kernel is { Old: { } oldKernel, New: { } newKernel })
            writer.WriteLine($"kernel: size {oldKernel.Size} → {newKernel.Size}, sha256 {Short(oldKernel.Sha256)} → {Short(newKernel.Sha256)}");
        if (diff.Cmdline is { } cmdline)
        {
            writer.WriteLine("cmdline");
            writer.WriteLine($"  - {Printable(cmdline.Old)}");
            writer.WriteLine($"  + {Printable(cmdline.New)}");
        }

        foreach (RamdiskDifference r in diff.Ramdisks)
            WriteRamdisk(writer, r);
        if (diff.Metadata is { } metadata)
            WriteMetadata(writer, metadata);
        foreach (string warning in diff.Warnings)
            writer.WriteLine($"warning: {warning}");
    }

    // A ramdisk name or link target (held Latin-1, one char per byte) for a terminal, escaped as `eif ls` escapes it.
    internal static string ReadableName(string latin1) => RamdiskFile.Display(latin1);

    // A ramdisk name or link target in JSON, as `eif ls --json` gives it: UTF-8 text, or escaped when the bytes are not UTF-8.
    internal static string JsonName(string latin1) => RamdiskFile.Utf8(latin1) ?? RamdiskFile.Display(latin1);

    // Text with its control characters escaped (\xNN), so that a value cannot break a line or drive the terminal.
    internal static string Printable(string text)
    {
        if (!text.Any(char.IsControl))
            return text;
        var sb = new StringBuilder(text.Length + 8);
        foreach (char c in text)
        {
            if (char.IsControl(c))
                sb.Append(CultureInfo.InvariantCulture, $"\\x{(int)c:x2}");
            else
                sb.Append(c);
        }

        return sb.ToString();
    }

    private static Argument<string> ExistingFile(string name, string description)
    {
        var argument = new Argument<string>(name) { Description = description };
        argument.Validators.Add(result =>
        {
            string? path = result.GetValueOrDefault<string>();
            if (path is null)
                return;
            if (Directory.Exists(path))
                result.AddError($"'{path}' is a directory, not a file.");
            else if (!System.IO.File.Exists(path))
                result.AddError($"'{path}': no such file.");
        });
        return argument;
    }

    private int Execute(ParseResult result)
    {
        string oldPath = result.GetValue(OldArgument)!;
        string newPath = result.GetValue(NewArgument)!;
        EifDiffResult diff;
        using (EifReader old = EifReader.Open(oldPath))
        using (EifReader @new = EifReader.Open(newPath))
            diff = EifDiff.Compare(old, @new);

        if (result.GetValue(JsonOption))
        {
            Output.WriteJson(_stdout, ToJson(diff));
        }
        else
        {
            WriteText(_stdout, diff);
            _stdout.Flush();
        }

        if (diff.MeasurementsEqual)
            return ExitCode.Success;
        _stderr.WriteLine($"eif: {oldPath} and {newPath} differ in {string.Join(", ", diff.DifferingRegisters)}");
        return ExitCode.VerificationFailed;
    }

    private static void WriteRamdisk(TextWriter writer, RamdiskDifference r)
    {
        if (r.Error is not null)
        {
            writer.WriteLine($"ramdisk {r.Number}: not compared file by file: {r.Error}");
            return;
        }

        if (r.Files.Count == 0)
        {
            // Same files, different bytes: the archive's compression or its layout.
            string how = r.OldCompression != r.NewCompression
                ? $"in compression, {Compression(r.OldCompression)} → {Compression(r.NewCompression)}"
                : "only in layout: entry order, inode numbers, which name of a hard link holds the data, padding";
            writer.WriteLine($"ramdisk {r.Number}: no file differs (the archives differ {how})");
            return;
        }

        int added = r.Files.Count(f => f.Kind == FileChangeKind.Added);
        int removed = r.Files.Count(f => f.Kind == FileChangeKind.Removed);
        int changed = r.Files.Count - added - removed;
        var counts = new List<string>();
        if (added > 0)
            counts.Add($"{added} added");
        if (removed > 0)
            counts.Add($"{removed} deleted");
        if (changed > 0)
            counts.Add($"{changed} changed");
        writer.WriteLine($"ramdisk {r.Number}: {string.Join(", ", counts)}");
        int column = Math.Min(MaxPathColumn, r.Files.Max(f => ReadableName(f.Path).Length));
        foreach (FileDifference f in r.Files)
        {
            (char mark, string what) = f.Kind switch
            {
                FileChangeKind.Added => ('A', Summary(f.New!)),
                FileChangeKind.Removed => ('D', Summary(f.Old!)),
                FileChangeKind.Content => ('M', Fields(f.Fields)),
                _ => ('m', Fields(f.Fields)),
            };
            writer.WriteLine($"  {mark} {ReadableName(f.Path).PadRight(column)}  {what}");
        }
    }

    private static void WriteMetadata(TextWriter writer, MetadataDifference metadata)
    {
        if (metadata.Error is not null)
        {
            writer.WriteLine($"metadata: {metadata.Error}");
            return;
        }

        if (metadata.Changes.Count == 0)
        {
            writer.WriteLine("metadata: no value differs (the JSON text differs only in layout)");
            return;
        }

        int added = metadata.Changes.Count(c => c.Kind == JsonChangeKind.Added);
        int removed = metadata.Changes.Count(c => c.Kind == JsonChangeKind.Removed);
        int changed = metadata.Changes.Count - added - removed;
        var counts = new List<string>();
        if (changed > 0)
            counts.Add($"{changed} changed");
        if (added > 0)
            counts.Add($"{added} added");
        if (removed > 0)
            counts.Add($"{removed} removed");
        writer.WriteLine($"metadata: {string.Join(", ", counts)}");
        int column = Math.Min(MaxPathColumn, metadata.Changes.Max(c => PathText(c.Path).Length));
        foreach (JsonChange c in metadata.Changes)
        {
            string line = c.Kind switch
            {
                JsonChangeKind.Added => $"+ {PathText(c.Path).PadRight(column)}  {Printable(c.New!)}",
                JsonChangeKind.Removed => $"- {PathText(c.Path).PadRight(column)}  {Printable(c.Old!)}",
                _ => $"~ {PathText(c.Path).PadRight(column)}  {Printable(c.Old!)} → {Printable(c.New!)}",
            };
            writer.WriteLine("  " + line);
        }
    }

    private static string PathText(string path) => path.Length == 0 ? "(whole document)" : Printable(path);

    // A file of an added or removed line: "file, 12 bytes, -rw-r--r--", "symlink → busybox", "char device 5:1, crw-------".
    private static string Summary(RamdiskFile file) => file.Kind switch
    {
        EifBuilder.Cpio.CpioKind.File => $"file, {file.Size} bytes, {file.ModeString}",
        EifBuilder.Cpio.CpioKind.Symlink => $"symlink → {ReadableName(file.LinkTarget ?? string.Empty)}",
        EifBuilder.Cpio.CpioKind.CharDevice or EifBuilder.Cpio.CpioKind.BlockDevice => $"{EifDiff.TypeName(file)} {file.RdevMajor}:{file.RdevMinor}, {file.ModeString}",
        _ => $"{EifDiff.TypeName(file)}, {file.ModeString}",
    };

    private static string Fields(IReadOnlyList<FieldChange> fields) =>
        string.Join(", ", fields.Select(f => f.Field == "content"
            ? $"content {Short(f.Old)} → {Short(f.New)}"
            : $"{f.Field} {ReadableName(f.Old)} → {ReadableName(f.New)}"));

    private static string Short(string hex) => hex.Length <= ShortHash ? hex : hex[..ShortHash] + "…";

    private static string StatusText(DiffStatus status) => status.ToString().ToLowerInvariant();

    private static JString Status(DiffStatus status) => new(StatusText(status));

    private static JValue OrNull(string? text) => text is null ? JNull.Instance : new JString(text);

    private static JValue Digest(SectionDigest? digest) => digest is null
        ? JNull.Instance
        : JObject.Of(("Index", JNumber.From((long)digest.Index)), ("Size", JNumber.From(digest.Size)), ("Sha256", new JString(digest.Sha256)));

    private static string Compression(EifBuilder.Cpio.RamdiskCompression? compression) =>
        compression?.ToString().ToLowerInvariant() ?? "unknown";

    private static JValue CompressionValue(EifBuilder.Cpio.RamdiskCompression? compression) =>
        compression is null ? JNull.Instance : new JString(Compression(compression));

    // A file of the listing in the shape `eif ls --json --long` prints it.
    private static JValue File(RamdiskFile? file) => file is null ? JNull.Instance : LsCommand.FileJson(file, hash: true);

    // A metadata value (compact JSON text from EifDiff) as a JSON value of the report.
    private static JValue JsonValue(string json) => SerdeJsonParser.Parse(Encoding.UTF8.GetBytes(json));
}

using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Nodes;
using EifBuilder.Cpio;
using EifFormat;

namespace EifBuilder.Inspect;

/// <summary>How one thing (a PCR, a section) compares between the old and the new image.</summary>
public enum DiffStatus
{
    /// <summary>Present in both, equal.</summary>
    Same,

    /// <summary>Present in both, different.</summary>
    Differs,

    /// <summary>Only in the new image.</summary>
    Added,

    /// <summary>Only in the old image.</summary>
    Removed,

    /// <summary>In neither (PCR8 of two unsigned images).</summary>
    Absent,
}

/// <summary>One register of both images.</summary>
/// <param name="Register">"PCR0", "PCR1", "PCR2" or "PCR8".</param>
/// <param name="Status">Same, Differs, Added, Removed or Absent.</param>
/// <param name="Old">The old image's value (lowercase hex), null when it has none.</param>
/// <param name="New">The new image's value, null when it has none.</param>
public sealed record PcrDifference(string Register, DiffStatus Status, string? Old, string? New);

/// <summary>One side of a section pair.</summary>
/// <param name="Index">Index in that file's section table.</param>
/// <param name="Size">Data length.</param>
/// <param name="Sha256">SHA-256 of the data, lowercase hex.</param>
public sealed record SectionDigest(int Index, long Size, string Sha256);

/// <summary>A pair of sections matched by type and order (kernel ↔ kernel, ramdisk N ↔ ramdisk N, …).</summary>
/// <param name="Name">"kernel", "cmdline", "ramdisk 1", "metadata", "signature".</param>
/// <param name="Type">The section type.</param>
/// <param name="Number">Its place among the sections of its type, from 0.</param>
/// <param name="Status">Same, Differs, Added or Removed.</param>
/// <param name="Old">The old image's section, null when added.</param>
/// <param name="New">The new image's section, null when removed.</param>
/// <param name="Registers">The PCRs this section feeds (empty for metadata).</param>
public sealed record SectionDifference(
    string Name, EifSectionType Type, int Number, DiffStatus Status, SectionDigest? Old, SectionDigest? New, IReadOnlyList<string> Registers);

/// <summary>The measured sections (kernel, cmdline, ramdisks) are in a different file order, which alone changes PCR0.</summary>
/// <param name="Old">The old image's measured sections in file order.</param>
/// <param name="New">The new image's.</param>
public sealed record OrderDifference(IReadOnlyList<string> Old, IReadOnlyList<string> New);

/// <summary>Both kernel command lines, when they differ.</summary>
/// <param name="Old">The old text (UTF-8 decoded; cut at <see cref="EifDiff.MaxCmdlineText"/> bytes, marked "…").</param>
/// <param name="New">The new text.</param>
public sealed record CmdlineDifference(string Old, string New);

/// <summary>What changed about a file.</summary>
public enum FileChangeKind
{
    /// <summary>Only in the new ramdisk.</summary>
    Added,

    /// <summary>Only in the old ramdisk.</summary>
    Removed,

    /// <summary>What the file is changed: its data, type, link target or device numbers (and maybe metadata too).</summary>
    Content,

    /// <summary>Only its metadata changed: mode, owner, group, mtime or link count.</summary>
    Metadata,
}

/// <summary>One differing attribute of a file, as text ("mode", "-rw-r--r--", "-rwxr-xr-x").</summary>
/// <param name="Field">type, content (SHA-256), size, target, device, mode, uid, gid, mtime or links.</param>
/// <param name="Old">The old value.</param>
/// <param name="New">The new value.</param>
public sealed record FieldChange(string Field, string Old, string New);

/// <summary>A file that differs between two ramdisks.</summary>
/// <param name="Path">The path, normalised as the kernel resolves it ("./bin/sh" and "bin/sh" are one file); Latin-1 as stored.</param>
/// <param name="Kind">Added, Removed, Content or Metadata.</param>
/// <param name="Old">The old listing entry, null when added.</param>
/// <param name="New">The new listing entry, null when removed.</param>
/// <param name="Fields">The attributes that differ (empty for added and removed files).</param>
public sealed record FileDifference(string Path, FileChangeKind Kind, RamdiskFile? Old, RamdiskFile? New, IReadOnlyList<FieldChange> Fields);

/// <summary>The file-level difference of a ramdisk pair whose bytes differ.</summary>
/// <param name="Number">The ramdisk's number (0 is the bootstrap ramdisk).</param>
/// <param name="OldCompression">How the old ramdisk is stored, null when it could not be read.</param>
/// <param name="NewCompression">How the new one is stored.</param>
/// <param name="Files">The differing files, sorted by path (ordinal).</param>
/// <param name="Error">Why the ramdisks could not be compared file by file (not a newc archive), else null.</param>
public sealed record RamdiskDifference(
    int Number, RamdiskCompression? OldCompression, RamdiskCompression? NewCompression, IReadOnlyList<FileDifference> Files, string? Error);

/// <summary>What happened at a JSON path.</summary>
public enum JsonChangeKind
{
    /// <summary>The value at the path differs.</summary>
    Changed,

    /// <summary>The key or array item exists only in the new document.</summary>
    Added,

    /// <summary>The key or array item exists only in the old document.</summary>
    Removed,
}

/// <summary>One difference between two JSON documents.</summary>
/// <param name="Path">Keys joined with '.', array items as [i], other keys as ["key"]; "" for the whole document.</param>
/// <param name="Kind">Changed, Added or Removed.</param>
/// <param name="Old">The old value as compact JSON, null when added.</param>
/// <param name="New">The new value as compact JSON, null when removed.</param>
public sealed record JsonChange(string Path, JsonChangeKind Kind, string? Old, string? New);

/// <summary>The difference between two metadata sections whose bytes differ.</summary>
/// <param name="Changes">Every differing path, in document order.</param>
/// <param name="Error">Why the documents could not be compared key by key, else null.</param>
public sealed record MetadataDifference(IReadOnlyList<JsonChange> Changes, string? Error);

/// <summary>Everything <c>eif diff</c> reports about two images.</summary>
/// <param name="Old">The old image's path.</param>
/// <param name="New">The new image's path.</param>
/// <param name="Measurements">PCR0, PCR1, PCR2 and PCR8, in that order.</param>
/// <param name="Sections">Every section pair: kernel, cmdline, ramdisks, metadata, signature.</param>
/// <param name="Order">Set when the measured sections are in a different order.</param>
/// <param name="Kernel">The kernel pair when it differs.</param>
/// <param name="Cmdline">Both command lines when they differ.</param>
/// <param name="Ramdisks">The file-level difference of every differing ramdisk pair.</param>
/// <param name="Metadata">The JSON difference when both images have metadata and it differs.</param>
/// <param name="Warnings">Things wrong with an input that do not stop the comparison (a CRC mismatch).</param>
public sealed record EifDiffResult(
    string Old, string New, IReadOnlyList<PcrDifference> Measurements, IReadOnlyList<SectionDifference> Sections, OrderDifference? Order,
    SectionDifference? Kernel, CmdlineDifference? Cmdline, IReadOnlyList<RamdiskDifference> Ramdisks, MetadataDifference? Metadata,
    IReadOnlyList<string> Warnings)
{
    /// <summary>
    /// True when everything an enclave is measured by is identical: PCR0, PCR1 and PCR2 equal, and PCR8 equal or absent
    /// from both. Metadata and signature bytes may still differ.
    /// </summary>
    public bool MeasurementsEqual => Measurements.All(p => p.Status is DiffStatus.Same or DiffStatus.Absent);

    /// <summary>The registers that differ (or exist in one image only), in order.</summary>
    public IReadOnlyList<string> DifferingRegisters =>
        Measurements.Where(p => p.Status is not (DiffStatus.Same or DiffStatus.Absent)).Select(p => p.Register).ToList();
}

/// <summary>
/// Compares two EIFs: their PCRs, their sections paired by type and order, and, where a ramdisk pair differs, the
/// files in them; the command line and kernel when they differ, and the metadata key by key. Answers "why did PCR2
/// change?". Every section is streamed; of a ramdisk only the listing (names, attributes, SHA-256 of each file) is
/// held in memory, never file data.
/// </summary>
public static class EifDiff
{
    /// <summary>The most of a command line shown (the kernel's own limit, COMMAND_LINE_SIZE, is 2048 on x86 and 4096 on arm64).</summary>
    public const int MaxCmdlineText = 64 << 10;

    // JSON nesting accepted in metadata: serde_json's recursion limit (128), which bounds what the reference could
    // have written, with room to spare; System.Text.Json's default of 64 would refuse some of it.
    private const int MaxJsonDepth = 256;

    private static readonly EifSectionType[] TypeOrder =
        [EifSectionType.Kernel, EifSectionType.Cmdline, EifSectionType.Ramdisk, EifSectionType.Metadata, EifSectionType.Signature];

    private static readonly JsonSerializerOptions CompactJson = new()
    {
        // Values are shown to people: keep non-ASCII text as it is (control characters are still escaped).
        Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    };

    /// <summary>Compares <paramref name="old"/> with <paramref name="new"/> (two readers, each read one section at a time).</summary>
    /// <exception cref="EifFormatException">A file changed under its reader.</exception>
    /// <exception cref="IOException">Reading failed.</exception>
    public static EifDiffResult Compare(EifReader old, EifReader @new, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(old);
        ArgumentNullException.ThrowIfNull(@new);
        var warnings = new List<string>();
        (EifMeasurements oldPcrs, SectionDigest[] oldDigests) = Measure(old, warnings, cancellationToken);
        (EifMeasurements newPcrs, SectionDigest[] newDigests) = Measure(@new, warnings, cancellationToken);
        var measurements = new List<PcrDifference>
        {
            Register("PCR0", oldPcrs.Pcr0, newPcrs.Pcr0),
            Register("PCR1", oldPcrs.Pcr1, newPcrs.Pcr1),
            Register("PCR2", oldPcrs.Pcr2, newPcrs.Pcr2),
            Register("PCR8", oldPcrs.Pcr8, newPcrs.Pcr8),
        };

        List<SectionDifference> sections = PairSections(old, oldDigests, @new, newDigests);

        SectionDifference? kernel = sections.FirstOrDefault(s => s.Type == EifSectionType.Kernel && s.Status == DiffStatus.Differs);
        CmdlineDifference? cmdline = sections.Any(s => s.Type == EifSectionType.Cmdline && s.Status == DiffStatus.Differs)
            ? new CmdlineDifference(ReadCmdline(old), ReadCmdline(@new))
            : null;

        var ramdisks = new List<RamdiskDifference>();
        var oldRamdisks = EifRamdisks.List(old);
        var newRamdisks = EifRamdisks.List(@new);
        foreach (var pair in sections.Where(s => s.Type == EifSectionType.Ramdisk && s.Status == DiffStatus.Differs))
        {
            cancellationToken.ThrowIfCancellationRequested();
            ramdisks.Add(CompareRamdisks(old, oldRamdisks[pair.Number], @new, newRamdisks[pair.Number], cancellationToken));
        }

        MetadataDifference? metadata = null;
        if (sections.Any(s => s.Type == EifSectionType.Metadata && s.Status == DiffStatus.Differs))
            metadata = CompareMetadata(old.MetadataBytes!.Value.Span, @new.MetadataBytes!.Value.Span);

        return new EifDiffResult(
            old.Path ?? "old", @new.Path ?? "new", measurements, sections, CompareOrder(old, @new), kernel, cmdline, ramdisks, metadata, warnings);
    }

    /// <summary>
    /// The file-level difference of two ramdisk listings (as <see cref="EifRamdisks.ListFiles"/> gives them): added, removed
    /// and changed files, sorted by path. Names are
    /// normalised as the kernel resolves them, and where a name repeats the last entry wins, as when the kernel unpacks
    /// the archive (init/initramfs.c replaces an existing file and re-applies a directory's owner and mode).
    /// </summary>
    public static List<FileDifference> CompareFiles(IEnumerable<RamdiskFile> old, IEnumerable<RamdiskFile> @new)
    {
        Dictionary<string, RamdiskFile> before = Index(old);
        Dictionary<string, RamdiskFile> after = Index(@new);
        return CompareIndexes(before, after);
    }

    /// <summary>The difference of two JSON documents, path by path, in document order (the old document's keys first).</summary>
    /// <exception cref="JsonException">A document is not valid JSON, is nested too deeply or repeats a key.</exception>
    public static List<JsonChange> CompareJson(ReadOnlySpan<byte> old, ReadOnlySpan<byte> @new)
    {
        var options = new JsonDocumentOptions { MaxDepth = MaxJsonDepth, AllowDuplicateProperties = false };
        JsonNode? a = JsonNode.Parse(old, documentOptions: options);
        JsonNode? b = JsonNode.Parse(@new, documentOptions: options);
        var changes = new List<JsonChange>();
        CompareNodes(a, b, string.Empty, changes);
        return changes;
    }

    /// <summary>A path as a JSON path segment after <paramref name="parent"/>: <c>.Key</c> for identifier-like keys, else <c>["key"]</c>.</summary>
    public static string JsonPath(string parent, string key)
    {
        bool plain = key.Length > 0 && !char.IsAsciiDigit(key[0]) && key.All(c => char.IsAsciiLetterOrDigit(c) || c is '_' or '-');
        if (plain)
            return parent.Length == 0 ? key : parent + "." + key;
        return parent + "[" + JsonSerializer.Serialize(key, CompactJson) + "]";
    }

    /// <summary>The PCRs each section type feeds (spec §6.1; ramdisk 0 is the bootstrap ramdisk).</summary>
    public static IReadOnlyList<string> RegistersOf(EifSectionType type, int number) => type switch
    {
        EifSectionType.Kernel or EifSectionType.Cmdline => ["PCR0", "PCR1"],
        EifSectionType.Ramdisk => number == 0 ? ["PCR0", "PCR1"] : ["PCR0", "PCR2"],
        // Only the first certificate of entry 0 is measured (spec §6.2), but the section is where it lives.
        EifSectionType.Signature => ["PCR8"],
        _ => [],
    };

    // The PCRs and the SHA-256 of every section, in one streaming pass over the file.
    private static (EifMeasurements Measurements, SectionDigest[] Sections) Measure(EifReader reader, List<string> warnings, CancellationToken cancellationToken)
    {
        EifDigests digests = reader.ComputeDigests(hashSections: true, cancellationToken);

        // A CRC mismatch says the file was damaged after it was written; the PCRs are still those of its bytes, so the
        // comparison goes on and the mismatch is reported beside it.
        if (digests.ChecksumError is { } error)
            warnings.Add(reader.Path is { } path ? error.WithPath(path).Message : error.Message);
        SectionDigest[] sections = reader.Sections
            .Select(s => new SectionDigest(s.Index, s.Size, Convert.ToHexStringLower(digests.SectionSha256![s.Index])))
            .ToArray();
        return (digests.Measurements, sections);
    }

    private static PcrDifference Register(string name, byte[]? old, byte[]? @new) => (old, @new) switch
    {
        (null, null) => new(name, DiffStatus.Absent, null, null),
        (null, _) => new(name, DiffStatus.Added, null, Pcr.ToHex(@new)),
        (_, null) => new(name, DiffStatus.Removed, Pcr.ToHex(old), null),
        _ => new(name, old.AsSpan().SequenceEqual(@new) ? DiffStatus.Same : DiffStatus.Differs, Pcr.ToHex(old), Pcr.ToHex(@new)),
    };

    // Pairs sections by type and, within a type, by order: the Nth ramdisk of one image with the Nth of the other.
    private static List<SectionDifference> PairSections(EifReader old, SectionDigest[] oldDigests, EifReader @new, SectionDigest[] newDigests)
    {
        var pairs = new List<SectionDifference>();
        foreach (EifSectionType type in TypeOrder)
        {
            var before = old.Sections.Where(s => s.Type == type).ToList();
            var after = @new.Sections.Where(s => s.Type == type).ToList();
            for (int n = 0; n < Math.Max(before.Count, after.Count); n++)
            {
                SectionDigest? a = n < before.Count ? oldDigests[before[n].Index] : null;
                SectionDigest? b = n < after.Count ? newDigests[after[n].Index] : null;
                DiffStatus status = (a, b) switch
                {
                    (null, _) => DiffStatus.Added,
                    (_, null) => DiffStatus.Removed,
                    _ => a.Size == b.Size && a.Sha256 == b.Sha256 ? DiffStatus.Same : DiffStatus.Differs,
                };
                pairs.Add(new SectionDifference(SectionName(type, n), type, n, status, a, b, RegistersOf(type, n)));
            }
        }

        return pairs;
    }

    private static string SectionName(EifSectionType type, int number) => type switch
    {
        EifSectionType.Ramdisk => $"ramdisk {number}",
        _ => EifSectionTypes.Name(type).ToLowerInvariant(),
    };

    // PCR0 hashes the measured sections in file order without framing (spec §6.1), so the same sections in another
    // order give another PCR0 although every pair is the same.
    private static OrderDifference? CompareOrder(EifReader old, EifReader @new)
    {
        List<string> Measured(EifReader reader)
        {
            int ramdisks = 0;
            return reader.Sections
                .Where(s => s.Type is EifSectionType.Kernel or EifSectionType.Cmdline or EifSectionType.Ramdisk)
                .Select(s => s.Type == EifSectionType.Ramdisk ? SectionName(s.Type, ramdisks++) : SectionName(s.Type, 0))
                .ToList();
        }

        List<string> a = Measured(old), b = Measured(@new);
        var common = a.Intersect(b).ToList();
        return a.Where(common.Contains).SequenceEqual(b.Where(common.Contains)) ? null : new OrderDifference(a, b);
    }

    private static string ReadCmdline(EifReader reader)
    {
        EifSection section = reader.FindSection(EifSectionType.Cmdline)!.Value;
        int length = (int)Math.Min(section.Size, MaxCmdlineText);
        byte[] bytes = new byte[length];
        using (Stream data = reader.OpenSection(section.Index))
            data.ReadExactly(bytes);
        string text = Encoding.UTF8.GetString(bytes);
        return section.Size > MaxCmdlineText ? text + "…" : text;
    }

    private static RamdiskDifference CompareRamdisks(EifReader old, RamdiskSection oldRamdisk, EifReader @new, RamdiskSection newRamdisk, CancellationToken cancellationToken)
    {
        // A ramdisk need not be a cpio archive for the EIF to be valid (the format measures bytes); when one is not,
        // the section-level answer stands and the reason is reported instead of failing the whole diff.
        try
        {
            var (before, oldCompression) = Listing(old, oldRamdisk, cancellationToken);
            var (after, newCompression) = Listing(@new, newRamdisk, cancellationToken);
            return new RamdiskDifference(oldRamdisk.Number, oldCompression, newCompression, CompareIndexes(before, after), null);
        }
        catch (EnclaveBuildException ex) when (ex.Error == BuildError.InvalidRamdisk)
        {
            return new RamdiskDifference(oldRamdisk.Number, null, null, [], ex.Message);
        }
    }

    // The listing as `eif ls` sees it (hard-link groups resolved, so that which name of a group carries the data does
    // not read as a change), indexed by normalised name.
    private static (Dictionary<string, RamdiskFile> Files, RamdiskCompression Compression) Listing(EifReader reader, RamdiskSection ramdisk, CancellationToken cancellationToken)
    {
        RamdiskCompression compression = EifRamdisks.CompressionOf(reader, ramdisk);
        cancellationToken.ThrowIfCancellationRequested();
        return (Index(EifRamdisks.ListFiles(reader, ramdisk, hash: true)), compression);
    }

    private static Dictionary<string, RamdiskFile> Index(IEnumerable<RamdiskFile> files)
    {
        var index = new Dictionary<string, RamdiskFile>(StringComparer.Ordinal);
        foreach (RamdiskFile file in files)
            index[Normalise(file.Name)] = file;
        return index;
    }

    // The kernel's initramfs unpacker creates each name relative to the root it unpacks into, so "bin/sh", "./bin/sh"
    // and "/bin/sh" are one file, as are "bin/" and "bin"; the archive's own root entry is ".".
    private static string Normalise(string name)
    {
        string path = name;
        while (true)
        {
            if (path.StartsWith("./", StringComparison.Ordinal))
                path = path[2..];
            else if (path.StartsWith('/'))
                path = path[1..];
            else
                break;
        }

        path = path.TrimEnd('/');
        return path.Length == 0 || path == "." ? "." : path;
    }

    private static List<FileDifference> CompareIndexes(Dictionary<string, RamdiskFile> before, Dictionary<string, RamdiskFile> after)
    {
        var changes = new List<FileDifference>();
        foreach (var (path, a) in before)
        {
            if (!after.TryGetValue(path, out RamdiskFile? b))
            {
                changes.Add(new FileDifference(path, FileChangeKind.Removed, a, null, []));
                continue;
            }

            var fields = CompareFile(a, b, out bool content);
            if (fields.Count > 0)
                changes.Add(new FileDifference(path, content ? FileChangeKind.Content : FileChangeKind.Metadata, a, b, fields));
        }

        foreach (var (path, b) in after)
        {
            if (!before.ContainsKey(path))
                changes.Add(new FileDifference(path, FileChangeKind.Added, null, b, []));
        }

        changes.Sort((x, y) => string.CompareOrdinal(x.Path, y.Path));
        return changes;
    }

    // The inode number is not compared: writers number inodes in archive order, so one added file renumbers every later
    // one, and the number carries nothing the unpacked file keeps (only hard-link grouping, which the link count shows).
    private static List<FieldChange> CompareFile(RamdiskFile a, RamdiskFile b, out bool content)
    {
        var fields = new List<FieldChange>();
        void Add(string field, string old, string @new)
        {
            if (old != @new)
                fields.Add(new FieldChange(field, old, @new));
        }

        bool sameType = (a.RawMode & 0xF000) == (b.RawMode & 0xF000);
        Add("type", TypeName(a), TypeName(b));
        if (sameType)
        {
            switch (a.Kind)
            {
                case CpioKind.File:
                    Add("content", a.Sha256 is null ? string.Empty : Convert.ToHexStringLower(a.Sha256), b.Sha256 is null ? string.Empty : Convert.ToHexStringLower(b.Sha256));
                    Add("size", Number(a.Size), Number(b.Size));
                    break;
                case CpioKind.Symlink:
                    Add("target", a.LinkTarget ?? string.Empty, b.LinkTarget ?? string.Empty);
                    break;
                case CpioKind.CharDevice or CpioKind.BlockDevice:
                    Add("device", $"{a.RdevMajor}:{a.RdevMinor}", $"{b.RdevMajor}:{b.RdevMinor}");
                    break;
            }
        }

        content = fields.Count > 0;
        Add("mode", a.ModeString, b.ModeString);
        Add("uid", Number(a.Uid), Number(b.Uid));
        Add("gid", Number(a.Gid), Number(b.Gid));
        Add("mtime", Time(a.ModTime), Time(b.ModTime));

        // A directory's c_nlink is the writer's convention (2), not a property of the unpacked tree.
        if (a.Kind != CpioKind.Directory && b.Kind != CpioKind.Directory)
            Add("links", Number(a.LinkCount), Number(b.LinkCount));
        return fields;
    }

    /// <summary>A file type in words, as <c>eif ls</c> names it: file, directory, symlink, char-device, block-device, fifo, unknown.</summary>
    public static string TypeName(RamdiskFile file) =>
        file.Kind is null ? $"unknown (mode {Convert.ToString((long)file.RawMode, 8)})" : EifRamdisks.TypeName(file.Kind);

    private static string Number(long value) => value.ToString(CultureInfo.InvariantCulture);

    private static string Time(long unixSeconds) =>
        DateTimeOffset.FromUnixTimeSeconds(unixSeconds).UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", CultureInfo.InvariantCulture);

    private static MetadataDifference CompareMetadata(ReadOnlySpan<byte> old, ReadOnlySpan<byte> @new)
    {
        // Both sections already parsed as metadata when the readers opened them; what can still fail here is what
        // serde_json tolerates and System.Text.Json does not (a repeated key in a nested object, where serde keeps the
        // last), and that is reported rather than guessed at.
        try
        {
            return new MetadataDifference(CompareJson(old, @new), null);
        }
        catch (JsonException ex)
        {
            return new MetadataDifference([], $"the metadata cannot be compared key by key: {ex.Message}");
        }
    }

    private static void CompareNodes(JsonNode? a, JsonNode? b, string path, List<JsonChange> changes)
    {
        if (a is JsonObject objectA && b is JsonObject objectB)
        {
            foreach (var (key, valueA) in objectA)
            {
                string child = JsonPath(path, key);
                if (objectB.TryGetPropertyValue(key, out JsonNode? valueB))
                    CompareNodes(valueA, valueB, child, changes);
                else
                    changes.Add(new JsonChange(child, JsonChangeKind.Removed, Text(valueA), null));
            }

            foreach (var (key, valueB) in objectB)
            {
                if (!objectA.ContainsKey(key))
                    changes.Add(new JsonChange(JsonPath(path, key), JsonChangeKind.Added, null, Text(valueB)));
            }
        }
        else if (a is JsonArray arrayA && b is JsonArray arrayB)
        {
            // Item by item, by position: a path names a position, so an item inserted in the middle shows as every later
            // item changed, as in other JSON path diffs.
            for (int i = 0; i < Math.Max(arrayA.Count, arrayB.Count); i++)
            {
                string child = $"{path}[{i}]";
                if (i >= arrayB.Count)
                    changes.Add(new JsonChange(child, JsonChangeKind.Removed, Text(arrayA[i]), null));
                else if (i >= arrayA.Count)
                    changes.Add(new JsonChange(child, JsonChangeKind.Added, null, Text(arrayB[i])));
                else
                    CompareNodes(arrayA[i], arrayB[i], child, changes);
            }
        }
        else if (!JsonNode.DeepEquals(a, b))
        {
            changes.Add(new JsonChange(path, JsonChangeKind.Changed, Text(a), Text(b)));
        }
    }

    private static string Text(JsonNode? node) => node is null ? "null" : node.ToJsonString(CompactJson);
}

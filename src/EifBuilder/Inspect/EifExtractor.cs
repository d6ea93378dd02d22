using System.Globalization;
using System.Security.Cryptography;
using EifBuilder.Cpio;
using EifFormat;
using EifFormat.Json;

namespace EifBuilder.Inspect;

/// <summary>One section written to a file.</summary>
/// <param name="Path">The file.</param>
/// <param name="Section">The section it holds.</param>
/// <param name="Ramdisk">For a ramdisk, which one.</param>
/// <param name="Compression">For a ramdisk, how it is stored (the file's extension says so too).</param>
/// <param name="Size">Bytes written (the section's size).</param>
/// <param name="Sha256">SHA-256 of what was written.</param>
public sealed record ExtractedFile(string Path, EifSection Section, RamdiskSection? Ramdisk, RamdiskCompression? Compression, long Size, byte[] Sha256);

/// <summary>A ramdisk unpacked into a folder, with its manifest.</summary>
/// <param name="Ramdisk">Which ramdisk.</param>
/// <param name="Path">The folder.</param>
/// <param name="ManifestPath">The JSON manifest next to it.</param>
/// <param name="Entries">Every entry and what was done with it.</param>
/// <param name="CreatedDevices">Whether device nodes and FIFOs were made.</param>
/// <param name="PreservedOwnership">Whether owners and set-uid/set-gid bits were kept.</param>
public sealed record ExtractedTree(RamdiskSection Ramdisk, string Path, string ManifestPath, IReadOnlyList<UnpackedEntry> Entries, bool CreatedDevices, bool PreservedOwnership);

/// <summary>What an extraction wrote.</summary>
/// <param name="OutputDirectory">The folder written into.</param>
/// <param name="Files">The section files, in section order.</param>
/// <param name="Trees">The unpacked ramdisks.</param>
public sealed record ExtractResult(string OutputDirectory, IReadOnlyList<ExtractedFile> Files, IReadOnlyList<ExtractedTree> Trees);

/// <summary>
/// <c>eif extract</c>'s library half: writes an EIF's sections to files in a folder (<c>kernel</c>, <c>cmdline</c>,
/// <c>metadata.json</c>, <c>signature.cbor</c>, <c>ramdisk-N.cpio[.gz|.zst]</c>), and optionally unpacks ramdisks
/// (<see cref="RamdiskUnpacker"/>) into <c>ramdisk-N/</c> with a <c>ramdisk-N.manifest.json</c>. Nothing in the folder
/// is ever replaced: every target name is checked before anything is written, and every output is written under a
/// temporary name, then renamed with RENAME_NOREPLACE once all of them are complete. On any failure the temporary
/// names are removed (and outputs already renamed are taken back), so an extraction writes everything or nothing.
/// </summary>
public static class EifExtractor
{
    private const int BufferSize = 64 << 10;

    /// <summary>The file name a section is written to.</summary>
    public static string FileName(EifReader reader, EifSection section)
    {
        ArgumentNullException.ThrowIfNull(reader);
        return section.Type switch
        {
            EifSectionType.Kernel => "kernel", // a bzImage (x86_64) or an arm64 Image: the header's arch says which
            EifSectionType.Cmdline => "cmdline",
            EifSectionType.Metadata => "metadata.json",
            EifSectionType.Signature => "signature.cbor",
            EifSectionType.Ramdisk => RamdiskFileName(reader, RamdiskOf(reader, section)),
            _ => $"section-{section.Index}",
        };
    }

    /// <summary>The folder a ramdisk is unpacked into.</summary>
    public static string TreeName(RamdiskSection ramdisk) => $"ramdisk-{ramdisk.Number}";

    /// <summary>The manifest written next to an unpacked ramdisk.</summary>
    public static string ManifestName(RamdiskSection ramdisk) => $"ramdisk-{ramdisk.Number}.manifest.json";

    /// <summary>
    /// Writes <paramref name="sections"/> (section order, each once) into <paramref name="outputDirectory"/>,
    /// created if missing; with <paramref name="unpack"/>, also unpacks the ramdisks among them.
    /// </summary>
    /// <exception cref="IOException">A target name exists in the folder (nothing is written), or writing failed (nothing is left).</exception>
    /// <exception cref="EnclaveBuildException">A ramdisk to unpack is malformed or unsafe (nothing is left).</exception>
    /// <exception cref="EifFormatException">The EIF is unreadable.</exception>
    public static ExtractResult Extract(EifReader reader, IEnumerable<EifSection> sections, string outputDirectory, bool unpack, RamdiskUnpackOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(reader);
        ArgumentNullException.ThrowIfNull(sections);
        string folder = Path.TrimEndingDirectorySeparator(Path.GetFullPath(outputDirectory));
        List<EifSection> selected = sections.DistinctBy(s => s.Index).OrderBy(s => s.Index).ToList();

        // Every name this extraction will take, checked before anything is written (lstat: a dangling symlink counts).
        var targets = new List<string>();
        foreach (EifSection section in selected)
        {
            targets.Add(FileName(reader, section));
            if (unpack && section.Type == EifSectionType.Ramdisk)
            {
                RamdiskSection ramdisk = RamdiskOf(reader, section);
                targets.Add(TreeName(ramdisk));
                targets.Add(ManifestName(ramdisk));
            }
        }

        bool created = !Directory.Exists(folder);
        if (!created)
        {
            foreach (string name in targets)
            {
                string target = Path.Combine(folder, name);
                if (Posix.Lstat(Posix.PathBytes(target), target) is not null)
                    throw new IOException($"{target} already exists: extract never replaces anything (nothing was written)");
            }
        }

        Directory.CreateDirectory(folder);
        var staged = new List<IStaged>();
        var files = new List<ExtractedFile>();
        var trees = new List<ExtractedTree>();
        try
        {
            foreach (EifSection section in selected)
            {
                RamdiskSection? ramdisk = section.Type == EifSectionType.Ramdisk ? RamdiskOf(reader, section) : null;
                RamdiskCompression? compression = ramdisk is null ? null : EifRamdisks.CompressionOf(reader, ramdisk);
                string target = Path.Combine(folder, FileName(reader, section));
                (StagedFile file, long size, byte[] sha) = StageSection(reader, section, target);
                staged.Add(file);
                files.Add(new ExtractedFile(target, section, ramdisk, compression, size, sha));
                if (unpack && ramdisk is not null)
                {
                    string source = EifRamdisks.Describe(reader, ramdisk);
                    RamdiskUnpack tree;
                    using (var cpio = new CpioReader(reader.OpenSection(section.Index), source))
                        tree = RamdiskUnpacker.Stage(cpio, source, Path.Combine(folder, TreeName(ramdisk)), options);
                    staged.Add(new StagedTree(tree));
                    var result = new ExtractedTree(ramdisk, tree.Destination, Path.Combine(folder, ManifestName(ramdisk)), tree.Entries, tree.CreatedDevices, tree.PreservedOwnership);
                    byte[] manifest = System.Text.Encoding.UTF8.GetBytes(Manifest(reader, result, compression!.Value).ToPrettyString() + "\n");
                    staged.Add(StageBytes(result.ManifestPath, manifest));
                    trees.Add(result);
                }
            }

            Commit(staged);
        }
        catch
        {
            foreach (IStaged item in staged)
                item.Discard();
            if (created)
                TryRemoveEmptyFolder(folder);
            throw;
        }

        return new ExtractResult(folder, files, trees);
    }

    /// <summary>
    /// The manifest of an unpacked ramdisk: where it came from, what the unpacker was allowed to do, and every entry
    /// (name, type, mode as octal text, owner, size, mtime, link target, device numbers, inode and link count, the
    /// SHA-256 of a file's data) with what was done (created, updated, replaced, recorded, skipped) and why.
    /// </summary>
    public static JObject Manifest(EifReader reader, ExtractedTree tree, RamdiskCompression compression)
    {
        ArgumentNullException.ThrowIfNull(reader);
        ArgumentNullException.ThrowIfNull(tree);
        var counts = Enum.GetValues<UnpackAction>().Select(a => (a.ToString(), (JValue)JNumber.From((long)tree.Entries.Count(e => e.Action == a))));
        return JObject.Of(
            ("Eif", new JString(reader.Path ?? string.Empty)),
            ("Ramdisk", JNumber.From((long)tree.Ramdisk.Number)),
            ("Section", JNumber.From((long)tree.Ramdisk.Section.Index)),
            ("Compression", new JString(compression.ToString().ToLowerInvariant())),
            ("Root", new JString(Path.GetFileName(tree.Path))),
            ("CreatedDevices", JBool.From(tree.CreatedDevices)),
            ("PreservedOwnership", JBool.From(tree.PreservedOwnership)),
            ("Counts", JObject.Of(counts.ToArray())),
            ("Entries", new JArray(tree.Entries.Select(e => (JValue)EntryJson(e)))));
    }

    /// <summary>One manifest entry: names as UTF-8 text, or escaped with <c>NameHex</c> holding the exact bytes when they are not UTF-8 (as <c>eif ls --json</c>).</summary>
    public static JObject EntryJson(UnpackedEntry entry)
    {
        ArgumentNullException.ThrowIfNull(entry);
        RamdiskFile file = entry.File;
        var properties = new List<(string, JValue)>
        {
            ("Index", JNumber.From((long)entry.Index)),
            ("Offset", JNumber.From(entry.Offset)),
            ("Name", new JString(Text(file.Name))),
        };
        if (RamdiskFile.Utf8(file.Name) is null)
            properties.Add(("NameHex", new JString(Convert.ToHexString(System.Text.Encoding.Latin1.GetBytes(file.Name)).ToLowerInvariant())));
        properties.Add(("Path", entry.Path is null ? JNull.Instance : new JString(Text(entry.Path))));
        properties.Add(("Type", new JString(EifRamdisks.TypeName(file.Kind))));
        properties.Add(("Mode", new JString(Convert.ToString(file.Permissions, 8).PadLeft(4, '0'))));
        properties.Add(("Uid", JNumber.From((long)file.Uid)));
        properties.Add(("Gid", JNumber.From((long)file.Gid)));
        properties.Add(("Size", JNumber.From(file.Size)));
        properties.Add(("MTime", new JString(DateTimeOffset.FromUnixTimeSeconds(file.ModTime).ToString("yyyy-MM-ddTHH:mm:ssZ", CultureInfo.InvariantCulture))));
        if (file.LinkTarget is { } target)
            properties.Add(("LinkTarget", new JString(Text(target))));
        if (file.Kind is CpioKind.CharDevice or CpioKind.BlockDevice)
            properties.Add(("Device", new JString($"{file.RdevMajor}:{file.RdevMinor}")));
        properties.Add(("Inode", JNumber.From((long)file.Inode)));
        properties.Add(("LinkCount", JNumber.From((long)file.LinkCount)));
        if (entry.HardLinkTo is { } linked)
            properties.Add(("HardLinkTo", new JString(Text(linked))));
        if (file.Sha256 is { } sha)
            properties.Add(("Sha256", new JString(Convert.ToHexString(sha).ToLowerInvariant())));
        properties.Add(("Action", new JString(entry.Action.ToString().ToLowerInvariant())));
        if (entry.Reason is { } reason)
            properties.Add(("Reason", new JString(reason)));
        return JObject.Of(properties.ToArray());
    }

    private static string Text(string raw) => RamdiskFile.Utf8(raw) ?? RamdiskFile.Display(raw);

    private static RamdiskSection RamdiskOf(EifReader reader, EifSection section) =>
        EifRamdisks.List(reader).Single(r => r.Section.Index == section.Index);

    private static string RamdiskFileName(EifReader reader, RamdiskSection ramdisk) => EifRamdisks.CompressionOf(reader, ramdisk) switch
    {
        RamdiskCompression.Gzip => $"ramdisk-{ramdisk.Number}.cpio.gz",
        RamdiskCompression.Zstd => $"ramdisk-{ramdisk.Number}.cpio.zst",
        _ => $"ramdisk-{ramdisk.Number}.cpio",
    };

    // Streams a section to a temporary name next to its target, 64 KiB at a time, hashing it on the way.
    private static (StagedFile File, long Size, byte[] Sha256) StageSection(EifReader reader, EifSection section, string target)
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        long size = 0;
        StagedFile file = StageWith(target, output =>
        {
            using Stream data = reader.OpenSection(section.Index);
            byte[] buffer = new byte[BufferSize];
            int n;
            while ((n = data.Read(buffer, 0, buffer.Length)) > 0)
            {
                hash.AppendData(buffer, 0, n);
                output.Write(buffer, 0, n);
                size += n;
            }
        });
        if (size != section.Size)
        {
            file.Discard();
            throw new IOException($"{reader.Path}: section {section.Index} ended after {size} of its {section.Size} bytes (the file changed while it was read)");
        }

        return (file, size, hash.GetHashAndReset());
    }

    private static StagedFile StageBytes(string target, byte[] bytes) => StageWith(target, output => output.Write(bytes));

    private static StagedFile StageWith(string target, Action<Stream> write)
    {
        string temporary = TemporaryName(target);
        try
        {
            using (var output = new FileStream(temporary, FileMode.CreateNew, FileAccess.Write, FileShare.None, bufferSize: 1))
            {
                write(output);
                output.Flush(flushToDisk: true);
            }
        }
        catch
        {
            TryDelete(temporary);
            throw;
        }

        return new StagedFile(temporary, target);
    }

    // Renames every output into place; if one fails, those already renamed go back to their temporary names (to be
    // removed by the caller's Discard), so that the folder is as it was.
    private static void Commit(List<IStaged> staged)
    {
        int done = 0;
        try
        {
            for (; done < staged.Count; done++)
                staged[done].Commit();
        }
        catch
        {
            for (int i = done - 1; i >= 0; i--)
            {
                try
                {
                    staged[i].Revert();
                }
                catch (IOException)
                {
                    // Reported by the original failure; nothing better can be done with this one.
                }
            }

            throw;
        }
    }

    private static string TemporaryName(string target) =>
        Path.Combine(Path.GetDirectoryName(target)!, $".{Path.GetFileName(target)}.tmp-{Convert.ToHexString(RandomNumberGenerator.GetBytes(4)).ToLowerInvariant()}");

    private static void TryDelete(string path)
    {
        try
        {
            File.Delete(path);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            // The original failure is what matters; the leftover is named .NAME.tmp-XXXXXXXX so it is recognisable.
        }
    }

    private static void TryRemoveEmptyFolder(string folder)
    {
        try
        {
            if (!Directory.EnumerateFileSystemEntries(folder).Any())
                Directory.Delete(folder);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            // As above.
        }
    }

    /// <summary>An output written under a temporary name, waiting to be renamed into place.</summary>
    private interface IStaged
    {
        void Commit();

        void Revert();

        void Discard();
    }

    private sealed class StagedFile(string temporary, string target) : IStaged
    {
        private bool _committed;

        public void Commit()
        {
            Posix.RenameNoReplace(temporary, target);
            _committed = true;
        }

        public void Revert()
        {
            if (!_committed)
                return;
            Posix.RenameNoReplace(target, temporary);
            _committed = false;
        }

        public void Discard()
        {
            if (!_committed)
                TryDelete(temporary);
        }
    }

    private sealed class StagedTree(RamdiskUnpack unpack) : IStaged
    {
        public void Commit() => unpack.Commit();

        public void Revert() => unpack.Revert();

        public void Discard() => unpack.Dispose();
    }
}

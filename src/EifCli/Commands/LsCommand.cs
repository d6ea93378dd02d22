using System.CommandLine;
using System.Globalization;
using EifBuilder.Cpio;
using EifBuilder.Inspect;
using EifFormat;
using EifFormat.Json;

namespace EifCli;

/// <summary>
/// <c>eif ls</c>: the files inside an EIF's ramdisks (plain, gzip or zstd newc archives, concatenated ones too), as
/// <c>tar -tv</c> lists a tarball: type and mode, owner, size (or device numbers), mtime, name and link target; with
/// <c>--long</c> also the SHA-256 of each file's data, the inode and the link count. Ramdisks are read as streams,
/// one entry at a time.
/// </summary>
internal sealed class LsCommand : Command
{
    private readonly TextWriter _stdout;

    internal LsCommand(TextWriter stdout)
        : base("ls", "List the files inside an EIF's ramdisks (mode, owner, size, mtime, link target; SHA-256 with --long).")
    {
        _stdout = stdout;
        Options.Add(EifPathOption);
        Options.Add(SectionOption);
        Options.Add(RamdiskOption);
        Options.Add(LongOption);
        Options.Add(JsonOption);
        Validators.Add(result =>
        {
            if (result.GetResult(SectionOption) is not null && result.GetResult(RamdiskOption) is not null)
                result.AddError("Give at most one of --section and --ramdisk.");
        });
        SetAction(result => Execute(result));
    }

    internal Option<string> EifPathOption { get; } = EifCli.Options.ExistingFile("--eif-path", "The EIF.");

    internal Option<int?> SectionOption { get; } = new("--section") { Description = "Only the ramdisk at this section index (describe-eif's Sections Index).", HelpName = "N" };

    internal Option<int?> RamdiskOption { get; } = new("--ramdisk") { Description = "Only this ramdisk, counting the EIF's ramdisks from 0 (0: the bootstrap ramdisk).", HelpName = "N" };

    internal Option<bool> LongOption { get; } = new("--long") { Description = "Also the SHA-256 of each file, its inode and link count." };

    internal Option<bool> JsonOption { get; } = new("--json") { Description = "Print JSON instead of text." };

    private int Execute(ParseResult result)
    {
        string path = result.GetValue(EifPathOption)!;
        bool hash = result.GetValue(LongOption);
        using EifReader reader = EifReader.Open(path);
        IReadOnlyList<RamdiskSection> ramdisks = Select(reader, path, result.GetValue(SectionOption), result.GetValue(RamdiskOption));
        if (result.GetValue(JsonOption))
        {
            Output.WriteJson(_stdout, new JArray(ramdisks.Select(r => (JValue)RamdiskJson(reader, r, hash))));
            return ExitCode.Success;
        }

        bool first = true;
        foreach (RamdiskSection ramdisk in ramdisks)
        {
            if (!first)
                _stdout.WriteLine();
            first = false;
            RamdiskCompression compression = EifRamdisks.CompressionOf(reader, ramdisk);
            _stdout.WriteLine($"ramdisk {ramdisk.Number} (section {ramdisk.Section.Index}, {ramdisk.Section.Size} bytes{(compression == RamdiskCompression.None ? string.Empty : ", " + compression.ToString().ToLowerInvariant())}):");
            foreach (RamdiskFile file in hash ? EifRamdisks.ListFiles(reader, ramdisk, hash) : EifRamdisks.Files(reader, ramdisk, hash))
                _stdout.WriteLine(Line(file, hash));
        }

        _stdout.Flush();
        return ExitCode.Success;
    }

    // The ramdisks asked for, or every one.
    private static IReadOnlyList<RamdiskSection> Select(EifReader reader, string path, int? section, int? number)
    {
        IReadOnlyList<RamdiskSection> all = EifRamdisks.List(reader);
        if (section is { } index)
        {
            if (index < 0 || index >= reader.Sections.Count)
                throw new CliException(ExitCode.Usage, $"{path}: --section {index}: the EIF has sections 0 to {reader.Sections.Count - 1}");
            return all.Where(r => r.Section.Index == index).ToList() is { Count: 1 } one ? one
                : throw new CliException(ExitCode.Usage, $"{path}: --section {index} is the {EifSectionTypes.Name(reader.Sections[index].Type)} section, not a ramdisk (ramdisks: sections {string.Join(", ", all.Select(r => r.Section.Index))})");
        }

        if (number is { } n)
        {
            return n >= 0 && n < all.Count ? [all[n]]
                : throw new CliException(ExitCode.Usage, $"{path}: --ramdisk {n}: the EIF has {all.Count} ramdisk{(all.Count == 1 ? string.Empty : "s")} (0 to {all.Count - 1})");
        }

        return all;
    }

    // "-rwxr-xr-x 0/0     1234 2000-01-01 00:00 rootfs/bin/busybox", tar -tv's columns.
    private static string Line(RamdiskFile file, bool hash)
    {
        string size = file.Kind is CpioKind.CharDevice or CpioKind.BlockDevice
            ? $"{file.RdevMajor},{file.RdevMinor}"
            : file.Size.ToString(CultureInfo.InvariantCulture);
        string line = $"{file.ModeString} {file.Uid}/{file.Gid} {size,10} {Time(file.ModTime):yyyy-MM-dd HH:mm} {file.DisplayName}";
        if (file.DisplayLinkTarget is { } target)
            line += $" -> {target}";
        if (hash)
        {
            line += $"  ino {file.Inode} nlink {file.LinkCount}";
            if (file.Sha256 is { } sha)
                line += $" sha256 {Convert.ToHexString(sha).ToLowerInvariant()}";
        }

        return line;
    }

    private static DateTimeOffset Time(long seconds) => DateTimeOffset.FromUnixTimeSeconds(seconds);

    private static JObject RamdiskJson(EifReader reader, RamdiskSection ramdisk, bool hash)
    {
        RamdiskCompression compression = EifRamdisks.CompressionOf(reader, ramdisk);
        var files = new List<JValue>();
        foreach (RamdiskFile file in EifRamdisks.ListFiles(reader, ramdisk, hash))
            files.Add(FileJson(file, hash));
        return JObject.Of(
            ("Ramdisk", JNumber.From((long)ramdisk.Number)),
            ("Section", JNumber.From((long)ramdisk.Section.Index)),
            ("Offset", JNumber.From(ramdisk.Section.Offset)),
            ("Size", JNumber.From(ramdisk.Section.Size)),
            ("Compression", new JString(compression.ToString().ToLowerInvariant())),
            ("Files", new JArray(files)));
    }

    /// <summary>One file as JSON: names as UTF-8 text, or escaped with <c>NameHex</c> holding the exact bytes when they are not UTF-8.</summary>
    internal static JObject FileJson(RamdiskFile file, bool hash)
    {
        var properties = new List<(string, JValue)> { ("Name", new JString(file.Utf8Name ?? file.DisplayName)) };
        if (file.Utf8Name is null)
            properties.Add(("NameHex", new JString(Convert.ToHexString(file.NameBytes).ToLowerInvariant())));
        properties.Add(("Type", new JString(EifRamdisks.TypeName(file.Kind))));
        properties.Add(("Mode", new JString(Convert.ToString(file.Permissions, 8).PadLeft(4, '0'))));
        properties.Add(("Uid", JNumber.From((long)file.Uid)));
        properties.Add(("Gid", JNumber.From((long)file.Gid)));
        properties.Add(("Size", JNumber.From(file.Size)));
        properties.Add(("MTime", new JString(Time(file.ModTime).ToString("yyyy-MM-ddTHH:mm:ssZ", CultureInfo.InvariantCulture))));
        if (file.LinkTarget is { } target)
            properties.Add(("LinkTarget", new JString(RamdiskFile.Utf8(target) ?? RamdiskFile.Display(target))));
        if (file.Kind is CpioKind.CharDevice or CpioKind.BlockDevice)
            properties.Add(("Device", new JString($"{file.RdevMajor}:{file.RdevMinor}")));
        if (hash)
        {
            properties.Add(("Inode", JNumber.From((long)file.Inode)));
            properties.Add(("LinkCount", JNumber.From((long)file.LinkCount)));
            if (file.Sha256 is { } sha)
                properties.Add(("Sha256", new JString(Convert.ToHexString(sha).ToLowerInvariant())));
        }

        return JObject.Of(properties.ToArray());
    }
}

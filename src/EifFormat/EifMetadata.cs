using System.Globalization;
using EifFormat.Json;

namespace EifFormat;

/// <summary>The <c>BuildMetadata</c> object (<c>EifBuildInfo</c>, src/defs/mod.rs), keys in struct order.</summary>
/// <param name="BuildTime">RFC 3339 text, stored verbatim.</param>
/// <param name="BuildTool">The tool that built the image.</param>
/// <param name="BuildToolVersion">Its version.</param>
/// <param name="OperatingSystem">The kernel's OS name (e.g. "Linux").</param>
/// <param name="KernelVersion">The kernel version (e.g. "6.12.48").</param>
public sealed record EifBuildInfo(
    string BuildTime, string BuildTool, string BuildToolVersion, string OperatingSystem, string KernelVersion);

/// <summary>
/// The metadata section (type 5): <c>EifIdentityInfo</c> of src/defs/mod.rs, serialised exactly as the reference
/// does (spec §5.4) so that an EIF built from the same inputs is byte-identical.
/// </summary>
/// <param name="ImageName">Image name.</param>
/// <param name="ImageVersion">Image version.</param>
/// <param name="BuildMetadata">Build information.</param>
/// <param name="DockerInfo">The <c>docker image inspect</c> object, or <see cref="JNull"/>.</param>
/// <param name="CustomMetadata">Any JSON value given by the user, or <see cref="JNull"/>.</param>
public sealed record EifMetadata(
    string ImageName, string ImageVersion, EifBuildInfo BuildMetadata, JValue DockerInfo, JValue CustomMetadata)
{
    // serde derive order of EifIdentityInfo and EifBuildInfo; every key is required by the reference reader.
    private static readonly string[] TopLevelKeys = ["ImageName", "ImageVersion", "BuildMetadata", "DockerInfo", "CustomMetadata"];
    private static readonly string[] BuildKeys = ["BuildTime", "BuildTool", "BuildToolVersion", "OperatingSystem", "KernelVersion"];

    /// <summary>The section bytes: compact JSON, struct key order, nested values as parsed (keys sorted).</summary>
    public byte[] ToJsonBytes() => ToJson().ToCompactUtf8();

    /// <summary>The metadata as a JSON object in the reference's key order.</summary>
    public JObject ToJson() => JObject.Of(
        ("ImageName", new JString(ImageName)),
        ("ImageVersion", new JString(ImageVersion)),
        ("BuildMetadata", JObject.Of(
            ("BuildTime", new JString(BuildMetadata.BuildTime)),
            ("BuildTool", new JString(BuildMetadata.BuildTool)),
            ("BuildToolVersion", new JString(BuildMetadata.BuildToolVersion)),
            ("OperatingSystem", new JString(BuildMetadata.OperatingSystem)),
            ("KernelVersion", new JString(BuildMetadata.KernelVersion)))),
        ("DockerInfo", DockerInfo),
        ("CustomMetadata", CustomMetadata));

    /// <summary>
    /// Parses a metadata section as the reference reader does: the literal <c>null</c> means "no metadata";
    /// otherwise an object holding all ten keys (extra keys ignored, a repeated key is an error).
    /// </summary>
    /// <exception cref="EifFormatException"><see cref="EifFormatError.InvalidMetadata"/> or <see cref="EifFormatError.MissingMetadataKey"/>.</exception>
    public static EifMetadata? Parse(ReadOnlySpan<byte> utf8)
    {
        // Only an object or null can be metadata: say so before building a tree of anything else (a large array
        // would cost memory in proportion to its length for nothing).
        ReadOnlySpan<byte> start = utf8.TrimStart(" \t\r\n"u8);
        if (!start.IsEmpty && start[0] != (byte)'{' && start[0] != (byte)'n')
            throw Throw.InvalidMetadata($"the metadata section is not a JSON object (it starts with '{PrintableText.Of(((char)start[0]).ToString(), 1)}')");
        JValue root;
        try
        {
            root = SerdeJsonParser.Parse(utf8);
        }
        catch (FormatException ex)
        {
            throw Throw.InvalidMetadata($"the metadata section is not valid JSON ({ex.Message})", ex);
        }

        if (root is JNull)
            return null;
        if (root is not JObject top)
            throw Throw.InvalidMetadata("the metadata section is not a JSON object");
        if (top["BuildMetadata"] is { } build && build is not JObject)
            throw Throw.InvalidMetadata("metadata key 'BuildMetadata' is not an object");
        var buildObject = top["BuildMetadata"] as JObject;
        foreach (string key in TopLevelKeys)
        {
            if (top[key] is null)
                throw Throw.MissingMetadataKey(key);
        }

        foreach (string key in BuildKeys)
        {
            if (buildObject![key] is null)
                throw Throw.MissingMetadataKey("BuildMetadata." + key);
        }

        return new EifMetadata(
            RequireString(top, "ImageName"),
            RequireString(top, "ImageVersion"),
            new EifBuildInfo(
                RequireString(buildObject!, "BuildTime", "BuildMetadata."),
                RequireString(buildObject!, "BuildTool", "BuildMetadata."),
                RequireString(buildObject!, "BuildToolVersion", "BuildMetadata."),
                RequireString(buildObject!, "OperatingSystem", "BuildMetadata."),
                RequireString(buildObject!, "KernelVersion", "BuildMetadata.")),
            top["DockerInfo"]!,
            top["CustomMetadata"]!);
    }

    /// <summary>
    /// Reads a custom metadata file as the reference does (<c>parse_custom_metadata</c>, src/utils/identity.rs):
    /// a regular file of at most 4096 bytes holding any one JSON value.
    /// </summary>
    /// <exception cref="EifFormatException"><see cref="EifFormatError.InvalidCustomMetadata"/>.</exception>
    /// <exception cref="IOException">The file cannot be read.</exception>
    public static JValue ReadCustomMetadataFile(string path)
    {
        var info = new FileInfo(path);
        if (!info.Exists)
        {
            if (Directory.Exists(path))
                throw Throw.InvalidCustomMetadata(path, "is a directory, not a file");
            throw new FileNotFoundException($"{path}: no such file", path);
        }

        if (info.Length > EifConstants.MaxCustomMetadataSize)
            throw Throw.InvalidCustomMetadata(path, $"is {info.Length} bytes; custom metadata is limited to {EifConstants.MaxCustomMetadataSize} bytes");

        // Read at most one byte past the limit, so a file that grew after the check is still caught.
        byte[] bytes = new byte[EifConstants.MaxCustomMetadataSize + 1];
        int length;
        using (var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1, FileOptions.None))
            length = stream.ReadAtLeast(bytes, bytes.Length, throwOnEndOfStream: false);
        if (length > EifConstants.MaxCustomMetadataSize)
            throw Throw.InvalidCustomMetadata(path, $"is more than {EifConstants.MaxCustomMetadataSize} bytes; custom metadata is limited to {EifConstants.MaxCustomMetadataSize} bytes");
        try
        {
            return SerdeJsonParser.Parse(bytes.AsSpan(0, length));
        }
        catch (FormatException ex)
        {
            throw Throw.InvalidCustomMetadata(path, $"is not valid JSON ({ex.Message})", ex);
        }
    }

    /// <summary>
    /// The (OperatingSystem, KernelVersion) the reference derives from a kernel <c>.config</c>
    /// (<c>generate_build_info</c>, src/utils/identity.rs): the third line, e.g.
    /// <c># Linux/x86_64 4.14.256-209.484.amzn2.x86_64 Kernel Configuration</c>, split on ' ', '/' and '-';
    /// token 1 is the OS and token 3 the version, "Unknown" where a token is missing.
    /// </summary>
    /// <exception cref="EifFormatException"><see cref="EifFormatError.InvalidKernelConfig"/>: fewer than three lines.</exception>
    public static (string OperatingSystem, string KernelVersion) ReadKernelConfig(string path)
    {
        string? third = null;
        using (var reader = new StreamReader(path, System.Text.Encoding.UTF8, detectEncodingFromByteOrderMarks: false))
        {
            for (int i = 0; i < 3; i++)
            {
                third = reader.ReadLine();
                if (third is null)
                    break;
            }
        }

        // The reference unwraps the third line and panics without it; a clear error is better.
        if (third is null)
            throw new EifFormatException(EifFormatError.InvalidKernelConfig, $"{path}: a kernel config needs at least 3 lines (line 3 names the kernel, e.g. '# Linux/x86_64 6.12.48 Kernel Configuration')");
        string[] tokens = third.Split([' ', '/', '-']);
        const string Unknown = "Unknown"; // UNKNOWN_IMG_STR
        return (tokens.Length > 1 ? tokens[1] : Unknown, tokens.Length > 3 ? tokens[3] : Unknown);
    }

    /// <summary>
    /// The current time as chrono's <c>Utc::now().to_rfc3339()</c> prints it: offset <c>+00:00</c> and 0, 3, 6
    /// or 9 fraction digits (the fewest that keep the value), e.g. <c>2024-07-09T17:16:38.424202400+00:00</c>.
    /// </summary>
    public static string FormatBuildTime(DateTimeOffset time)
    {
        DateTime utc = time.UtcDateTime;
        long nanos = (utc.Ticks % TimeSpan.TicksPerSecond) * 100;
        string fraction = nanos == 0 ? string.Empty
            : nanos % 1_000_000 == 0 ? "." + (nanos / 1_000_000).ToString("D3", CultureInfo.InvariantCulture)
            : nanos % 1_000 == 0 ? "." + (nanos / 1_000).ToString("D6", CultureInfo.InvariantCulture)
            : "." + nanos.ToString("D9", CultureInfo.InvariantCulture);
        return utc.ToString("yyyy-MM-dd'T'HH:mm:ss", CultureInfo.InvariantCulture) + fraction + "+00:00";
    }

    /// <summary>
    /// The default build time: <c>SOURCE_DATE_EPOCH</c> when set (reproducible-builds.org), else now.
    /// </summary>
    /// <exception cref="EifFormatException"><see cref="EifFormatError.InvalidBuildTime"/>: the variable is not a count of seconds.</exception>
    public static string DefaultBuildTime(string? sourceDateEpoch, DateTimeOffset now)
    {
        if (string.IsNullOrEmpty(sourceDateEpoch))
            return FormatBuildTime(now);
        if (!long.TryParse(sourceDateEpoch, NumberStyles.None, CultureInfo.InvariantCulture, out long seconds)
            || seconds > DateTimeOffset.MaxValue.ToUnixTimeSeconds())
        {
            throw new EifFormatException(EifFormatError.InvalidBuildTime, $"SOURCE_DATE_EPOCH '{sourceDateEpoch}' is not a number of seconds since 1970-01-01");
        }

        return FormatBuildTime(DateTimeOffset.FromUnixTimeSeconds(seconds));
    }

    /// <summary>Checks that <paramref name="text"/> is an RFC 3339 date-time (it is stored verbatim).</summary>
    /// <exception cref="EifFormatException"><see cref="EifFormatError.InvalidBuildTime"/>.</exception>
    public static string ValidateBuildTime(string text)
    {
        // RFC 3339 §5.6: full-date "T" full-time, with a "Z" or ±hh:mm offset; 't'/'z' and ' ' are allowed too.
        var m = System.Text.RegularExpressions.Regex.Match(
            text,
            @"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|[+-](\d{2}):(\d{2}))$",
            System.Text.RegularExpressions.RegexOptions.CultureInvariant);
        bool valid = m.Success
            && int.Parse(m.Groups[2].ValueSpan, CultureInfo.InvariantCulture) is >= 1 and <= 12
            && int.Parse(m.Groups[3].ValueSpan, CultureInfo.InvariantCulture) is >= 1 and <= 31
            && int.Parse(m.Groups[4].ValueSpan, CultureInfo.InvariantCulture) <= 23
            && int.Parse(m.Groups[5].ValueSpan, CultureInfo.InvariantCulture) <= 59
            && int.Parse(m.Groups[6].ValueSpan, CultureInfo.InvariantCulture) <= 60
            && (!m.Groups[9].Success || int.Parse(m.Groups[9].ValueSpan, CultureInfo.InvariantCulture) <= 23)
            && (!m.Groups[10].Success || int.Parse(m.Groups[10].ValueSpan, CultureInfo.InvariantCulture) <= 59)
            && int.Parse(m.Groups[3].ValueSpan, CultureInfo.InvariantCulture) <= DateTime.DaysInMonth(
                Math.Max(1, int.Parse(m.Groups[1].ValueSpan, CultureInfo.InvariantCulture)),
                int.Parse(m.Groups[2].ValueSpan, CultureInfo.InvariantCulture));
        if (!valid)
            throw new EifFormatException(EifFormatError.InvalidBuildTime, $"build time '{text}' is not an RFC 3339 date-time such as 2024-01-01T00:00:00+00:00");
        return text;
    }

    private static string RequireString(JObject o, string key, string prefix = "") =>
        o[key] is JString s ? s.Value : throw Throw.InvalidMetadata($"metadata key '{prefix}{key}' is not a string");
}

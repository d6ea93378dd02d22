using System.Text.Json;
using EifFormat.Json;

namespace EifBuilder.Images;

/// <summary>
/// The parts of an image config the builder uses (OCI image-spec config.md; Docker's image JSON is a superset):
/// architecture and OS, the run settings (Entrypoint, Cmd, Env, WorkingDir, User) and the layers' diff_ids.
/// </summary>
public sealed class ImageConfig
{
    /// <summary>The largest config this builder reads (a config is a few KiB; a hostile one must not cost memory).</summary>
    public const int MaxSize = 8 << 20;

    private ImageConfig()
    {
    }

    /// <summary>"amd64", "arm64", … (Go's GOARCH names).</summary>
    public string Architecture { get; private init; } = string.Empty;

    /// <summary>"linux".</summary>
    public string Os { get; private init; } = string.Empty;

    /// <summary>ENTRYPOINT, or null.</summary>
    public IReadOnlyList<string>? Entrypoint { get; private init; }

    /// <summary>CMD, or null.</summary>
    public IReadOnlyList<string>? Cmd { get; private init; }

    /// <summary>ENV entries, "NAME=value".</summary>
    public IReadOnlyList<string> Env { get; private init; } = [];

    /// <summary>WORKDIR, or empty.</summary>
    public string WorkingDir { get; private init; } = string.Empty;

    /// <summary>USER, or empty.</summary>
    public string User { get; private init; } = string.Empty;

    /// <summary>The uncompressed layer digests, bottom first.</summary>
    public IReadOnlyList<Digest> DiffIds { get; private init; } = [];

    /// <summary>The whole config as JSON (for DockerInfo).</summary>
    public JValue Json { get; private init; } = JNull.Instance;

    /// <summary>Parses a config blob.</summary>
    /// <exception cref="EnclaveBuildException"><see cref="BuildError.InvalidImage"/>.</exception>
    public static ImageConfig Parse(byte[] bytes, string what)
    {
        if (bytes.Length > MaxSize)
            throw Invalid(what, $"is {bytes.Length} bytes, more than the {MaxSize} read");
        JValue json;
        try
        {
            json = SerdeJsonParser.Parse(bytes);
        }
        catch (FormatException ex)
        {
            throw Invalid(what, $"is not JSON ({ex.Message})", ex);
        }

        if (json is not JObject root)
            throw Invalid(what, "is not a JSON object");
        var config = root["config"] as JObject ?? root["Config"] as JObject;
        var rootfs = root["rootfs"] as JObject;
        if (rootfs?["diff_ids"] is not JArray diffIds)
            throw Invalid(what, "has no rootfs.diff_ids");
        return new ImageConfig
        {
            Architecture = (root["architecture"] as JString)?.Value ?? string.Empty,
            Os = (root["os"] as JString)?.Value ?? string.Empty,
            Entrypoint = Strings(config?["Entrypoint"], "config.Entrypoint", what),
            Cmd = Strings(config?["Cmd"], "config.Cmd", what),
            Env = Strings(config?["Env"], "config.Env", what) ?? [],
            WorkingDir = (config?["WorkingDir"] as JString)?.Value ?? string.Empty,
            User = (config?["User"] as JString)?.Value ?? string.Empty,
            DiffIds = diffIds.Items.Select((d, i) => Digest.Parse((d as JString)?.Value ?? string.Empty, $"{what} rootfs.diff_ids[{i}]")).ToList(),
            Json = root,
        };
    }

    /// <summary>Go's architecture name for an EIF architecture name (x86_64 → amd64, aarch64 → arm64).</summary>
    public static string GoArchitecture(string eifArchitecture) => eifArchitecture switch
    {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        _ => throw new ArgumentOutOfRangeException(nameof(eifArchitecture), eifArchitecture, "x86_64 or aarch64"),
    };

    private static IReadOnlyList<string>? Strings(JValue? value, string field, string what) => value switch
    {
        null or JNull => null,
        JArray a => a.Items.Select(i => (i as JString)?.Value ?? throw Invalid(what, $"'{field}' holds a non-string")).ToList(),
        _ => throw Invalid(what, $"'{field}' is not an array of strings"),
    };

    private static EnclaveBuildException Invalid(string what, string detail, Exception? inner = null) =>
        new(BuildError.InvalidImage, $"{what}: the image config {detail}", inner);
}

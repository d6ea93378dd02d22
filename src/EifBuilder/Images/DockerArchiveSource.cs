using System.Text.RegularExpressions;
using EifFormat.Json;

namespace EifBuilder.Images;

/// <summary>
/// A <c>docker save</c> tarball (<c>docker-archive:FILE[:REF]</c>): manifest.json names each image's config and
/// layer files (Docker's legacy layout, <c>ID/layer.tar</c>, or the OCI blobs of Docker ≥ 25). Read in place: an
/// uncompressed layer is never copied.
/// </summary>
public sealed partial class DockerArchiveSource : IImageSource
{
    private readonly string _archive;
    private readonly string? _reference;

    /// <summary>Creates the source.</summary>
    /// <exception cref="EnclaveBuildException"><see cref="BuildError.ImageNotFound"/>: no such file.</exception>
    public DockerArchiveSource(string archive, string? reference)
    {
        if (!File.Exists(archive))
            throw new EnclaveBuildException(BuildError.ImageNotFound, $"docker-archive:{archive}: no such file");
        _archive = archive;
        _reference = reference;
    }

    /// <summary>Called by the daemon source, which saves the image to a temporary archive first.</summary>
    internal string Description { get; init; } = string.Empty;

    /// <inheritdoc/>
    public ResolvedImage Resolve(string architecture, CancellationToken cancellationToken)
    {
        string description = Description.Length > 0 ? Description : $"docker-archive:{_archive}{(_reference is null ? string.Empty : ":" + _reference)}";
        var files = new TarFileSet(_archive);
        if (!files.Exists("manifest.json"))
            throw new EnclaveBuildException(BuildError.InvalidImage, $"{description}: no manifest.json: not a docker save archive");
        JValue parsed;
        try
        {
            parsed = SerdeJsonParser.Parse(files.ReadSmall("manifest.json", OciLayoutSource.MaxManifestSize));
        }
        catch (FormatException ex)
        {
            throw new EnclaveBuildException(BuildError.InvalidImage, $"{description}: manifest.json is not JSON ({ex.Message})", ex);
        }

        var images = (parsed as JArray)?.Items.OfType<JObject>().ToList()
            ?? throw new EnclaveBuildException(BuildError.InvalidImage, $"{description}: manifest.json is not an array");
        JObject image = Choose(images, description);
        string configPath = (image["Config"] as JString)?.Value ?? throw new EnclaveBuildException(BuildError.InvalidImage, $"{description}: manifest.json has no 'Config'");
        byte[] config = files.ReadSmall(configPath, ImageConfig.MaxSize);
        Digest configDigest = Digest.Sha256Of(config);

        // The file name is the config's digest in both layouts ("HEX.json", "blobs/sha256/HEX"): check it.
        if (DigestInName(configPath) is { } named)
            named.Verify(config, $"{description}: config '{configPath}'");

        var layers = new List<LayerBlob>();
        foreach (var (item, i) in ((image["Layers"] as JArray)?.Items ?? []).Select((l, i) => (l, i)))
        {
            string path = (item as JString)?.Value ?? throw new EnclaveBuildException(BuildError.InvalidImage, $"{description}: manifest.json Layers[{i}] is not a string");
            if (!files.Exists(path))
                throw new EnclaveBuildException(BuildError.InvalidImage, $"{description}: layer {i} '{path}' is not in the archive");
            FileRange range = files.Range(path);
            Digest? digest = DigestInName(path);
            layers.Add(new LayerBlob($"{description} layer {i} ({path})", digest, null, range.Length, () => files.Open(path), range));
        }

        string? reference = _reference ?? ((image["RepoTags"] as JArray)?.Items.FirstOrDefault() as JString)?.Value;
        return new ResolvedImage(description, reference, config, configDigest, layers);
    }

    /// <inheritdoc/>
    public void Dispose()
    {
    }

    private JObject Choose(List<JObject> images, string description)
    {
        IEnumerable<string> TagsOf(JObject i) => ((i["RepoTags"] as JArray)?.Items ?? []).OfType<JString>().Select(t => t.Value);
        if (_reference is not null)
        {
            var wanted = ReferenceForms(_reference).ToHashSet(StringComparer.Ordinal);
            return images.FirstOrDefault(i => TagsOf(i).Any(t => ReferenceForms(t).Any(wanted.Contains)))
                ?? throw new EnclaveBuildException(BuildError.ImageNotFound, $"{description}: no image tagged '{_reference}' (tags: {string.Join(", ", images.SelectMany(TagsOf))})");
        }

        return images.Count switch
        {
            1 => images[0],
            0 => throw new EnclaveBuildException(BuildError.ImageNotFound, $"{description}: the archive holds no image"),
            _ => throw new EnclaveBuildException(BuildError.InvalidReference, $"{description}: the archive holds {images.Count} images; name one with :REF (tags: {string.Join(", ", images.SelectMany(TagsOf))})"),
        };
    }

    // "busybox", "busybox:latest", "docker.io/library/busybox:latest" name the same image.
    internal static IEnumerable<string> ReferenceForms(string reference)
    {
        string withTag = reference.Contains('@', StringComparison.Ordinal) || LastSegmentHasTag(reference) ? reference : reference + ":latest";
        yield return withTag;
        if (withTag.StartsWith("docker.io/library/", StringComparison.Ordinal))
            yield return withTag["docker.io/library/".Length..];
        else if (withTag.StartsWith("docker.io/", StringComparison.Ordinal))
            yield return withTag["docker.io/".Length..];
        else if (!withTag.Split('/')[0].Contains('.', StringComparison.Ordinal) && !withTag.Split('/')[0].Contains(':', StringComparison.Ordinal))
            yield return (withTag.Contains('/', StringComparison.Ordinal) ? "docker.io/" : "docker.io/library/") + withTag;
    }

    private static bool LastSegmentHasTag(string reference) => reference[(reference.LastIndexOf('/') + 1)..].Contains(':', StringComparison.Ordinal);

    private static Digest? DigestInName(string path)
    {
        var m = DigestFileName().Match(path);
        return m.Success ? new Digest(m.Groups[1].Success && m.Groups[1].Value.Length > 0 ? m.Groups[1].Value : "sha256", m.Groups[2].Value) : null;
    }

    [GeneratedRegex(@"^(?:blobs/(sha256|sha512)/)?([0-9a-f]{64}|[0-9a-f]{128})(?:\.json)?$")]
    private static partial Regex DigestFileName();
}

using EifFormat.Json;

namespace EifBuilder.Images;

/// <summary>
/// An OCI image layout (OCI image-spec image-layout.md), as a directory (<c>oci:DIR[:TAG]</c>) or a tar of one
/// (<c>oci-archive:FILE[:TAG]</c>): index.json → (index →) manifest → config and layers, every blob checked
/// against its digest and size.
/// </summary>
public sealed class OciLayoutSource : IImageSource
{
    // The tag annotation skopeo, buildah and docker write into index.json (OCI annotations.md).
    private const string RefNameAnnotation = "org.opencontainers.image.ref.name";

    /// <summary>Largest manifest or index read (the distribution spec's 4 MiB manifest limit).</summary>
    internal const int MaxManifestSize = 4 << 20;

    private readonly IFileSet _files;
    private readonly string? _tag;
    private readonly string _description;

    private OciLayoutSource(IFileSet files, string? tag, string description)
    {
        _files = files;
        _tag = tag;
        _description = description;
    }

    /// <summary>A layout directory.</summary>
    /// <exception cref="EnclaveBuildException"><see cref="BuildError.ImageNotFound"/>: no such directory.</exception>
    public static OciLayoutSource FromDirectory(string directory, string? tag)
    {
        if (!Directory.Exists(directory))
            throw new EnclaveBuildException(BuildError.ImageNotFound, $"oci:{directory}: no such directory");
        return new OciLayoutSource(new DirectoryFileSet(directory), tag, $"oci:{directory}{(tag is null ? string.Empty : ":" + tag)}");
    }

    /// <summary>A tar of a layout.</summary>
    /// <exception cref="EnclaveBuildException"><see cref="BuildError.ImageNotFound"/> or <see cref="BuildError.InvalidImage"/>.</exception>
    public static OciLayoutSource FromArchive(string archive, string? tag)
    {
        if (!File.Exists(archive))
            throw new EnclaveBuildException(BuildError.ImageNotFound, $"oci-archive:{archive}: no such file");
        return new OciLayoutSource(new TarFileSet(archive), tag, $"oci-archive:{archive}{(tag is null ? string.Empty : ":" + tag)}");
    }

    /// <inheritdoc/>
    public ResolvedImage Resolve(string architecture, CancellationToken cancellationToken)
    {
        if (!_files.Exists("index.json"))
            throw new EnclaveBuildException(BuildError.InvalidImage, $"{_description}: no index.json: not an OCI image layout");
        var index = ParseObject(_files.ReadSmall("index.json", MaxManifestSize), "index.json");
        var manifests = (index["manifests"] as JArray)?.Items.OfType<JObject>().ToList()
            ?? throw new EnclaveBuildException(BuildError.InvalidImage, $"{_description}: index.json has no 'manifests'");
        JObject chosen = Choose(manifests);
        JObject manifest = ResolveManifest(chosen, architecture, depth: 0);
        var configDescriptor = manifest["config"] as JObject ?? throw Invalid("the manifest has no 'config'");
        Digest configDigest = OciDescriptors.DigestOf(configDescriptor, _description, "the config");
        byte[] config = ReadBlob(configDigest, OciDescriptors.SizeOf(configDescriptor), ImageConfig.MaxSize, "the config");
        var layers = new List<LayerBlob>();
        var descriptors = OciDescriptors.Layers(manifest, _description);
        for (int i = 0; i < descriptors.Count; i++)
        {
            var (layer, mediaType, digest) = descriptors[i];
            string path = BlobPath(digest);
            if (!_files.Exists(path))
                throw Invalid($"layer {i} ({digest}) is missing from the layout");
            FileRange range = _files.Range(path);
            long? size = OciDescriptors.SizeOf(layer);
            if (size is not null && size != range.Length)
                throw new EnclaveBuildException(BuildError.DigestMismatch, $"{_description}: layer {i} ({digest}) is {range.Length} bytes, its descriptor says {size}");
            layers.Add(new LayerBlob($"{_description} layer {i} ({digest})", digest, mediaType, range.Length, () => _files.Open(path), range));
        }

        string? reference = (chosen["annotations"] as JObject)?[RefNameAnnotation] is JString r ? r.Value : _tag;
        return new ResolvedImage(_description, reference, config, configDigest, layers);
    }

    /// <inheritdoc/>
    public void Dispose()
    {
    }

    private JObject Choose(List<JObject> manifests)
    {
        string? TagOf(JObject m) => ((m["annotations"] as JObject)?[RefNameAnnotation] as JString)?.Value;
        if (_tag is not null)
        {
            var tagged = manifests.Where(m => TagOf(m) == _tag).ToList();
            if (tagged.Count == 0)
            {
                string known = string.Join(", ", manifests.Select(TagOf).Where(t => t is not null));
                throw new EnclaveBuildException(BuildError.ImageNotFound, $"{_description}: no image tagged '{_tag}' (tags: {(known.Length == 0 ? "none" : known)})");
            }

            return tagged[0];
        }

        return manifests.Count switch
        {
            1 => manifests[0],
            0 => throw new EnclaveBuildException(BuildError.ImageNotFound, $"{_description}: the layout holds no image"),
            _ => throw new EnclaveBuildException(BuildError.InvalidReference, $"{_description}: the layout holds {manifests.Count} images; name one with :TAG (tags: {string.Join(", ", manifests.Select(TagOf).Where(t => t is not null))})"),
        };
    }

    // A descriptor → its manifest; an index or manifest list → the manifest for linux/architecture.
    private JObject ResolveManifest(JObject descriptor, string architecture, int depth)
    {
        string mediaType = (descriptor["mediaType"] as JString)?.Value ?? string.Empty;
        Digest digest = OciDescriptors.DigestOf(descriptor, _description, "a manifest");
        JObject document = ParseObject(ReadBlob(digest, OciDescriptors.SizeOf(descriptor), MaxManifestSize, $"manifest {digest}"), $"manifest {digest}");
        mediaType = mediaType.Length > 0 ? mediaType : (document["mediaType"] as JString)?.Value ?? string.Empty;
        if (mediaType is MediaTypes.OciIndex or MediaTypes.DockerManifestList)
        {
            if (depth > 2)
                throw Invalid("image indexes nest too deep");
            return ResolveManifest(OciDescriptors.ChoosePlatform(document, architecture, _description), architecture, depth + 1);
        }

        if (mediaType is not (MediaTypes.OciManifest or MediaTypes.DockerManifest))
            throw new EnclaveBuildException(BuildError.UnsupportedMediaType, $"{_description}: manifest media type '{mediaType}' is not an OCI or Docker v2 image manifest");
        return document;
    }

    private byte[] ReadBlob(Digest digest, long? size, int max, string what)
    {
        string path = BlobPath(digest);
        byte[] bytes = _files.ReadSmall(path, max);
        if (size is not null && size != bytes.Length)
            throw new EnclaveBuildException(BuildError.DigestMismatch, $"{_description}: {what} is {bytes.Length} bytes, its descriptor says {size}");
        digest.Verify(bytes, $"{_description}: {what}");
        return bytes;
    }

    private static string BlobPath(Digest digest) => $"blobs/{digest.Algorithm}/{digest.Hex}";

    private JObject ParseObject(byte[] bytes, string what)
    {
        try
        {
            return SerdeJsonParser.Parse(bytes) as JObject ?? throw Invalid($"{what} is not a JSON object");
        }
        catch (FormatException ex)
        {
            throw new EnclaveBuildException(BuildError.InvalidImage, $"{_description}: {what} is not JSON ({ex.Message})", ex);
        }
    }

    private EnclaveBuildException Invalid(string detail) => new(BuildError.InvalidImage, $"{_description}: {detail}");
}

using System.Security.Cryptography;
using EifFormat.Json;

namespace EifBuilder.Images;

/// <summary>
/// Images in a registry, pulled without a daemon (<c>docker://HOST/REPO[:TAG|@DIGEST]</c>) over the OCI
/// distribution API (opencontainers/distribution-spec <c>spec.md</c>, "Pulling manifests" and "Pulling blobs"):
/// the manifest (an image index or Docker manifest list is resolved to linux/ARCH), the config and the layers,
/// each checked against its digest and size. Layers are downloaded, one at a time when the builder opens them, into
/// temporary files removed on <see cref="Dispose"/>; a compressed one is removed as soon as it has been read.
/// </summary>
public sealed class RegistrySource : IImageSource
{
    // What a manifest GET accepts (distribution-spec "Pulling manifests"; Docker's image manifest v2 schema 2).
    private static readonly string[] ManifestTypes = [MediaTypes.OciIndex, MediaTypes.OciManifest, MediaTypes.DockerManifestList, MediaTypes.DockerManifest];

    private readonly ImageReference _reference;
    private readonly string _description;
    private readonly ImageSources.Options _options;
    private readonly RegistryClient _client;
    private readonly Lock _downloads = new();
    private string? _temporary;

    private RegistrySource(ImageReference reference, string description, ImageSources.Options options, Func<string, string?> environment)
    {
        _reference = reference;
        _description = description;
        _options = options;
        _client = new RegistryClient(reference, description, options.InsecureRegistries, environment);
    }

    /// <summary>The registry API root this source talks to (<c>http(s)://HOST/v2/</c>), for tests of the transport policy.</summary>
    internal Uri BaseUri => _client.BaseUri;

    /// <summary>Opens the registry source for <paramref name="reference"/> (without the docker:// prefix). Nothing is fetched until <see cref="Resolve"/>.</summary>
    /// <exception cref="EnclaveBuildException"><see cref="BuildError.InvalidReference"/>.</exception>
    public static IImageSource Create(string reference, ImageSources.Options options) => Create(reference, options, Environment.GetEnvironmentVariable);

    /// <summary>As <see cref="Create(string, ImageSources.Options)"/>, reading DOCKER_CONFIG, HOME and PATH through <paramref name="environment"/>.</summary>
    internal static RegistrySource Create(string reference, ImageSources.Options options, Func<string, string?> environment)
    {
        string description = $"docker://{EifFormat.PrintableText.Of(reference, 200)}";
        return new RegistrySource(ImageReference.Parse(reference, description), description, options, environment);
    }

    /// <inheritdoc/>
    public ResolvedImage Resolve(string architecture, CancellationToken cancellationToken)
    {
        // The manifest by tag or digest; a tag's answer is checked against the Docker-Content-Digest header the
        // registry sends with it (distribution-spec "Pulling manifests"), a digest's against the digest itself.
        (JObject manifest, string mediaType, Digest digest) = FetchManifest(_reference.ManifestReference, _reference.Digest, null, cancellationToken);
        for (int depth = 0; mediaType is MediaTypes.OciIndex or MediaTypes.DockerManifestList; depth++)
        {
            if (depth == 2)
                throw Invalid("image indexes nest too deep");
            JObject chosen = OciDescriptors.ChoosePlatform(manifest, architecture, _description);
            Digest child = OciDescriptors.DigestOf(chosen, _description, $"the index's linux/{architecture} entry");
            (manifest, mediaType, digest) = FetchManifest(child.ToString(), child, OciDescriptors.SizeOf(chosen), cancellationToken);
        }

        if (mediaType is not (MediaTypes.OciManifest or MediaTypes.DockerManifest))
            throw new EnclaveBuildException(BuildError.UnsupportedMediaType, $"{_description}: manifest media type '{EifFormat.PrintableText.Of(mediaType, 100)}' is not an OCI or Docker v2 image manifest");

        var configDescriptor = manifest["config"] as JObject ?? throw Invalid($"manifest {digest} has no 'config'");
        Digest configDigest = OciDescriptors.DigestOf(configDescriptor, _description, "the config");
        byte[] config = FetchSmallBlob(configDigest, OciDescriptors.SizeOf(configDescriptor), ImageConfig.MaxSize, "the config", cancellationToken);

        _temporary ??= CreateTemporaryDirectory();
        var layers = new List<LayerBlob>();
        var descriptors = OciDescriptors.Layers(manifest, _description);
        for (int i = 0; i < descriptors.Count; i++)
        {
            var (layer, layerType, layerDigest) = descriptors[i];
            long size = OciDescriptors.SizeOf(layer) ?? throw Invalid($"layer {i} has no 'size'");
            // Named by digest: a second Resolve (another architecture) may reuse what an earlier one downloaded.
            string path = Path.Combine(_temporary, $"{layerDigest.Algorithm}-{layerDigest.Hex}");
            string what = $"{_description} layer {i} ({layerDigest})";

            // An uncompressed layer is left where it was downloaded and indexed in place (see LayerStore); a
            // compressed one is only read through once, into the layer store's own uncompressed copy.
            bool uncompressed = layerType.EndsWith(".tar", StringComparison.Ordinal);
            int index = i;
            layers.Add(new LayerBlob(what, layerDigest, layerType, size,
                () => OpenLayer(index, descriptors.Count, layerDigest, size, path, deleteOnClose: !uncompressed, cancellationToken),
                uncompressed ? new FileRange(path, 0, size) : null));
        }

        return new ResolvedImage(_description, _reference.ToString(), config, configDigest, layers);
    }

    /// <summary>Closes the connection and removes the downloaded layers.</summary>
    public void Dispose()
    {
        _client.Dispose();
        if (_temporary is not null)
        {
            try
            {
                Directory.Delete(_temporary, recursive: true);
            }
            catch (DirectoryNotFoundException)
            {
            }
        }
    }

    private (JObject Manifest, string MediaType, Digest Digest) FetchManifest(string reference, Digest? expected, long? size, CancellationToken cancellationToken)
    {
        string what = $"manifest {reference}";
        using HttpResponseMessage response = _client.Get($"manifests/{reference}", ManifestTypes, what, cancellationToken);
        byte[] body = _client.ReadBounded(response, OciLayoutSource.MaxManifestSize, what, cancellationToken);
        if (size is not null && size != body.Length)
            throw new EnclaveBuildException(BuildError.DigestMismatch, $"{_description}: {what} is {body.Length} bytes, its descriptor says {size}");
        Digest digest = expected
            ?? (response.Headers.TryGetValues("Docker-Content-Digest", out var values) ? Digest.Parse(values.First(), $"{_description}: the Docker-Content-Digest of {what}") : null)
            ?? Digest.Sha256Of(body);
        digest.Verify(body, $"{_description}: {what}");

        JObject document;
        try
        {
            document = SerdeJsonParser.Parse(body) as JObject ?? throw new FormatException("not a JSON object");
        }
        catch (FormatException ex)
        {
            throw new EnclaveBuildException(BuildError.InvalidImage, $"{_description}: {what} is not JSON ({ex.Message})", ex);
        }

        // The document's own mediaType wins over the Content-Type header (image-spec manifest.md: it SHOULD be set).
        string mediaType = (document["mediaType"] as JString)?.Value ?? response.Content.Headers.ContentType?.MediaType ?? string.Empty;
        return (document, mediaType, digest);
    }

    private byte[] FetchSmallBlob(Digest digest, long? size, int max, string what, CancellationToken cancellationToken)
    {
        using HttpResponseMessage response = _client.Get($"blobs/{digest}", [], $"{what} ({digest})", cancellationToken);
        byte[] body = _client.ReadBounded(response, max, what, cancellationToken);
        if (size is not null && size != body.Length)
            throw new EnclaveBuildException(BuildError.DigestMismatch, $"{_description}: {what} is {body.Length} bytes, its descriptor says {size}");
        digest.Verify(body, $"{_description}: {what}");
        return body;
    }

    // Downloads a layer once (into a file next to its final name, renamed when complete and verified), then opens it.
    private FileStream OpenLayer(int index, int count, Digest digest, long size, string path, bool deleteOnClose, CancellationToken cancellationToken)
    {
        // The builder reads layers two at a time; downloads go one at a time (one connection, one token).
        lock (_downloads)
        {
            DownloadOnce(index, count, digest, size, path, cancellationToken);
        }

        return new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read | FileShare.Delete, bufferSize: 1,
            deleteOnClose ? FileOptions.SequentialScan | FileOptions.DeleteOnClose : FileOptions.SequentialScan);
    }

    private void DownloadOnce(int index, int count, Digest digest, long size, string path, CancellationToken cancellationToken)
    {
        if (!File.Exists(path))
        {
            _options.Log($"{_description}: downloading layer {index + 1} of {count} ({digest}, {size} bytes)");
            string partial = path + ".partial";
            try
            {
                Download(digest, size, partial, $"layer {index} ({digest})", cancellationToken);
                File.Move(partial, path);
            }
            finally
            {
                File.Delete(partial);
            }
        }
    }

    // Streams a blob to a file, hashing and counting as it goes: never more than the descriptor's size is accepted.
    private void Download(Digest digest, long size, string path, string what, CancellationToken cancellationToken)
    {
        using HttpResponseMessage response = _client.Get($"blobs/{digest}", [], what, cancellationToken);
        if (response.Content.Headers.ContentLength is long length && length != size)
            throw new EnclaveBuildException(BuildError.DigestMismatch, $"{_description}: {what} is {length} bytes, its descriptor says {size}");
        using IncrementalHash hash = digest.CreateHash();
        long total = 0;
        try
        {
            using Stream body = response.Content.ReadAsStream(cancellationToken);
            using var file = new FileStream(path, FileMode.CreateNew, FileAccess.Write, FileShare.None, bufferSize: 1);
            byte[] buffer = new byte[1 << 16];
            int read;
            while ((read = body.Read(buffer)) > 0)
            {
                total += read;
                if (total > size)
                    throw new EnclaveBuildException(BuildError.DigestMismatch, $"{_description}: {what} is more than the {size} bytes its descriptor says");
                hash.AppendData(buffer, 0, read);
                file.Write(buffer, 0, read);
                cancellationToken.ThrowIfCancellationRequested();
            }
        }
        catch (Exception ex) when (ex is HttpRequestException or IOException)
        {
            throw new EnclaveBuildException(BuildError.RemoteError, $"{_description}: {what}: the download into {path} failed after {total} bytes ({ex.Message})", ex);
        }

        if (total != size)
            throw new EnclaveBuildException(BuildError.DigestMismatch, $"{_description}: {what} is {total} bytes, its descriptor says {size}");
        digest.VerifyHash(hash.GetHashAndReset(), $"{_description}: {what}");
    }

    private string CreateTemporaryDirectory()
    {
        string root = _options.TemporaryDirectory ?? Path.GetTempPath();
        string path = Path.Combine(root, $"eif-registry-{Guid.NewGuid():N}");
        Directory.CreateDirectory(path);
        return path;
    }

    private EnclaveBuildException Invalid(string detail) => new(BuildError.InvalidImage, $"{_description}: {detail}");
}

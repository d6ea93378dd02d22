using EifFormat.Json;

namespace EifBuilder.Images;

/// <summary>A layer blob as a source offers it: how to open its bytes (compressed or not) and what to check them against.</summary>
/// <param name="What">A name for messages.</param>
/// <param name="Digest">The blob's digest (of the stored, possibly compressed bytes), when the source names one.</param>
/// <param name="MediaType">The media type, when the source names one.</param>
/// <param name="Size">The blob size, when the source names one.</param>
/// <param name="Open">Opens the stored bytes; the builder disposes the stream.</param>
/// <param name="Location">Where the bytes lie in a file, when they do (an uncompressed layer is then read in place).</param>
public sealed record LayerBlob(string What, Digest? Digest, string? MediaType, long? Size, Func<Stream> Open, FileRange? Location = null);

/// <summary>A byte range of a file.</summary>
/// <param name="Path">The file.</param>
/// <param name="Offset">First byte.</param>
/// <param name="Length">Length.</param>
public sealed record FileRange(string Path, long Offset, long Length);

/// <summary>What a source resolved an image to: its config, its layers bottom first, and what the builder reports of it.</summary>
/// <param name="Description">The source, for messages ("docker-archive:app.tar").</param>
/// <param name="Reference">The image reference the user named, when there is one (the default ImageName comes from it).</param>
/// <param name="Config">The config blob's bytes (verified against <paramref name="ConfigDigest"/>).</param>
/// <param name="ConfigDigest">The config digest: the image ID.</param>
/// <param name="Layers">The layers, bottom first.</param>
/// <param name="DockerInspect">The daemon's <c>docker image inspect</c> object (daemon sources only).</param>
public sealed record ResolvedImage(
    string Description, string? Reference, byte[] Config, Digest ConfigDigest, IReadOnlyList<LayerBlob> Layers, JValue? DockerInspect = null);

/// <summary>A place images come from: a Docker daemon, a docker-save archive, an OCI layout or archive, a registry.</summary>
public interface IImageSource : IDisposable
{
    /// <summary>Finds the image for <paramref name="architecture"/> (Go/OCI name: amd64, arm64) and reads its config.</summary>
    /// <exception cref="EnclaveBuildException">The image cannot be found or read.</exception>
    ResolvedImage Resolve(string architecture, CancellationToken cancellationToken);
}

/// <summary>OCI and Docker media types (OCI image-spec media-types.md; Docker image manifest v2 schema 2).</summary>
public static class MediaTypes
{
    /// <summary>OCI image index.</summary>
    public const string OciIndex = "application/vnd.oci.image.index.v1+json";

    /// <summary>OCI image manifest.</summary>
    public const string OciManifest = "application/vnd.oci.image.manifest.v1+json";

    /// <summary>Docker manifest list.</summary>
    public const string DockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json";

    /// <summary>Docker image manifest v2 schema 2.</summary>
    public const string DockerManifest = "application/vnd.docker.distribution.manifest.v2+json";

    /// <summary>The layer media types the builder reads (tar, gzip, zstd; OCI and Docker; non-distributable variants).</summary>
    public static bool IsLayer(string mediaType) => mediaType is
        "application/vnd.oci.image.layer.v1.tar" or "application/vnd.oci.image.layer.v1.tar+gzip" or "application/vnd.oci.image.layer.v1.tar+zstd"
        or "application/vnd.oci.image.layer.nondistributable.v1.tar" or "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
        or "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"
        or "application/vnd.docker.image.rootfs.diff.tar" or "application/vnd.docker.image.rootfs.diff.tar.gzip"
        or "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";
}

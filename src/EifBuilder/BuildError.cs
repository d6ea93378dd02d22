namespace EifBuilder;

/// <summary>What went wrong turning an image into an EIF. Stable: tools may branch on it.</summary>
public enum BuildError
{
    /// <summary>An image reference or transport that cannot be parsed.</summary>
    InvalidReference = 1,

    /// <summary>The Docker daemon does not answer on its socket.</summary>
    DaemonUnreachable,

    /// <summary>The image does not exist where it was looked for (daemon, archive, layout, registry).</summary>
    ImageNotFound,

    /// <summary>The registry or daemon refused access (authentication or authorisation).</summary>
    AccessDenied,

    /// <summary>A registry or daemon operation failed for another reason.</summary>
    RemoteError,

    /// <summary>A manifest, index or layer of a media type this builder does not read.</summary>
    UnsupportedMediaType,

    /// <summary>No image for the requested architecture, or an image of another one.</summary>
    UnsupportedPlatform,

    /// <summary>A blob whose bytes do not have the digest it is referenced by (or a layer not matching its diff_id).</summary>
    DigestMismatch,

    /// <summary>An archive, manifest, index or config that is not what it claims to be.</summary>
    InvalidImage,

    /// <summary>A layer that is not a valid tar stream, or holds an entry this builder cannot represent.</summary>
    InvalidLayer,

    /// <summary>A layer entry that would escape the root filesystem.</summary>
    UnsafePath,

    /// <summary>The image has no command, or a command/environment element the enclave init cannot carry.</summary>
    InvalidCommand,

    /// <summary>A blob (kernel, cmdline, init, nsm.ko, config) that is missing or unreadable.</summary>
    MissingBlob,

    /// <summary>A value that does not fit a newc cpio field (a file of 4 GiB or more, an id or time past 32 bits).</summary>
    TooLarge,

    /// <summary>A Dockerfile build that failed.</summary>
    BuildFailed,

    /// <summary>A ramdisk that is not a valid newc cpio archive (plain, gzip or zstd): truncated, bad field, bad name.</summary>
    InvalidRamdisk,
}

/// <summary>The one exception type of the builder, carrying a <see cref="BuildError"/>.</summary>
public sealed class EnclaveBuildException(BuildError error, string message, Exception? innerException = null)
    : Exception(message, innerException)
{
    /// <summary>What went wrong.</summary>
    public BuildError Error { get; } = error;
}

namespace EifBuilder.Images;

/// <summary>Images in a Docker daemon (<c>docker-daemon:REF</c>, nitro-cli's <c>--docker-uri</c>).</summary>
public sealed class DockerDaemonSource
{
    /// <summary>Opens the daemon source for <paramref name="reference"/>.</summary>
    public static IImageSource Create(string reference, ImageSources.Options options) =>
        throw new EnclaveBuildException(BuildError.DaemonUnreachable, $"docker-daemon:{reference}: the Docker daemon source is not built yet");

    /// <summary>Builds the Dockerfile in <paramref name="directory"/> through the daemon, tags it, and opens it.</summary>
    public static IImageSource Build(string directory, string tag, ImageSources.Options options, CancellationToken cancellationToken) =>
        throw new EnclaveBuildException(BuildError.DaemonUnreachable, $"--docker-dir {directory}: the Docker daemon source is not built yet");
}

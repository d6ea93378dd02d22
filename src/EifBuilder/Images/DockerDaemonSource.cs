namespace EifBuilder.Images;

/// <summary>Images in a Docker daemon (<c>docker-daemon:REF</c>, nitro-cli's <c>--docker-uri</c>).</summary>
public sealed class DockerDaemonSource
{
    /// <summary>Opens the daemon source for <paramref name="reference"/>.</summary>
    public static IImageSource Create(string reference, ImageSources.Options options) =>
        throw new EnclaveBuildException(BuildError.DaemonUnreachable, $"docker-daemon:{reference}: the Docker daemon source is not built yet");
}

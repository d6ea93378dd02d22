namespace EifBuilder.Images;

/// <summary>Images in a registry, pulled without a daemon (<c>docker://HOST/REPO[:TAG|@DIGEST]</c>).</summary>
public sealed class RegistrySource
{
    /// <summary>Opens the registry source for <paramref name="reference"/> (without the docker:// prefix).</summary>
    public static IImageSource Create(string reference, ImageSources.Options options) =>
        throw new EnclaveBuildException(BuildError.RemoteError, $"docker://{reference}: the registry source is not built yet");
}

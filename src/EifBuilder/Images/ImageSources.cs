namespace EifBuilder.Images;

/// <summary>
/// Image references with skopeo's transport names (containers-transports(5)): <c>docker-daemon:REF</c>,
/// <c>docker-archive:FILE[:REF]</c>, <c>oci:DIR[:TAG]</c>, <c>oci-archive:FILE[:TAG]</c> and
/// <c>docker://HOST/REPO[:TAG|@DIGEST]</c>.
/// </summary>
public static class ImageSources
{
    /// <summary>Options the daemon and registry transports take.</summary>
    public sealed record Options
    {
        /// <summary>The Docker daemon endpoint (DOCKER_HOST form); null: DOCKER_HOST, else the default unix socket.</summary>
        public string? DockerHost { get; init; }

        /// <summary>Registries that may be reached over plain HTTP besides loopback ones.</summary>
        public IReadOnlyCollection<string> InsecureRegistries { get; init; } = [];

        /// <summary>Where temporary files go.</summary>
        public string? TemporaryDirectory { get; init; }

        /// <summary>Receives the daemon's pull and build output, one line at a time.</summary>
        public Action<string> Log { get; init; } = _ => { };
    }

    /// <summary>Opens the source a transport reference names.</summary>
    /// <exception cref="EnclaveBuildException"><see cref="BuildError.InvalidReference"/> and the sources' own errors.</exception>
    public static IImageSource Open(string reference, Options options)
    {
        if (reference.StartsWith("docker://", StringComparison.Ordinal))
            return RegistrySource.Create(reference["docker://".Length..], options);
        int colon = reference.IndexOf(':', StringComparison.Ordinal);
        if (colon <= 0)
            throw Invalid(reference);
        string transport = reference[..colon];
        string rest = reference[(colon + 1)..];
        (string path, string? name) = SplitPath(rest);
        return transport switch
        {
            "docker-daemon" => DockerDaemonSource.Create(rest, options),
            "docker-archive" => new DockerArchiveSource(path, name),
            "oci" => OciLayoutSource.FromDirectory(path, name),
            "oci-archive" => OciLayoutSource.FromArchive(path, name),
            _ => throw Invalid(reference),
        };
    }

    // "PATH[:NAME]", split at the first ':' as containers/image does for these transports.
    private static (string Path, string? Name) SplitPath(string text)
    {
        int colon = text.IndexOf(':', StringComparison.Ordinal);
        return colon < 0 ? (text, null) : (text[..colon], text[(colon + 1)..] is { Length: > 0 } name ? name : null);
    }

    private static EnclaveBuildException Invalid(string reference) =>
        new(BuildError.InvalidReference,
            $"'{EifFormat.PrintableText.Of(reference, 100)}' is not an image reference: use docker-daemon:REF, docker-archive:FILE[:REF], oci:DIR[:TAG], oci-archive:FILE[:TAG] or docker://HOST/REPO[:TAG|@DIGEST]");
}

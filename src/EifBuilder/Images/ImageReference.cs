using System.Text.RegularExpressions;

namespace EifBuilder.Images;

/// <summary>
/// A Docker image reference, <c>[HOST[:PORT]/]REPO[:TAG][@DIGEST]</c>, normalised as Docker does it
/// (distribution/reference <c>reference.go</c> grammar and <c>normalize.go</c>): a first path segment holding a
/// '.' or a ':', or being <c>localhost</c>, names a registry, anything else is on Docker Hub (<c>docker.io</c>),
/// where a one-segment name lives under <c>library/</c>; no tag and no digest means <c>:latest</c>.
/// </summary>
/// <param name="Domain">The registry as the reference names it (<c>docker.io</c>, <c>127.0.0.1:5000</c>).</param>
/// <param name="Repository">The repository path (<c>library/busybox</c>).</param>
/// <param name="Tag">The tag; <c>latest</c> when the reference names neither a tag nor a digest.</param>
/// <param name="Digest">The manifest digest, when the reference pins one (then it wins over the tag).</param>
internal sealed partial record ImageReference(string Domain, string Repository, string? Tag, Digest? Digest)
{
    /// <summary>Docker Hub's name in references.</summary>
    internal const string DockerHubDomain = "docker.io";

    // distribution/reference: a repository name is at most 255 characters (NameTotalLengthMax).
    private const int MaxNameLength = 255;

    /// <summary>The tag or digest as a registry's manifest URL takes it.</summary>
    internal string ManifestReference => Digest?.ToString() ?? Tag!;

    /// <summary>
    /// The name as the Docker CLI shows it (FamiliarName: <c>busybox</c>, <c>user/app</c>, <c>host:5000/app</c>),
    /// which is what the Engine API's <c>fromImage</c> expects.
    /// </summary>
    internal string FamiliarName =>
        Domain != DockerHubDomain ? $"{Domain}/{Repository}"
        : Repository.StartsWith("library/", StringComparison.Ordinal) && Repository.IndexOf('/', "library/".Length) < 0 ? Repository["library/".Length..]
        : Repository;

    /// <summary>The familiar name with its tag or digest (<c>busybox:latest</c>): how the daemon knows the image.</summary>
    internal string Familiar => FamiliarName + (Digest is not null ? "@" + Digest : ":" + Tag);

    /// <summary>The host to send Registry API requests to: Docker Hub's API lives at <c>registry-1.docker.io</c>.</summary>
    internal string ApiHost => Domain == DockerHubDomain ? "registry-1.docker.io" : Domain;

    /// <summary>Parses <paramref name="text"/>; <paramref name="what"/> prefixes the message of an error.</summary>
    /// <exception cref="EnclaveBuildException"><see cref="BuildError.InvalidReference"/>.</exception>
    internal static ImageReference Parse(string text, string what)
    {
        var m = Grammar().Match(text);
        if (!m.Success)
        {
            throw new EnclaveBuildException(BuildError.InvalidReference,
                $"{what}: '{EifFormat.PrintableText.Of(text, 100)}' is not an image reference ([HOST[:PORT]/]NAME[:TAG][@DIGEST], NAME in lower case)");
        }

        string name = m.Groups["name"].Value;
        if (name.Length > MaxNameLength)
            throw new EnclaveBuildException(BuildError.InvalidReference, $"{what}: the repository name is {name.Length} characters, more than {MaxNameLength}");

        // normalize.go splitDockerDomain: the first segment is a registry only if it looks like a host name.
        string domain = DockerHubDomain;
        string repository = name;
        int slash = name.IndexOf('/', StringComparison.Ordinal);
        if (slash > 0 && (name[..slash].Contains('.', StringComparison.Ordinal) || name[..slash].Contains(':', StringComparison.Ordinal) || name[..slash] == "localhost"))
        {
            domain = name[..slash];
            repository = name[(slash + 1)..];
        }

        if (domain == "index.docker.io")
            domain = DockerHubDomain;
        if (domain == DockerHubDomain && !repository.Contains('/', StringComparison.Ordinal))
            repository = "library/" + repository;
        if (!RepositoryPath().IsMatch(repository))
        {
            throw new EnclaveBuildException(BuildError.InvalidReference,
                $"{what}: '{EifFormat.PrintableText.Of(name, 100)}' is not a repository name (lower-case letters, digits, '.', '_', '-', '/')");
        }

        Digest? digest = null;
        if (m.Groups["digest"].Success)
        {
            try
            {
                digest = Images.Digest.Parse(m.Groups["digest"].Value, what);
            }
            catch (EnclaveBuildException ex)
            {
                // A digest the user typed is a bad reference, not a bad image.
                throw new EnclaveBuildException(BuildError.InvalidReference, ex.Message, ex);
            }
        }


        string? tag = m.Groups["tag"].Success ? m.Groups["tag"].Value : digest is null ? "latest" : null;
        return new ImageReference(domain, repository, tag, digest);
    }

    /// <inheritdoc/>
    public override string ToString() => $"{Domain}/{Repository}" + (Digest is not null ? "@" + Digest : ":" + Tag);

    // reference.go ReferenceRegexp: [domain[:port]/]path[:tag][@digest]. The domain is matched loosely (a first
    // segment followed by '/'); whether it is a registry is decided in Parse, and the path checked by RepositoryPath.
    [GeneratedRegex(@"^(?<name>(?:(?:[a-zA-Z0-9.\-]+|\[[0-9a-fA-F:]+\])(?::[0-9]+)?/)?[a-zA-Z0-9._\-]+(?:/[a-zA-Z0-9._\-]+)*)(?::(?<tag>[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127}))?(?:@(?<digest>[a-z0-9]+(?:[+._\-][a-z0-9]+)*:[a-zA-Z0-9=_\-]+))?$")]
    private static partial Regex Grammar();

    // reference.go path-component: [a-z0-9]+ joined by '.', '_', '__' or runs of '-'.
    [GeneratedRegex(@"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$")]
    private static partial Regex RepositoryPath();
}

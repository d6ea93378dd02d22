using Docker.DotNet;
using Docker.DotNet.Models;
using EifBuilder.Images;
using EifBuilder.Layers;
using EifFormat.Json;

namespace EifBuilder.Tests;

/// <summary>
/// The Docker daemon source and <c>--docker-dir</c> builds against the real daemon of tools/services (Debian's
/// docker.io on /var/run/docker.sock), and the .dockerignore rules of the build context. Tests that need the daemon
/// or the test images (tools/test-images) skip, saying why, when they are not there.
/// </summary>
public class DockerDaemonSourceTests : IClassFixture<RegistrySourceTests.HtpasswdRegistry>, IDisposable
{
    private const string BuildTag = "eif-test/source-tests-build:latest";

    private readonly RegistrySourceTests.HtpasswdRegistry _registry;
    private readonly string _temp = Directory.CreateTempSubdirectory("eif-daemon-tests").FullName;
    private readonly List<string> _log = [];

    public DockerDaemonSourceTests(RegistrySourceTests.HtpasswdRegistry registry) => _registry = registry;

    public void Dispose() => Directory.Delete(_temp, recursive: true);

    private string Work => Directory.CreateDirectory(Path.Combine(_temp, "work")).FullName;

    private ImageSources.Options Options(string? dockerHost = null) => new()
    {
        DockerHost = dockerHost,
        TemporaryDirectory = Work,
        Log = line =>
        {
            lock (_log)
                _log.Add(line);
        },
    };

    [Theory]
    [InlineData("docker-daemon:eif-test/hello:latest")]
    [InlineData("docker-daemon:eif-test/hello")] // Docker's normalisation: no tag is :latest
    [InlineData("docker-daemon:docker.io/eif-test/hello:latest")]
    public void Resolve_ImageInTheDaemon_SavesItAndEmbedsTheInspect(string reference)
    {
        string id = File.ReadAllText(TestServices.TestImage("hello", "image-id")).Trim();
        string archive = TestServices.TestImage("hello", "docker-archive.tar");
        TestServices.RequireDocker();

        using (IImageSource source = ImageSources.Open(reference, Options()))
        {
            ResolvedImage image = source.Resolve("amd64", CancellationToken.None);
            Assert.Equal(id, image.ConfigDigest.ToString());
            Assert.Equal(reference["docker-daemon:".Length..], image.Reference);
            Assert.Equal(reference, image.Description);
            Assert.Equal(new DockerArchiveSource(archive, null).Resolve("amd64", CancellationToken.None).Config, image.Config);

            // The Engine API's inspect JSON, keys sorted as serde_json's map holds them.
            var inspect = Assert.IsType<JObject>(image.DockerInspect);
            Assert.Equal(id, Assert.IsType<JString>(inspect["Id"]).Value);
            Assert.Equal("amd64", Assert.IsType<JString>(inspect["Architecture"]).Value);
            Assert.Contains(Assert.IsType<JArray>(inspect["RepoTags"]).Items, t => t is JString { Value: "eif-test/hello:latest" });
            Assert.Equal(inspect.Properties.Select(p => p.Key).Order(StringComparer.Ordinal), inspect.Properties.Select(p => p.Key));

            // The saved archive is read in place; every layer checks out against its diff_id.
            Assert.Single(Directory.GetFiles(Work));
            var config = ImageConfig.Parse(image.Config, image.Description);
            using var store = new LayerStore(Path.Combine(_temp, "store"));
            for (int i = 0; i < image.Layers.Count; i++)
                store.Add(image.Layers[i], config.DiffIds[i], CancellationToken.None);
        }

        Assert.Empty(Directory.GetFileSystemEntries(Work));
    }

    [Fact]
    public void Resolve_ImageOfAnotherArchitecture_IsUnsupportedPlatform()
    {
        TestServices.TestImage("hello", "image-id");
        TestServices.RequireDocker();
        using IImageSource source = DockerDaemonSource.Create("eif-test/hello:latest", Options());
        var ex = Assert.Throws<EnclaveBuildException>(() => source.Resolve("arm64", CancellationToken.None));
        Assert.Equal(BuildError.UnsupportedPlatform, ex.Error);
        Assert.Contains("the daemon's image is linux/amd64, the enclave needs linux/arm64", ex.Message);
        Assert.Empty(Directory.GetFileSystemEntries(Work)); // refused before anything was saved
    }

    [Fact]
    public void Resolve_ImageNeitherInTheDaemonNorPullable_IsImageNotFoundOnOneLine()
    {
        TestServices.RequireDocker();
        using IImageSource source = DockerDaemonSource.Create("eif-test/source-tests-no-such-image", Options());

        // The daemon tries Docker Hub, which may be unreachable (as here) or say the repository does not exist;
        // either way the answer is one line, well before this bound.
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(120));
        var ex = Assert.Throws<EnclaveBuildException>(() => source.Resolve("amd64", timeout.Token));
        Assert.Equal(BuildError.ImageNotFound, ex.Error);
        Assert.StartsWith("docker-daemon:eif-test/source-tests-no-such-image: the daemon has no such image and pulling eif-test/source-tests-no-such-image:latest failed: ", ex.Message);
        Assert.DoesNotContain('\n', ex.Message);
        Assert.Contains(_log, l => l.Contains("pulling eif-test/source-tests-no-such-image:latest for linux/amd64", StringComparison.Ordinal));
    }

    [Fact]
    public void Resolve_ImageOnlyInARegistryWithAuth_IsPulledWithTheCredentialsOfDockerConfig()
    {
        TestServices.RequireDocker();
        _registry.Require();
        string reference = $"{_registry.Host}/eif-test/private:v1";
        string config = Directory.CreateDirectory(Path.Combine(_temp, "docker-config")).FullName;
        string auth = Convert.ToBase64String(System.Text.Encoding.UTF8.GetBytes($"{RegistrySourceTests.AuthenticatingRegistry.User}:{RegistrySourceTests.AuthenticatingRegistry.Password}"));
        File.WriteAllText(Path.Combine(config, "config.json"), $$"""{"auths": {"{{_registry.Host}}": {"auth": "{{auth}}"} } }""");
        RemoveImage(reference);
        try
        {
            using (DockerDaemonSource source = DockerDaemonSource.Create(reference, Options(), Environment(config)))
            {
                ResolvedImage image = source.Resolve("amd64", CancellationToken.None);
                Assert.Equal(_registry.Image.ConfigDigest, image.ConfigDigest.ToString());
                Assert.Contains(_log, l => l.Contains($"pulling {reference} for linux/amd64", StringComparison.Ordinal));
            }

            Assert.Empty(Directory.GetFileSystemEntries(Work));
        }
        finally
        {
            RemoveImage(reference);
        }
    }

    [Fact]
    public void Resolve_ImageOnlyInARegistryWithAuth_WithoutCredentials_IsAccessDenied()
    {
        TestServices.RequireDocker();
        _registry.Require();
        string reference = $"{_registry.Host}/eif-test/private:v1";
        RemoveImage(reference);
        using DockerDaemonSource source = DockerDaemonSource.Create(reference, Options(), Environment(Directory.CreateDirectory(Path.Combine(_temp, "no-config")).FullName));
        var ex = Assert.Throws<EnclaveBuildException>(() => source.Resolve("amd64", CancellationToken.None));
        Assert.Equal(BuildError.AccessDenied, ex.Error);
        Assert.StartsWith($"docker-daemon:{reference}: the daemon has no such image and pulling {reference} failed: ", ex.Message);
        Assert.Contains($"docker login {_registry.Host}", ex.Message);
    }

    [Fact]
    public void Resolve_ImageNotInTheRegistry_IsImageNotFound()
    {
        TestServices.RequireDocker();
        TestServices.RequireRegistry();
        string reference = $"{TestServices.Registry}/eif-test/source-tests-no-such-image:v1";
        using IImageSource source = DockerDaemonSource.Create(reference, Options());
        var ex = Assert.Throws<EnclaveBuildException>(() => source.Resolve("amd64", CancellationToken.None));
        Assert.Equal(BuildError.ImageNotFound, ex.Error);
        Assert.Contains("not found", ex.Message);
    }

    [Fact]
    public void Resolve_NoDaemonOnTheSocket_IsDaemonUnreachableNamingIt()
    {
        using IImageSource source = DockerDaemonSource.Create("eif-test/hello", Options("unix:///nonexistent.sock"));
        var ex = Assert.Throws<EnclaveBuildException>(() => source.Resolve("amd64", CancellationToken.None));
        Assert.Equal(BuildError.DaemonUnreachable, ex.Error);
        Assert.StartsWith("docker-daemon:eif-test/hello: no Docker daemon answers on unix:///nonexistent.sock (no such socket: /nonexistent.sock)", ex.Message);
        Assert.Contains("is dockerd running?", ex.Message);
        Assert.DoesNotContain('\n', ex.Message);
    }

    [Theory]
    [InlineData("ssh://user@host", "scheme 'ssh'")]
    [InlineData("not a url", "is not a URL")]
    public void Resolve_UnusableEndpoint_IsDaemonUnreachable(string endpoint, string expected)
    {
        using IImageSource source = DockerDaemonSource.Create("eif-test/hello", Options(endpoint));
        var ex = Assert.Throws<EnclaveBuildException>(() => source.Resolve("amd64", CancellationToken.None));
        Assert.Equal(BuildError.DaemonUnreachable, ex.Error);
        Assert.Contains(expected, ex.Message);
    }

    [Fact]
    public void Create_MalformedReference_IsInvalidReference() =>
        Assert.Equal(BuildError.InvalidReference, Assert.Throws<EnclaveBuildException>(() => DockerDaemonSource.Create("Not/A:Reference!", Options())).Error);

    [Fact]
    public void Build_DockerDirWithDockerignore_BuildsTagsAndResolvesTheImage()
    {
        TestServices.RequireDocker();
        string context = WriteContext("FROM scratch\nCOPY . /ctx/\nCMD [\"/ctx/hello.txt\"]\n");
        try
        {
            using (IImageSource source = DockerDaemonSource.Build(context, BuildTag, Options(), CancellationToken.None))
            {
                ResolvedImage image = source.Resolve("amd64", CancellationToken.None);
                Assert.Equal(BuildTag, image.Reference);
                Assert.Contains(_log, l => l.StartsWith("Step 2/3 : COPY . /ctx/", StringComparison.Ordinal)); // the daemon's output, streamed
                Assert.Contains(_log, l => l.Contains("Successfully tagged " + BuildTag, StringComparison.Ordinal));

                var config = ImageConfig.Parse(image.Config, image.Description);
                Assert.Equal(["/ctx/hello.txt"], config.Cmd);
                using var store = new LayerStore(Path.Combine(_temp, "store"));
                var names = image.Layers.SelectMany((l, i) => store.Add(l, config.DiffIds[i], CancellationToken.None).Entries)
                    .Select(e => e.Name.TrimEnd('/')).ToHashSet();

                // Excluded by .dockerignore: secret.txt, every *.log but keep.log, skipdir/. The daemon drops the
                // Dockerfile and .dockerignore from COPY because .dockerignore lists them (they are still sent).
                Assert.Superset(new HashSet<string> { "ctx/hello.txt", "ctx/keep.log", "ctx/sub", "ctx/sub/kept.txt" }, names);
                Assert.DoesNotContain("ctx/secret.txt", names);
                Assert.DoesNotContain("ctx/sub/a.log", names);
                Assert.DoesNotContain("ctx/skipdir", names);
                Assert.DoesNotContain("ctx/skipdir/f", names);
            }

            Assert.Empty(Directory.GetFileSystemEntries(Work));
        }
        finally
        {
            RemoveImage(BuildTag);
        }
    }

    [Fact]
    public void Build_DockerfileThatFails_IsBuildFailedWithTheDaemonsError()
    {
        TestServices.RequireDocker();
        string context = WriteContext("FROM scratch\nCOPY secret.txt /\n"); // secret.txt is excluded by .dockerignore
        var ex = Assert.Throws<EnclaveBuildException>(() => DockerDaemonSource.Build(context, "eif-test/source-tests-failing:latest", Options(), CancellationToken.None));
        Assert.Equal(BuildError.BuildFailed, ex.Error);
        Assert.StartsWith($"--docker-dir {context}: docker build failed: COPY failed: ", ex.Message);
        Assert.Contains("secret.txt", ex.Message);
        Assert.DoesNotContain('\n', ex.Message);
    }

    [Fact]
    public void Build_ContextWithASocket_IsBuildFailedNamingTheFile()
    {
        TestServices.RequireDocker();
        string context = WriteContext("FROM scratch\nCOPY hello.txt /\n");
        using var socket = new System.Net.Sockets.Socket(System.Net.Sockets.AddressFamily.Unix, System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Unspecified);
        socket.Bind(new System.Net.Sockets.UnixDomainSocketEndPoint(Path.Combine(context, "a.sock")));
        var ex = Assert.Throws<EnclaveBuildException>(() => DockerDaemonSource.Build(context, "eif-test/source-tests-socket:latest", Options(), CancellationToken.None));
        Assert.Equal(BuildError.BuildFailed, ex.Error);
        Assert.Contains("cannot put 'a.sock' into the build context", ex.Message);
    }

    [Fact]
    public void Build_NoDaemonOnTheSocket_IsDaemonUnreachable()
    {
        string context = WriteContext("FROM scratch\nCOPY hello.txt /\n");
        var ex = Assert.Throws<EnclaveBuildException>(() => DockerDaemonSource.Build(context, "eif-test/x:latest", Options("unix:///nonexistent.sock"), CancellationToken.None));
        Assert.Equal(BuildError.DaemonUnreachable, ex.Error);
        Assert.Contains("unix:///nonexistent.sock", ex.Message);
    }

    [Fact]
    public void Build_DirectoryWithoutDockerfile_IsBuildFailed()
    {
        string context = Directory.CreateDirectory(Path.Combine(_temp, "empty")).FullName;
        var ex = Assert.Throws<EnclaveBuildException>(() => DockerDaemonSource.Build(context, "eif-test/x:latest", Options("unix:///nonexistent.sock"), CancellationToken.None));
        Assert.Equal(BuildError.BuildFailed, ex.Error);
        Assert.Contains("there is no Dockerfile", ex.Message);
    }

    [Fact]
    public void BuildContext_Dockerignore_LeavesOutWhatItExcludesButAlwaysSendsDockerfileAndItself()
    {
        string context = WriteContext("FROM scratch\n");
        Assert.Equal(
            [".dockerignore", "Dockerfile", "hello.txt", "keep.log", "sub", "sub/kept.txt"],
            DockerBuildContext.Open(context, "test").Paths);
    }

    [Theory]
    // source: Docker docs, "Dockerfile reference: .dockerignore file", and moby/patternmatcher's tests.
    [InlineData("*/temp*", "somedir/temporary.txt", true)]
    [InlineData("*/temp*", "temp.txt", false)]
    [InlineData("*/*/temp*", "somedir/subdir/temporary.txt", true)]
    [InlineData("temp?", "tempa", true)]
    [InlineData("temp?", "tempab", false)]
    [InlineData("**/*.go", "a/b/c.go", true)]
    [InlineData("**/*.go", "c.go", true)]
    [InlineData("**/foo", "foo", true)]
    [InlineData("**/foo", "a/b/foo", true)]
    [InlineData("**/foo", "a/bfoo", false)]
    [InlineData("foo/**", "foo/x/y", true)]
    [InlineData("foo/**", "foo", false)]
    [InlineData("dir/**/x", "dir/x", true)]
    [InlineData("dir/**/x", "dir/a/b/x", true)]
    [InlineData("/leading", "leading", true)] // a leading '/' means the context root
    [InlineData("trailing/", "trailing/file", true)] // a trailing '/' is cleaned away; a directory excludes its content
    [InlineData("./a/../b", "b", true)]
    [InlineData("dir", "dir/sub/file", true)]
    [InlineData("[a-c].txt", "b.txt", true)]
    [InlineData("[^a-c].txt", "b.txt", false)]
    [InlineData("[^a-c].txt", "d.txt", true)]
    [InlineData("a\\*b", "a*b", true)]
    [InlineData("a\\*b", "axb", false)]
    [InlineData("*.md\n!README.md", "README.md", false)]
    [InlineData("*.md\n!README.md", "CHANGES.md", true)]
    [InlineData("!README.md\n*.md", "README.md", true)] // the last matching line wins
    [InlineData("# *.md\n  \n", "a.md", false)]
    [InlineData("docs\n!docs/keep", "docs/keep", false)]
    [InlineData("docs\n!docs/keep", "docs/other", true)]
    public void DockerIgnore_Excludes_FollowsDockersRules(string patterns, string path, bool excluded) =>
        Assert.Equal(excluded, DockerIgnore.Parse(patterns, "test").Excludes(path));

    [Theory]
    [InlineData("docs\n!docs/keep", "docs", true)]
    [InlineData("docs\n!**/keep", "docs", false)] // the CLI only descends for an exception that names the directory
    [InlineData("docs", "docs", false)]
    public void DockerIgnore_MayReinclude_OnlyForExceptionsUnderTheDirectory(string patterns, string directory, bool descend) =>
        Assert.Equal(descend, DockerIgnore.Parse(patterns, "test").MayReinclude(directory));

    [Theory]
    [InlineData("!", "'!' alone")]
    [InlineData("a[b", "'[' without its ']'")]
    public void DockerIgnore_BadPattern_IsBuildFailed(string patterns, string expected)
    {
        var ex = Assert.Throws<EnclaveBuildException>(() => DockerIgnore.Parse(patterns, ".dockerignore"));
        Assert.Equal(BuildError.BuildFailed, ex.Error);
        Assert.Contains(expected, ex.Message);
        Assert.Contains("line 1", ex.Message);
    }

    // A context: Dockerfile, hello.txt, secret.txt, keep.log, sub/{a.log,kept.txt}, skipdir/f, and a .dockerignore
    // with a comment, a plain name, a ** glob, an exception, a leading-and-trailing-slash directory, and the two
    // files Docker sends anyway.
    private string WriteContext(string dockerfile)
    {
        string dir = Directory.CreateDirectory(Path.Combine(_temp, "context-" + Guid.NewGuid().ToString("N"))).FullName;
        File.WriteAllText(Path.Combine(dir, "Dockerfile"), dockerfile);
        File.WriteAllText(Path.Combine(dir, "hello.txt"), "hello\n");
        File.WriteAllText(Path.Combine(dir, "secret.txt"), "secret\n");
        File.WriteAllText(Path.Combine(dir, "keep.log"), "kept\n");
        Directory.CreateDirectory(Path.Combine(dir, "sub"));
        File.WriteAllText(Path.Combine(dir, "sub", "a.log"), "log\n");
        File.WriteAllText(Path.Combine(dir, "sub", "kept.txt"), "kept\n");
        Directory.CreateDirectory(Path.Combine(dir, "skipdir"));
        File.WriteAllText(Path.Combine(dir, "skipdir", "f"), "f\n");
        File.WriteAllText(Path.Combine(dir, ".dockerignore"), "# build context of DockerDaemonSourceTests\nsecret.txt\n**/*.log\n!keep.log\n/skipdir/\nDockerfile\n.dockerignore\n");
        return dir;
    }

    // The process's environment, but DOCKER_CONFIG pointing at a directory of the test.
    private static Func<string, string?> Environment(string dockerConfig) =>
        name => name == "DOCKER_CONFIG" ? dockerConfig : System.Environment.GetEnvironmentVariable(name);

    private static void RemoveImage(string tag)
    {
        using DockerClient client = new DockerClientConfiguration(new Uri("unix://" + TestServices.DockerSocket)).CreateClient();
        try
        {
            client.Images.DeleteImageAsync(tag, new ImageDeleteParameters { Force = true }).GetAwaiter().GetResult();
        }
        catch (DockerImageNotFoundException)
        {
        }
    }
}

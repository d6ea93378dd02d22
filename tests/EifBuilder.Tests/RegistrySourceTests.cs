using System.Collections.Concurrent;
using System.Diagnostics;
using System.Formats.Tar;
using System.IO.Compression;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using EifBuilder.Images;
using EifBuilder.Layers;

namespace EifBuilder.Tests;

/// <summary>
/// The daemonless registry source against a real registry (Debian's docker-registry, distribution 2.8): the one
/// tools/services runs on 127.0.0.1:5000, and a second one with htpasswd authentication that these tests start.
/// Tests skip, saying why, when the registry or the test images (tools/test-images) are not there.
/// </summary>
public class RegistrySourceTests : IClassFixture<RegistrySourceTests.HtpasswdRegistry>, IClassFixture<RegistrySourceTests.TokenRegistry>, IDisposable
{
    private readonly HtpasswdRegistry _htpasswd;
    private readonly TokenRegistry _token;
    private readonly string _temp = Directory.CreateTempSubdirectory("eif-registry-tests").FullName;

    public RegistrySourceTests(HtpasswdRegistry htpasswd, TokenRegistry token)
    {
        _htpasswd = htpasswd;
        _token = token;
    }

    public void Dispose() => Directory.Delete(_temp, recursive: true);

    private ImageSources.Options Options(params string[] insecure) => new()
    {
        TemporaryDirectory = Path.Combine(_temp, "work"),
        InsecureRegistries = insecure,
    };

    // No DOCKER_CONFIG of the machine running the tests leaks in: an empty config directory unless a test gives one.
    private RegistrySource Source(string reference, string? dockerConfig = null, string? pathPrefix = null, string[]? insecure = null)
    {
        Directory.CreateDirectory(Path.Combine(_temp, "work"));
        string config = dockerConfig ?? Directory.CreateDirectory(Path.Combine(_temp, "no-config")).FullName;
        return RegistrySource.Create(reference, Options(insecure ?? []), name => name switch
        {
            "DOCKER_CONFIG" => config,
            "PATH" when pathPrefix is not null => pathPrefix + ":" + Environment.GetEnvironmentVariable(name),
            _ => Environment.GetEnvironmentVariable(name),
        });
    }

    // Reads every layer through the layer store, which checks each blob's digest and size and each diff_id.
    private static List<MaterializedLayer> ReadLayers(ResolvedImage image, string temp)
    {
        var config = ImageConfig.Parse(image.Config, image.Description);
        using var store = new LayerStore(temp);
        return [.. store.AddAll(image.Layers, config.DiffIds, parallelism: 2, CancellationToken.None)];
    }

    [Theory]
    [InlineData("latest", "docker-archive.tar")] // Docker manifest v2 schema 2, gzip layers, pushed from the daemon
    [InlineData("oci", "oci")] // OCI manifest, gzip layers, pushed from the oci/ layout
    [InlineData("zstd", "oci-zstd")] // OCI manifest, zstd layers, pushed from the oci-zstd/ layout
    public void Resolve_TestImagePushedToRegistry_GivesTheConfigAndLayersOfItsSource(string tag, string pushedFrom)
    {
        // skopeo writes an OCI config when it converts to OCI, so the OCI tags have their own config digest; the
        // layers (diff_ids) are the daemon's in every form.
        string archive = TestServices.TestImage("hello", "docker-archive.tar");
        string from = TestServices.TestImage("hello", pushedFrom == "docker-archive.tar" ? pushedFrom : Path.Combine(pushedFrom, "index.json"));
        TestServices.RequireRegistry();
        ResolvedImage daemon = new DockerArchiveSource(archive, null).Resolve("amd64", CancellationToken.None);
        ResolvedImage expected = pushedFrom == "docker-archive.tar" ? daemon : OciLayoutSource.FromDirectory(Path.GetDirectoryName(from)!, null).Resolve("amd64", CancellationToken.None);

        using (RegistrySource source = Source($"{TestServices.Registry}/eif-test/hello:{tag}"))
        {
            ResolvedImage image = source.Resolve("amd64", CancellationToken.None);
            Assert.Equal(expected.ConfigDigest, image.ConfigDigest);
            Assert.Equal(expected.Config, image.Config);
            Assert.Equal($"{TestServices.Registry}/eif-test/hello:{tag}", image.Reference);
            Assert.Equal(ImageConfig.Parse(daemon.Config, "archive").DiffIds, ImageConfig.Parse(image.Config, "registry").DiffIds);
            Assert.Equal(expected.Layers.Count, image.Layers.Count);
            Assert.All(image.Layers, l => Assert.Null(l.Location)); // compressed: streamed once, never indexed in place

            var layers = ReadLayers(image, Path.Combine(_temp, "store"));
            var archived = ReadLayers(daemon, Path.Combine(_temp, "store"));
            Assert.Equal(archived.Select(l => l.Entries.Select(e => e.Name)), layers.Select(l => l.Entries.Select(e => e.Name)));

            // A compressed layer's download is removed once it has been read.
            Assert.Empty(Directory.EnumerateFiles(Path.Combine(_temp, "work"), "*", SearchOption.AllDirectories));
        }

        Assert.Empty(Directory.EnumerateFileSystemEntries(Path.Combine(_temp, "work")));
    }

    [Fact]
    public void Resolve_ByDigest_VerifiesAndGivesTheSameImage()
    {
        TestServices.RequireRegistry();
        var pushed = TestImagePusher.Push(TestServices.RegistryUri, "eif-test/source-tests-digest", "v1", "amd64", compression: false, authorization: null);
        using RegistrySource source = Source($"{TestServices.Registry}/eif-test/source-tests-digest@{pushed.ManifestDigest}");
        ResolvedImage image = source.Resolve("amd64", CancellationToken.None);
        Assert.Equal(pushed.ConfigDigest, image.ConfigDigest.ToString());

        // An uncompressed layer stays where it was downloaded and is indexed in place.
        LayerBlob layer = Assert.Single(image.Layers);
        Assert.NotNull(layer.Location);
        Assert.Equal("hello from amd64\n", ReadFile(image, "hello.txt"));
    }

    [Fact]
    public void Resolve_OciImageIndex_PicksTheRequestedArchitecture()
    {
        TestServices.RequireRegistry();
        var amd64 = TestImagePusher.Push(TestServices.RegistryUri, "eif-test/source-tests-index", "amd64", "amd64", compression: true, authorization: null);
        var arm64 = TestImagePusher.Push(TestServices.RegistryUri, "eif-test/source-tests-index", "arm64", "arm64", compression: true, authorization: null);
        TestImagePusher.PushIndex(TestServices.RegistryUri, "eif-test/source-tests-index", "multi", [amd64, arm64], authorization: null);

        foreach (var (arch, pushed) in new[] { ("amd64", amd64), ("arm64", arm64) })
        {
            using RegistrySource source = Source($"{TestServices.Registry}/eif-test/source-tests-index:multi");
            ResolvedImage image = source.Resolve(arch, CancellationToken.None);
            Assert.Equal(pushed.ConfigDigest, image.ConfigDigest.ToString());
            Assert.Equal($"hello from {arch}\n", ReadFile(image, "hello.txt"));
        }

        using RegistrySource other = Source($"{TestServices.Registry}/eif-test/source-tests-index:multi");
        var ex = Assert.Throws<EnclaveBuildException>(() => other.Resolve("s390x", CancellationToken.None));
        Assert.Equal(BuildError.UnsupportedPlatform, ex.Error);
        Assert.Contains("no linux/s390x image (it has: linux/amd64, linux/arm64)", ex.Message);
    }

    [Fact]
    public void Resolve_DockerManifestListFromTestImages_PicksTheRequestedArchitecture()
    {
        string hello = TestServices.TestImage("hello", "image-id");
        string arm64 = TestServices.TestImage("arm64", "image-id");
        TestServices.TestImage("multiarch", "registry");
        TestServices.RequireRegistry();
        foreach (var (arch, idFile) in new[] { ("amd64", hello), ("arm64", arm64) })
        {
            using RegistrySource source = Source($"{TestServices.Registry}/eif-test/multiarch:latest");
            Assert.Equal(File.ReadAllText(idFile).Trim(), source.Resolve(arch, CancellationToken.None).ConfigDigest.ToString());
        }
    }

    [Theory]
    [InlineData("eif-test/source-tests-no-such-repository:latest")]
    [InlineData("eif-test/hello:no-such-tag")]
    public void Resolve_MissingRepositoryOrTag_IsImageNotFound(string name)
    {
        TestServices.RequireRegistry();
        using RegistrySource source = Source($"{TestServices.Registry}/{name}");
        var ex = Assert.Throws<EnclaveBuildException>(() => source.Resolve("amd64", CancellationToken.None));
        Assert.Equal(BuildError.ImageNotFound, ex.Error);
        Assert.Contains("404", ex.Message);
        Assert.StartsWith($"docker://{TestServices.Registry}/{name}: manifest ", ex.Message);
        Assert.DoesNotContain('\n', ex.Message);
    }

    [Theory]
    [InlineData("auth")] // base64 user:password, as `docker login` writes it
    [InlineData("username")] // "username" and "password" fields
    public void Resolve_RegistryWithBasicAuth_UsesTheCredentialsOfDockerConfig(string form)
    {
        _htpasswd.Require();
        string config = WriteDockerConfig(_htpasswd.Host, AuthenticatingRegistry.User, AuthenticatingRegistry.Password, form);
        using RegistrySource source = Source($"{_htpasswd.Host}/eif-test/private:v1", config);
        ResolvedImage image = source.Resolve("amd64", CancellationToken.None);
        Assert.Equal(_htpasswd.Image.ConfigDigest, image.ConfigDigest.ToString());
        Assert.Equal("hello from amd64\n", ReadFile(image, "hello.txt"));
    }

    [Fact]
    public void Resolve_RegistryWithBasicAuth_WithoutCredentials_IsAccessDenied()
    {
        _htpasswd.Require();
        using RegistrySource source = Source($"{_htpasswd.Host}/eif-test/private:v1");
        var ex = Assert.Throws<EnclaveBuildException>(() => source.Resolve("amd64", CancellationToken.None));
        Assert.Equal(BuildError.AccessDenied, ex.Error);
        Assert.Contains($"run `docker login {_htpasswd.Host}`", ex.Message);
        Assert.Contains("config.json", ex.Message);
    }

    [Fact]
    public void Resolve_RegistryWithBasicAuth_WithWrongPassword_IsAccessDenied()
    {
        _htpasswd.Require();
        string config = WriteDockerConfig(_htpasswd.Host, AuthenticatingRegistry.User, "wrong-password", "auth");
        using RegistrySource source = Source($"{_htpasswd.Host}/eif-test/private:v1", config);
        var ex = Assert.Throws<EnclaveBuildException>(() => source.Resolve("amd64", CancellationToken.None));
        Assert.Equal(BuildError.AccessDenied, ex.Error);
        Assert.Contains("401", ex.Message);
        Assert.Contains($"check the credentials for {_htpasswd.Host}", ex.Message);
    }

    [Fact]
    public void Resolve_RegistryWithBasicAuth_AsksTheCredentialHelperTheConfigNames()
    {
        _htpasswd.Require();
        string bin = Directory.CreateDirectory(Path.Combine(_temp, "bin")).FullName;
        string helper = Path.Combine(bin, "docker-credential-eiftest");

        // docker-credential-helpers protocol: "get", the server on stdin, {ServerURL, Username, Secret} on stdout.
        File.WriteAllText(helper, $$"""
            #!/bin/sh
            read -r server
            if [ "$1" = get ] && [ "$server" = "{{_htpasswd.Host}}" ]; then
              printf '{"ServerURL":"%s","Username":"{{AuthenticatingRegistry.User}}","Secret":"{{AuthenticatingRegistry.Password}}"}' "$server"
            else
              echo "credentials not found in native keychain"; exit 1
            fi
            """);
        if (!OperatingSystem.IsWindows())
            File.SetUnixFileMode(helper, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        string config = Directory.CreateDirectory(Path.Combine(_temp, "helper-config")).FullName;
        File.WriteAllText(Path.Combine(config, "config.json"), $$"""{"credHelpers": {"{{_htpasswd.Host}}": "eiftest"}, "credsStore": "not-installed-here"}""");

        using RegistrySource source = Source($"{_htpasswd.Host}/eif-test/private:v1", config, pathPrefix: bin);
        Assert.Equal(_htpasswd.Image.ConfigDigest, source.Resolve("amd64", CancellationToken.None).ConfigDigest.ToString());
    }

    [Fact]
    public void Resolve_CredentialStoreNotInstalled_IsAccessDeniedNamingIt()
    {
        _htpasswd.Require();
        string config = Directory.CreateDirectory(Path.Combine(_temp, "store-config")).FullName;
        File.WriteAllText(Path.Combine(config, "config.json"), """{"credsStore": "not-installed-here"}""");
        using RegistrySource source = Source($"{_htpasswd.Host}/eif-test/private:v1", config);
        var ex = Assert.Throws<EnclaveBuildException>(() => source.Resolve("amd64", CancellationToken.None));
        Assert.Equal(BuildError.AccessDenied, ex.Error);
        Assert.Contains("docker-credential-not-installed-here is not on PATH", ex.Message);
    }

    [Fact]
    public void Resolve_RegistryWithTokenAuth_GetsABearerTokenWithTheCredentialsOfDockerConfig()
    {
        _token.Require();
        string config = WriteDockerConfig(_token.Host, AuthenticatingRegistry.User, AuthenticatingRegistry.Password, "auth");
        using RegistrySource source = Source($"{_token.Host}/eif-test/private:v1", config);
        ResolvedImage image = source.Resolve("amd64", CancellationToken.None);
        Assert.Equal(_token.Image.ConfigDigest, image.ConfigDigest.ToString());
        Assert.Equal("hello from amd64\n", ReadFile(image, "hello.txt"));
        Assert.Contains($"{AuthenticatingRegistry.User} repository:eif-test/private:pull", _token.Requests); // the scope of the registry's challenge
    }

    [Fact]
    public void Resolve_RegistryWithTokenAuth_Anonymously_IsAccessDenied()
    {
        _token.Require();
        using RegistrySource source = Source($"{_token.Host}/eif-test/private:v1");
        var ex = Assert.Throws<EnclaveBuildException>(() => source.Resolve("amd64", CancellationToken.None));
        Assert.Equal(BuildError.AccessDenied, ex.Error);
        Assert.Contains($"{_token.Host} refused access to manifest v1 (401", ex.Message);
        Assert.Contains("anonymous repository:eif-test/private:pull", _token.Requests);
    }

    [Fact]
    public void Resolve_RegistryWithTokenAuth_WithWrongPassword_IsAccessDeniedByTheTokenService()
    {
        _token.Require();
        string config = WriteDockerConfig(_token.Host, AuthenticatingRegistry.User, "wrong-password", "username");
        using RegistrySource source = Source($"{_token.Host}/eif-test/private:v1", config);
        var ex = Assert.Throws<EnclaveBuildException>(() => source.Resolve("amd64", CancellationToken.None));
        Assert.Equal(BuildError.AccessDenied, ex.Error);
        Assert.Contains("the token service 127.0.0.1:", ex.Message);
        Assert.Contains("refused the credentials from ", ex.Message);
        Assert.DoesNotContain("wrong-password", ex.Message);
    }

    [Fact]
    public void Resolve_NothingListening_IsRemoteErrorNamingTheUrl()
    {
        int port = TestServices.FreePort();
        using RegistrySource source = Source($"127.0.0.1:{port}/eif-test/hello:latest");
        var ex = Assert.Throws<EnclaveBuildException>(() => source.Resolve("amd64", CancellationToken.None));
        Assert.Equal(BuildError.RemoteError, ex.Error);
        Assert.Contains($"cannot reach http://127.0.0.1:{port}/v2/eif-test/hello/manifests/latest", ex.Message);
        Assert.Contains("refused", ex.Message);
    }

    [Theory]
    [InlineData("registry.example.com/app:1", "https://registry.example.com/v2/")]
    [InlineData("app", "https://registry-1.docker.io/v2/")]
    [InlineData("127.0.0.1:5000/app", "http://127.0.0.1:5000/v2/")]
    [InlineData("localhost:5000/app", "http://localhost:5000/v2/")]
    [InlineData("[::1]:5000/app", "http://[::1]:5000/v2/")]
    [InlineData("10.1.2.3:5000/app", "https://10.1.2.3:5000/v2/")]
    public void Create_UsesTlsUnlessTheHostIsLoopback(string reference, string expected) =>
        Assert.Equal(expected, Source(reference).BaseUri.ToString());

    [Theory]
    [InlineData("10.1.2.3:5000")]
    [InlineData("10.1.2.3")] // any port
    [InlineData("10.0.0.0/8")] // a CIDR range, as dockerd's --insecure-registry takes
    public void Create_InsecureRegistry_UsesPlainHttp(string insecure) =>
        Assert.Equal("http://10.1.2.3:5000/v2/", Source("10.1.2.3:5000/app", insecure: [insecure]).BaseUri.ToString());

    [Fact]
    public void Resolve_RedirectToPlainHttpOnAnotherHost_IsRefusedBeforeConnecting()
    {
        // 192.0.2.1 is TEST-NET-1 (RFC 5737): never routed, so a connection attempt would hang, not fail fast.
        using var server = new RedirectServer("http://192.0.2.1:5000/v2/app/manifests/latest");
        using RegistrySource source = Source($"127.0.0.1:{server.Port}/app:latest");
        var clock = Stopwatch.StartNew();
        var ex = Assert.Throws<EnclaveBuildException>(() => source.Resolve("amd64", CancellationToken.None));
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(10), $"took {clock.Elapsed}");
        Assert.Equal(BuildError.RemoteError, ex.Error);
        Assert.Contains("refusing plain HTTP to 192.0.2.1:5000", ex.Message);
        Assert.Contains("--insecure-registry 192.0.2.1:5000", ex.Message);
    }

    [Theory]
    [InlineData("busybox", "docker.io", "library/busybox", "latest", null, "busybox:latest")]
    [InlineData("docker.io/library/busybox:1.36", "docker.io", "library/busybox", "1.36", null, "busybox:1.36")]
    [InlineData("index.docker.io/user/app", "docker.io", "user/app", "latest", null, "user/app:latest")]
    [InlineData("user/app:v1", "docker.io", "user/app", "v1", null, "user/app:v1")]
    [InlineData("localhost/app", "localhost", "app", "latest", null, "localhost/app:latest")]
    [InlineData("127.0.0.1:5000/eif-test/hello:oci", "127.0.0.1:5000", "eif-test/hello", "oci", null, "127.0.0.1:5000/eif-test/hello:oci")]
    [InlineData("registry.example.com/a/b/c", "registry.example.com", "a/b/c", "latest", null, "registry.example.com/a/b/c:latest")]
    [InlineData("host:5000", "docker.io", "library/host", "5000", null, "host:5000")] // a single name: the ':' starts a tag, as in Docker
    [InlineData("app@sha256:0000000000000000000000000000000000000000000000000000000000000000", "docker.io", "library/app", null,
        "sha256:0000000000000000000000000000000000000000000000000000000000000000", "app@sha256:0000000000000000000000000000000000000000000000000000000000000000")]
    public void ImageReference_Parse_NormalisesAsDocker(string text, string domain, string repository, string? tag, string? digest, string familiar)
    {
        var reference = ImageReference.Parse(text, "test");
        Assert.Equal(domain, reference.Domain);
        Assert.Equal(repository, reference.Repository);
        Assert.Equal(tag, reference.Tag);
        Assert.Equal(digest, reference.Digest?.ToString());
        Assert.Equal(familiar, reference.Familiar);
    }

    [Theory]
    [InlineData("")]
    [InlineData("UPPER/case")]
    [InlineData("app:")]
    [InlineData("app:-tag")]
    [InlineData("a//b")]
    [InlineData("app@sha256:short")]
    [InlineData("http://host/app")]
    public void ImageReference_Parse_Malformed_IsInvalidReference(string text)
    {
        var ex = Assert.Throws<EnclaveBuildException>(() => ImageReference.Parse(text, "test"));
        Assert.True(ex.Error is BuildError.InvalidReference, ex.Message);
    }

    private string WriteDockerConfig(string host, string user, string password, string form)
    {
        string dir = Directory.CreateDirectory(Path.Combine(_temp, "docker-config-" + Guid.NewGuid().ToString("N"))).FullName;
        string entry = form == "auth"
            ? $$"""{"auth": "{{Convert.ToBase64String(Encoding.UTF8.GetBytes($"{user}:{password}"))}}"}"""
            : $$"""{"username": "{{user}}", "password": "{{password}}"}""";
        File.WriteAllText(Path.Combine(dir, "config.json"), $$"""{"auths": {"http://{{host}}": {{entry}}, "other.example.com": {"auth": "eDp5"} } }""");
        return dir;
    }

    private string ReadFile(ResolvedImage image, string name)
    {
        var config = ImageConfig.Parse(image.Config, image.Description);
        using var store = new LayerStore(Path.Combine(_temp, "store"));
        for (int i = 0; i < image.Layers.Count; i++)
        {
            MaterializedLayer layer = store.Add(image.Layers[i], config.DiffIds[i], CancellationToken.None);
            if (layer.Entries.FirstOrDefault(e => e.Name == name) is { } entry)
            {
                using var reader = new StreamReader(store.OpenData(i, entry.DataOffset, entry.Size));
                return reader.ReadToEnd();
            }
        }

        throw new InvalidOperationException($"{name} is not in the image");
    }

    /// <summary>A docker-registry on a free loopback port with an <c>auth:</c> section, started once for the class.</summary>
    public abstract class AuthenticatingRegistry : IDisposable
    {
        internal const string User = "eif-user";
        internal const string Password = "eif-password";

        private readonly Process? _process;
        private readonly string? _unavailable;
        private readonly string? _failure;

        protected AuthenticatingRegistry()
        {
            if (!File.Exists(TestServices.RegistryBinary))
            {
                _unavailable = $"{TestServices.RegistryBinary} is not installed (Debian docker-registry; tools/provision installs it)";
                return;
            }

            Host = $"127.0.0.1:{TestServices.FreePort()}";
            File.WriteAllText(Path.Combine(Dir, "config.yml"), $"""
                version: 0.1
                log:
                  level: error
                  accesslog:
                    disabled: true
                storage:
                  filesystem:
                    rootdirectory: {Dir}/storage
                http:
                  addr: {Host}
                  secret: eif-source-tests-not-secret
                auth:
                {AuthSection()}
                """);
            _process = Process.Start(new ProcessStartInfo(TestServices.RegistryBinary, ["serve", Path.Combine(Dir, "config.yml")])
            {
                RedirectStandardOutput = true,
                RedirectStandardError = true,
                UseShellExecute = false,
            })!;
            var log = new StringBuilder();
            _process.OutputDataReceived += (_, e) => log.AppendLine(e.Data);
            _process.ErrorDataReceived += (_, e) => log.AppendLine(e.Data);
            _process.BeginOutputReadLine();
            _process.BeginErrorReadLine();

            var clock = Stopwatch.StartNew();
            using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(2) };
            while (true)
            {
                try
                {
                    // Ours, not another registry that won a race for the port: the challenge carries our marker.
                    using HttpResponseMessage answer = http.GetAsync($"http://{Host}/v2/").GetAwaiter().GetResult();
                    if (answer.StatusCode == HttpStatusCode.Unauthorized && answer.Headers.WwwAuthenticate.ToString().Contains(Marker, StringComparison.Ordinal))
                        break;
                }
                catch (Exception ex) when (ex is HttpRequestException or TaskCanceledException)
                {
                }

                if (_process.HasExited || clock.Elapsed > TimeSpan.FromSeconds(20))
                {
                    _failure = $"the registry on {Host} did not start: {log.ToString().Trim()}";
                    return;
                }

                Thread.Sleep(100);
            }

            try
            {
                Image = TestImagePusher.Push(new Uri($"http://{Host}/"), "eif-test/private", "v1", "amd64", compression: true, PushAuthorization());
            }
            catch (Exception ex)
            {
                // Fails the tests that use this registry, not every test of the class.
                _failure = $"pushing the test image to the registry on {Host} failed: {ex.Message}";
            }
        }

        internal string Host { get; } = string.Empty;

        internal TestImagePusher.Pushed Image { get; } = null!;

        protected string Dir { get; } = Directory.CreateTempSubdirectory("eif-auth-registry").FullName;

        /// <summary>Names this instance in its authentication challenge (realm or service).</summary>
        protected string Marker { get; } = "eif-source-tests-" + Guid.NewGuid().ToString("N");

        /// <summary>Skips the test when the registry could not be started.</summary>
        internal void Require()
        {
            if (_unavailable is not null)
                Assert.Skip(_unavailable);
            if (_failure is not null)
                Assert.Fail(_failure);
        }

        public virtual void Dispose()
        {
            if (_process is { HasExited: false })
            {
                _process.Kill();
                _process.WaitForExit();
            }

            _process?.Dispose();
            Directory.Delete(Dir, recursive: true);
        }

        // The lines under "auth:", indented by two spaces; written before the registry starts.
        protected abstract string AuthSection();

        // What the test image is pushed with.
        protected abstract AuthenticationHeaderValue PushAuthorization();
    }

    /// <summary>Basic authentication from an htpasswd file (distribution's <c>auth: htpasswd</c>, bcrypt only).</summary>
    public sealed class HtpasswdRegistry : AuthenticatingRegistry
    {
        protected override string AuthSection()
        {
            File.WriteAllText(Path.Combine(Dir, "htpasswd"), $"{User}:{BCrypt(Password)}\n");
            return $"  htpasswd:\n    realm: {Marker}\n    path: {Dir}/htpasswd";
        }

        protected override AuthenticationHeaderValue PushAuthorization() =>
            new("Basic", Convert.ToBase64String(Encoding.UTF8.GetBytes($"{User}:{Password}")));

        private static readonly Lock CryptLock = new();

        // crypt(3) of libxcrypt (Debian's libcrypt1) computes bcrypt for a "$2b$" salt: the htpasswd line the
        // registry wants, without another package (htpasswd of apache2-utils, or a bcrypt library). crypt(3)
        // returns a static buffer, so fixtures starting in parallel take turns.
        private static string BCrypt(string password)
        {
            lock (CryptLock)
                return Marshal.PtrToStringAnsi(Crypt(password, "$2b$05$eifsourcetestssaltsalt")) ?? throw new InvalidOperationException("crypt(3) failed");
        }

        [DllImport("libcrypt.so.1", EntryPoint = "crypt", CharSet = CharSet.Ansi)]
        private static extern IntPtr Crypt(string key, string salt);
    }

    /// <summary>
    /// Bearer tokens (distribution's <c>auth: token</c>, docker/distribution docs/spec/auth/token.md) from a token
    /// service run here: it answers the right user and password with a token granting the scope asked for, no
    /// credentials with a token granting nothing (as Docker Hub does for anonymous pulls of a private repository),
    /// and wrong ones with 401. Tokens are ES256 JWTs whose x5c certificate is the registry's rootcertbundle.
    /// </summary>
    public sealed class TokenRegistry : AuthenticatingRegistry
    {
        private const string Issuer = "eif-source-tests-issuer";

        private ECDsa? _key;
        private X509Certificate2? _certificate;
        private HttpListener? _listener;

        /// <summary>The token requests received, as "user scope" lines.</summary>
        internal ConcurrentQueue<string> Requests { get; } = new();

        public override void Dispose()
        {
            base.Dispose();
            _listener?.Close();
            _certificate?.Dispose();
            _key?.Dispose();
        }

        protected override string AuthSection()
        {
            _key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
            _certificate = new CertificateRequest("CN=eif-source-tests token signer", _key, HashAlgorithmName.SHA256)
                .CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(1));
            File.WriteAllText(Path.Combine(Dir, "token.crt"), _certificate.ExportCertificatePem());

            int port = TestServices.FreePort();
            _listener = new HttpListener();
            _listener.Prefixes.Add($"http://127.0.0.1:{port}/");
            _listener.Start();
            _ = Task.Run(Serve);
            return $"  token:\n    realm: http://127.0.0.1:{port}/token\n    service: {Marker}\n    issuer: {Issuer}\n    rootcertbundle: {Dir}/token.crt";
        }

        protected override AuthenticationHeaderValue PushAuthorization() =>
            new("Bearer", Token(User, "repository:eif-test/private:pull,push"));

        private void Serve()
        {
            while (_listener!.IsListening)
            {
                HttpListenerContext context;
                try
                {
                    context = _listener.GetContext();
                }
                catch (HttpListenerException)
                {
                    return;
                }
                catch (ObjectDisposedException)
                {
                    return;
                }

                string? header = context.Request.Headers["Authorization"];
                string scope = context.Request.QueryString["scope"] ?? string.Empty;
                string? user = null;
                if (header is not null && header.StartsWith("Basic ", StringComparison.Ordinal))
                {
                    string[] pair = Encoding.UTF8.GetString(Convert.FromBase64String(header["Basic ".Length..])).Split(':', 2);
                    if (pair[0] != User || pair[1] != Password || context.Request.QueryString["service"] != Marker)
                    {
                        Requests.Enqueue($"{pair[0]} {scope} refused");
                        context.Response.StatusCode = 401;
                        context.Response.Close();
                        continue;
                    }

                    user = pair[0];
                }

                Requests.Enqueue($"{user ?? "anonymous"} {scope}");
                byte[] body = Encoding.UTF8.GetBytes($$"""{"token":"{{Token(user, user is null ? null : scope)}}"}""");
                context.Response.ContentType = "application/json";
                context.Response.Close(body, willBlock: true);
            }
        }

        // A JWT (RFC 7519) signed ES256 (RFC 7518 §3.4: r||s), granting "repository:NAME:ACTIONS" when given.
        private string Token(string? user, string? scope)
        {
            string access = "[]";
            if (scope is { Length: > 0 })
            {
                string[] parts = scope.Split(':');
                string actions = string.Join(",", parts[2].Split(',').Select(a => $"\"{a}\""));
                access = $$"""[{"type":"{{parts[0]}}","name":"{{parts[1]}}","actions":[{{actions}}]}]""";
            }

            long now = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
            string header = $$"""{"typ":"JWT","alg":"ES256","x5c":["{{Convert.ToBase64String(_certificate!.RawData)}}"]}""";
            string claims = $$"""{"iss":"{{Issuer}}","sub":"{{user ?? string.Empty}}","aud":"{{Marker}}","exp":{{now + 600}},"nbf":{{now - 60}},"iat":{{now}},"jti":"{{Guid.NewGuid():N}}","access":{{access}}}""";
            string signed = Base64Url(Encoding.UTF8.GetBytes(header)) + "." + Base64Url(Encoding.UTF8.GetBytes(claims));
            return signed + "." + Base64Url(_key!.SignData(Encoding.ASCII.GetBytes(signed), HashAlgorithmName.SHA256, DSASignatureFormat.IeeeP1363FixedFieldConcatenation));
        }

        private static string Base64Url(byte[] bytes) => Convert.ToBase64String(bytes).TrimEnd('=').Replace('+', '-').Replace('/', '_');
    }

    /// <summary>Answers every request on a loopback port with a redirect.</summary>
    private sealed class RedirectServer : IDisposable
    {
        private readonly TcpListener _listener = new(IPAddress.Loopback, 0);
        private readonly Task _serving;

        internal RedirectServer(string location)
        {
            _listener.Start();
            _serving = Task.Run(async () =>
            {
                while (true)
                {
                    using TcpClient client = await _listener.AcceptTcpClientAsync();
                    using NetworkStream stream = client.GetStream();
                    byte[] buffer = new byte[8192];
                    _ = await stream.ReadAsync(buffer);
                    await stream.WriteAsync(Encoding.ASCII.GetBytes($"HTTP/1.1 307 Temporary Redirect\r\nLocation: {location}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"));
                }
            });
        }

        internal int Port => ((IPEndPoint)_listener.LocalEndpoint).Port;

        public void Dispose() => _listener.Stop();
    }
}

/// <summary>The real services and test images the source tests use (tools/services, tools/test-images).</summary>
internal static class TestServices
{
    internal const string Registry = "127.0.0.1:5000";
    internal const string RegistryBinary = "/usr/bin/docker-registry";
    internal const string DockerSocket = "/var/run/docker.sock";

    internal static Uri RegistryUri { get; } = new($"http://{Registry}/");

    /// <summary>The repository root (the directory holding NitroEnclaves.sln).</summary>
    internal static string Root { get; } = FindRoot();

    /// <summary>A file of .build/test-images/NAME/; skips the test when tools/test-images has not made it.</summary>
    internal static string TestImage(string name, string file)
    {
        string path = Path.Combine(Root, ".build", "test-images", name, file);
        if (!File.Exists(path))
            Assert.Skip($"{path} is missing: run tools/test-images (it builds the test images and pushes them to {Registry})");
        return path;
    }

    /// <summary>Skips the test unless the registry of tools/services answers.</summary>
    internal static void RequireRegistry()
    {
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(3) };
        try
        {
            if (http.GetAsync(new Uri(RegistryUri, "v2/")).GetAwaiter().GetResult().IsSuccessStatusCode)
                return;
        }
        catch (Exception ex) when (ex is HttpRequestException or TaskCanceledException)
        {
        }

        Assert.Skip($"no registry answers on http://{Registry}/v2/: start it with tools/services start");
    }

    /// <summary>Skips the test unless a Docker daemon answers on the default socket.</summary>
    internal static void RequireDocker()
    {
        using var http = new HttpClient(new SocketsHttpHandler
        {
            ConnectCallback = async (_, token) =>
            {
                var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
                await socket.ConnectAsync(new UnixDomainSocketEndPoint(DockerSocket), token);
                return new NetworkStream(socket, ownsSocket: true);
            },
        }) { Timeout = TimeSpan.FromSeconds(3) };
        try
        {
            if (http.GetAsync("http://docker/_ping").GetAwaiter().GetResult().IsSuccessStatusCode)
                return;
        }
        catch (Exception ex) when (ex is HttpRequestException or TaskCanceledException)
        {
        }

        Assert.Skip($"no Docker daemon answers on {DockerSocket}: start one with tools/services start");
    }

    private static readonly HashSet<int> HandedOut = [];

    /// <summary>A loopback port nothing listens on, never the same one twice in this process (fixtures start in parallel).</summary>
    internal static int FreePort()
    {
        while (true)
        {
            var listener = new TcpListener(IPAddress.Loopback, 0);
            listener.Start();
            int port = ((IPEndPoint)listener.LocalEndpoint).Port;
            listener.Stop();
            lock (HandedOut)
            {
                if (HandedOut.Add(port))
                    return port;
            }
        }
    }

    private static string FindRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "NitroEnclaves.sln")))
                return dir.FullName;
        }

        throw new InvalidOperationException($"no NitroEnclaves.sln above {AppContext.BaseDirectory}");
    }
}

/// <summary>
/// Pushes small one-layer images and indexes with the distribution API's upload endpoints
/// (distribution-spec "Push": POST then PUT a blob, PUT a manifest), so that tests do not need skopeo for them.
/// </summary>
internal static class TestImagePusher
{
    internal sealed record Pushed(string ManifestDigest, long ManifestSize, string ConfigDigest, string Architecture);

    /// <summary>An image with one layer holding hello.txt ("hello from ARCH"), tagged <paramref name="tag"/>.</summary>
    internal static Pushed Push(Uri registry, string repository, string tag, string architecture, bool compression, AuthenticationHeaderValue? authorization)
    {
        using HttpClient http = Client(authorization);
        byte[] tar = LayerTar(architecture);
        byte[] layer = compression ? Gzip(tar) : tar;
        byte[] config = Encoding.UTF8.GetBytes($$$"""{"architecture":"{{{architecture}}}","os":"linux","config":{"Cmd":["/hello.txt"]},"rootfs":{"type":"layers","diff_ids":["{{{Sha256(tar)}}}"]}}""");
        PushBlob(http, registry, repository, layer);
        PushBlob(http, registry, repository, config);
        byte[] manifest = Encoding.UTF8.GetBytes($$"""
            {"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
             "config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{{Sha256(config)}}","size":{{config.Length}}},
             "layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar{{(compression ? "+gzip" : string.Empty)}}","digest":"{{Sha256(layer)}}","size":{{layer.Length}}}]}
            """);
        PutManifest(http, registry, repository, tag, manifest, MediaTypes.OciManifest);
        return new Pushed(Sha256(manifest), manifest.Length, Sha256(config), architecture);
    }

    /// <summary>An OCI image index of <paramref name="images"/> (linux/ARCH each), tagged <paramref name="tag"/>.</summary>
    internal static void PushIndex(Uri registry, string repository, string tag, IEnumerable<Pushed> images, AuthenticationHeaderValue? authorization)
    {
        using HttpClient http = Client(authorization);
        string entries = string.Join(",", images.Select(i =>
            $$$"""{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{{{i.ManifestDigest}}}","size":{{{i.ManifestSize}}},"platform":{"architecture":"{{{i.Architecture}}}","os":"linux"}}"""));
        byte[] index = Encoding.UTF8.GetBytes($$"""{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{{entries}}]}""");
        PutManifest(http, registry, repository, tag, index, MediaTypes.OciIndex);
    }

    private static HttpClient Client(AuthenticationHeaderValue? authorization)
    {
        var http = new HttpClient { Timeout = TimeSpan.FromSeconds(30) };
        http.DefaultRequestHeaders.Authorization = authorization;
        return http;
    }

    private static void PushBlob(HttpClient http, Uri registry, string repository, byte[] blob)
    {
        using HttpResponseMessage start = http.PostAsync(new Uri(registry, $"v2/{repository}/blobs/uploads/"), null).GetAwaiter().GetResult();
        Assert.Equal(HttpStatusCode.Accepted, start.StatusCode);
        Uri location = new(new Uri(registry, $"v2/{repository}/blobs/uploads/"), start.Headers.Location!);
        string separator = location.Query.Length > 0 ? "&" : "?";
        using var content = new ByteArrayContent(blob);
        content.Headers.ContentType = new MediaTypeHeaderValue("application/octet-stream");
        using HttpResponseMessage put = http.PutAsync(new Uri(location + separator + "digest=" + Uri.EscapeDataString(Sha256(blob))), content).GetAwaiter().GetResult();
        Assert.Equal(HttpStatusCode.Created, put.StatusCode);
    }

    private static void PutManifest(HttpClient http, Uri registry, string repository, string tag, byte[] manifest, string mediaType)
    {
        using var content = new ByteArrayContent(manifest);
        content.Headers.ContentType = new MediaTypeHeaderValue(mediaType);
        using HttpResponseMessage put = http.PutAsync(new Uri(registry, $"v2/{repository}/manifests/{tag}"), content).GetAwaiter().GetResult();
        Assert.True(put.StatusCode == HttpStatusCode.Created, $"PUT manifest: {(int)put.StatusCode} {put.Content.ReadAsStringAsync().GetAwaiter().GetResult()}");
    }

    private static byte[] LayerTar(string architecture)
    {
        var output = new MemoryStream();
        using (var writer = new TarWriter(output, TarEntryFormat.Pax, leaveOpen: true))
        {
            var entry = new PaxTarEntry(TarEntryType.RegularFile, "hello.txt")
            {
                DataStream = new MemoryStream(Encoding.UTF8.GetBytes($"hello from {architecture}\n")),
                Mode = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead | UnixFileMode.OtherRead,
                ModificationTime = DateTimeOffset.FromUnixTimeSeconds(1_600_000_000),
            };
            writer.WriteEntry(entry);
        }

        return output.ToArray();
    }

    private static byte[] Gzip(byte[] data)
    {
        var output = new MemoryStream();
        using (var gzip = new GZipStream(output, CompressionLevel.Optimal, leaveOpen: true))
            gzip.Write(data);
        return output.ToArray();
    }

    private static string Sha256(byte[] data) => "sha256:" + Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(data));
}

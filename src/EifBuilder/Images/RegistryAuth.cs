using System.Diagnostics;
using System.Net.Http.Headers;
using System.Text;
using EifFormat.Json;

namespace EifBuilder.Images;

/// <summary>A user name and password (or token) for one registry, and where it came from (for messages).</summary>
internal sealed record RegistryCredential(string Username, string Password, string Source);

/// <summary>
/// Registry credentials as the Docker CLI stores them (docker/cli <c>cli/config/configfile/file.go</c>):
/// <c>$DOCKER_CONFIG/config.json</c>, else <c>~/.docker/config.json</c>. <c>auths</c> maps a registry to
/// <c>auth</c> (base64 of <c>user:password</c>) or to <c>username</c>/<c>password</c>; <c>credHelpers</c> (per
/// registry) and <c>credsStore</c> (default) name a <c>docker-credential-NAME</c> program that is asked instead
/// (docker-credential-helpers protocol: <c>get</c>, server URL on stdin, JSON <c>{Username, Secret}</c> on stdout).
/// </summary>
internal sealed class DockerConfigCredentials
{
    /// <summary>The key Docker Hub's credentials are stored under (docker/cli registry.IndexServer).</summary>
    internal const string DockerHubServer = "https://index.docker.io/v1/";

    // A helper is a local program; one that takes longer than this is stuck (waiting for a keyring prompt, say).
    private static readonly TimeSpan HelperTimeout = TimeSpan.FromSeconds(30);

    private readonly Dictionary<string, RegistryCredential> _auths = new(StringComparer.OrdinalIgnoreCase);
    private readonly Dictionary<string, string> _helpers = new(StringComparer.OrdinalIgnoreCase);
    private readonly string? _store;
    private readonly Func<string, string?> _environment;

    private DockerConfigCredentials(string path, Func<string, string?> environment)
    {
        Path = path;
        _environment = environment;
        if (!File.Exists(path))
            return;
        JObject root;
        try
        {
            var info = new FileInfo(path);
            if (info.Length > OciLayoutSource.MaxManifestSize)
                throw new FormatException($"{info.Length} bytes is more than a config file holds");
            root = SerdeJsonParser.Parse(File.ReadAllBytes(path)) as JObject ?? throw new FormatException("not a JSON object");
        }
        catch (Exception ex) when (ex is FormatException or IOException or UnauthorizedAccessException)
        {
            throw new EnclaveBuildException(BuildError.AccessDenied, $"{path}: cannot read the Docker config ({ex.Message}): fix it, or point DOCKER_CONFIG at another directory", ex);
        }

        foreach (var (server, value) in (root["auths"] as JObject)?.Properties ?? [])
        {
            if (value is JObject entry && FromEntry(entry, $"{path} auths[\"{server}\"]") is { } credential)
                _auths[HostOf(server)] = credential;
        }

        foreach (var (server, value) in (root["credHelpers"] as JObject)?.Properties ?? [])
        {
            if (value is JString { Value.Length: > 0 } helper)
                _helpers[HostOf(server)] = helper.Value;
        }

        _store = (root["credsStore"] as JString)?.Value is { Length: > 0 } store ? store : null;
    }

    /// <summary>The config file consulted (it need not exist).</summary>
    internal string Path { get; }

    /// <summary>The static <c>auths</c> entries, keyed by host (helpers are not listed: that would run them all).</summary>
    internal IReadOnlyDictionary<string, RegistryCredential> Auths => _auths;

    /// <summary>Reads the config file DOCKER_CONFIG (a directory, as for the Docker CLI) or HOME point at.</summary>
    /// <param name="environment">Reads an environment variable (a parameter so that tests need not change the process's).</param>
    /// <exception cref="EnclaveBuildException"><see cref="BuildError.AccessDenied"/>: the file exists but cannot be read.</exception>
    internal static DockerConfigCredentials Load(Func<string, string?> environment)
    {
        string directory = environment("DOCKER_CONFIG") is { Length: > 0 } configured
            ? configured
            : System.IO.Path.Combine(environment("HOME") is { Length: > 0 } home ? home : Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".docker");
        return new DockerConfigCredentials(System.IO.Path.Combine(directory, "config.json"), environment);
    }

    /// <summary>The credential for a registry named as in a reference (<c>docker.io</c>, <c>host:5000</c>), or null.</summary>
    /// <exception cref="EnclaveBuildException"><see cref="BuildError.AccessDenied"/>: a credential helper failed.</exception>
    internal RegistryCredential? Find(string domain)
    {
        // Docker Hub's entry is "https://index.docker.io/v1/"; people also write the other names it goes by.
        string[] names = domain == ImageReference.DockerHubDomain ? ["index.docker.io", "docker.io", "registry-1.docker.io"] : [domain];
        foreach (string name in names)
        {
            if (_helpers.TryGetValue(name, out string? helper))
                return AskHelper(helper, domain);
        }

        foreach (string name in names)
        {
            if (_auths.TryGetValue(name, out RegistryCredential? credential))
                return credential;
        }

        return _store is not null ? AskHelper(_store, domain) : null;
    }

    /// <summary>The server name Docker passes to helpers and stores credentials under.</summary>
    internal static string ServerName(string domain) => domain == ImageReference.DockerHubDomain ? DockerHubServer : domain;

    // docker/cli registry.ConvertToHostname: "https://host:5000/v1/" → "host:5000".
    private static string HostOf(string server)
    {
        string host = server;
        if (host.StartsWith("http://", StringComparison.OrdinalIgnoreCase))
            host = host["http://".Length..];
        else if (host.StartsWith("https://", StringComparison.OrdinalIgnoreCase))
            host = host["https://".Length..];
        int slash = host.IndexOf('/', StringComparison.Ordinal);
        return slash >= 0 ? host[..slash] : host;
    }

    private static RegistryCredential? FromEntry(JObject entry, string source)
    {
        if (entry["auth"] is JString { Value.Length: > 0 } auth)
        {
            string decoded;
            try
            {
                decoded = Encoding.UTF8.GetString(Convert.FromBase64String(auth.Value));
            }
            catch (FormatException ex)
            {
                throw new EnclaveBuildException(BuildError.AccessDenied, $"{source}: 'auth' is not base64 ({ex.Message}): log in again (docker login)", ex);
            }

            int colon = decoded.IndexOf(':', StringComparison.Ordinal);
            if (colon < 0)
                throw new EnclaveBuildException(BuildError.AccessDenied, $"{source}: 'auth' is not base64 of user:password: log in again (docker login)");
            return new RegistryCredential(decoded[..colon], decoded[(colon + 1)..], source);
        }

        // An identitytoken alone is an OAuth2 refresh token, which this puller does not exchange: treat it as absent.
        if (entry["username"] is JString { Value.Length: > 0 } user && entry["password"] is JString password)
            return new RegistryCredential(user.Value, password.Value, source);
        return null;
    }

    private RegistryCredential? AskHelper(string helper, string domain)
    {
        string program = $"docker-credential-{helper}";
        string source = $"{Path} ({program})";
        string? executable = (_environment("PATH") ?? string.Empty).Split(':', StringSplitOptions.RemoveEmptyEntries)
            .Select(dir => System.IO.Path.Combine(dir, program))
            .FirstOrDefault(File.Exists);
        if (executable is null)
            throw new EnclaveBuildException(BuildError.AccessDenied, $"{Path} names the credential helper '{helper}', but {program} is not on PATH: install it or remove it from the config");

        var start = new ProcessStartInfo(executable, ["get"])
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        using var process = Process.Start(start) ?? throw new EnclaveBuildException(BuildError.AccessDenied, $"{source}: could not be started");
        process.StandardInput.Write(ServerName(domain));
        process.StandardInput.Close();
        Task<string> output = process.StandardOutput.ReadToEndAsync();
        Task<string> error = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(HelperTimeout))
        {
            process.Kill(entireProcessTree: true);
            throw new EnclaveBuildException(BuildError.AccessDenied, $"{source}: no answer for {domain} within {HelperTimeout.TotalSeconds:0} s");
        }

        string stdout = output.GetAwaiter().GetResult();
        string message = (stdout.Trim().Length > 0 ? stdout : error.GetAwaiter().GetResult()).Trim();

        // docker-credential-helpers credentials.ErrCredentialsNotFound: the helper knows nothing for this server.
        if (process.ExitCode != 0 && message.Contains("credentials not found", StringComparison.OrdinalIgnoreCase))
            return null;
        if (process.ExitCode != 0)
            throw new EnclaveBuildException(BuildError.AccessDenied, $"{source}: failed for {domain} (exit {process.ExitCode}: {EifFormat.PrintableText.Of(message, 200)})");
        try
        {
            var answer = SerdeJsonParser.Parse(Encoding.UTF8.GetBytes(stdout)) as JObject ?? throw new FormatException("not a JSON object");
            string user = (answer["Username"] as JString)?.Value ?? string.Empty;
            string secret = (answer["Secret"] as JString)?.Value ?? string.Empty;

            // "<token>" marks an identity (refresh) token, which this puller does not exchange (see FromEntry).
            return user.Length == 0 || user == "<token>" ? null : new RegistryCredential(user, secret, source);
        }
        catch (FormatException ex)
        {
            throw new EnclaveBuildException(BuildError.AccessDenied, $"{source}: answered something that is not credentials JSON ({ex.Message})", ex);
        }
    }
}

/// <summary>
/// One <c>WWW-Authenticate</c> challenge (RFC 7235 §4.1): a scheme and its parameters, e.g.
/// <c>Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull"</c>
/// (distribution token authentication, docker/distribution <c>docs/spec/auth/token.md</c>).
/// </summary>
internal sealed record AuthChallenge(string Scheme, IReadOnlyDictionary<string, string> Parameters)
{
    /// <summary>The challenges of a 401 response, Bearer first (it is the one that can carry a scope).</summary>
    internal static IReadOnlyList<AuthChallenge> From(HttpResponseMessage response) =>
        response.Headers.WwwAuthenticate
            .Select(h => new AuthChallenge(h.Scheme, ParseParameters(h.Parameter ?? string.Empty)))
            .OrderBy(c => c.Scheme.Equals("Bearer", StringComparison.OrdinalIgnoreCase) ? 0 : 1)
            .ToList();

    /// <summary>The Basic credentials header value for <paramref name="credential"/> (RFC 7617 §2).</summary>
    internal static AuthenticationHeaderValue Basic(RegistryCredential credential) =>
        new("Basic", Convert.ToBase64String(Encoding.UTF8.GetBytes($"{credential.Username}:{credential.Password}")));

    // auth-param = token "=" ( token / quoted-string ), separated by commas (RFC 7235 §2.1, RFC 7230 §3.2.6).
    private static Dictionary<string, string> ParseParameters(string text)
    {
        var result = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
        int i = 0;
        while (i < text.Length)
        {
            while (i < text.Length && (text[i] == ',' || char.IsWhiteSpace(text[i])))
                i++;
            int start = i;
            while (i < text.Length && text[i] != '=' && text[i] != ',')
                i++;
            string key = text[start..i].Trim();
            if (i >= text.Length || text[i] != '=')
                continue;
            i++;
            var value = new StringBuilder();
            if (i < text.Length && text[i] == '"')
            {
                for (i++; i < text.Length && text[i] != '"'; i++)
                    value.Append(text[i] == '\\' && i + 1 < text.Length ? text[++i] : text[i]);
                i++;
            }
            else
            {
                for (; i < text.Length && text[i] != ','; i++)
                    value.Append(text[i]);
            }

            if (key.Length > 0)
                result[key] = value.ToString().Trim();
        }

        return result;
    }
}

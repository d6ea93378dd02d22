using System.Net;
using System.Net.Http.Headers;
using System.Net.Sockets;
using System.Security.Authentication;
using EifFormat.Json;

namespace EifBuilder.Images;

/// <summary>
/// HTTP for one repository of an OCI distribution registry (opencontainers/distribution-spec <c>spec.md</c>,
/// "Pull"): GETs with the registry's authentication dance and a transport policy. Synchronous: the builder reads
/// one blob at a time and <see cref="HttpClient.Send(HttpRequestMessage, HttpCompletionOption, CancellationToken)"/>
/// keeps the call stack plain.
/// </summary>
/// <remarks>
/// Policy: TLS (verified) by default; plain HTTP only to loopback hosts and to the registries the user listed as
/// insecure, checked before every request, redirects included (a blob redirect to storage elsewhere is common).
/// Credentials go only to the registry and its token realm, never along a redirect to another host.
/// </remarks>
internal sealed class RegistryClient : IDisposable
{
    // Redirects followed per request (blob storage usually adds one; HttpClient's own default is 50).
    private const int MaxRedirects = 10;

    // How much of an error body is read into a message.
    private const int MaxErrorBody = 16 << 10;

    private readonly HttpClient _http;
    private readonly ImageReference _reference;
    private readonly string _description;
    private readonly IReadOnlyCollection<string> _insecure;
    private readonly Func<string, string?> _environment;
    private DockerConfigCredentials? _config;
    private AuthenticationHeaderValue? _authorization;

    internal RegistryClient(ImageReference reference, string description, IReadOnlyCollection<string> insecureRegistries, Func<string, string?> environment)
    {
        _reference = reference;
        _description = description;
        _insecure = insecureRegistries;
        _environment = environment;
        BaseUri = new Uri($"{(AllowsPlainHttp(reference.ApiHost) ? "http" : "https")}://{reference.ApiHost}/v2/");
        _http = new HttpClient(new SocketsHttpHandler
        {
            AllowAutoRedirect = false, // followed by hand, so that each hop passes the policy
            AutomaticDecompression = DecompressionMethods.None, // blobs are hashed as stored
            ConnectTimeout = TimeSpan.FromSeconds(30),
            UseCookies = false,
        })
        {
            // Until the response headers arrive; a blob body is read without a deadline (it may be large).
            Timeout = TimeSpan.FromMinutes(2),
        };
        _http.DefaultRequestHeaders.UserAgent.Add(new ProductInfoHeaderValue("eif", typeof(RegistryClient).Assembly.GetName().Version?.ToString(3) ?? "0"));
    }

    /// <summary><c>http(s)://HOST/v2/</c>.</summary>
    internal Uri BaseUri { get; }

    /// <summary>Whether plain HTTP may be used to <paramref name="authority"/> (host or host:port).</summary>
    internal bool AllowsPlainHttp(string authority)
    {
        if (_insecure.Contains(authority, StringComparer.OrdinalIgnoreCase))
            return true;
        string host = authority.StartsWith('[') ? authority[1..authority.IndexOf(']', StringComparison.Ordinal)]
            : authority.Count(c => c == ':') == 1 ? authority[..authority.IndexOf(':', StringComparison.Ordinal)]
            : authority;
        bool isAddress = IPAddress.TryParse(host, out IPAddress? address);
        return host.Equals("localhost", StringComparison.OrdinalIgnoreCase)
            || (isAddress && IPAddress.IsLoopback(address!))
            || _insecure.Contains(host, StringComparer.OrdinalIgnoreCase)

            // dockerd's --insecure-registry also takes CIDR ranges ("10.0.0.0/8").
            || (isAddress && _insecure.Any(i => IPNetwork.TryParse(i, out IPNetwork network) && network.Contains(address!)));
    }

    /// <summary>GETs <c>/v2/NAME/PATH</c> after authenticating as the registry asks; the caller disposes the response.</summary>
    /// <param name="path">Below the repository: <c>manifests/REF</c> or <c>blobs/DIGEST</c>.</param>
    /// <param name="accept">Accept header values.</param>
    /// <param name="what">What is fetched, for messages.</param>
    /// <param name="cancellationToken">Cancels the request.</param>
    /// <returns>A 2xx response; anything else has been turned into an exception.</returns>
    /// <exception cref="EnclaveBuildException">ImageNotFound (404), AccessDenied (401/403), RemoteError (others, network).</exception>
    internal HttpResponseMessage Get(string path, IReadOnlyList<string> accept, string what, CancellationToken cancellationToken)
    {
        var uri = new Uri(BaseUri, $"{_reference.Repository}/{path}");
        HttpResponseMessage response = Send(uri, accept, _authorization, what, cancellationToken);
        if (response.StatusCode == HttpStatusCode.Unauthorized)
        {
            // distribution-spec "Authentication": the 401 carries the challenge to answer; retry once with it.
            using (response)
                _authorization = Answer(AuthChallenge.From(response), what, cancellationToken);
            response = Send(uri, accept, _authorization, what, cancellationToken);
        }

        if (response.IsSuccessStatusCode)
            return response;
        using (response)
            throw Failure(response, what, uri);
    }

    /// <inheritdoc/>
    public void Dispose() => _http.Dispose();

    // Sends a GET, following redirects by hand: every hop must pass the transport policy, and the Authorization
    // header is dropped when a hop leaves the registry's host.
    private HttpResponseMessage Send(Uri uri, IReadOnlyList<string> accept, AuthenticationHeaderValue? authorization, string what, CancellationToken cancellationToken)
    {
        for (int hop = 0; ; hop++)
        {
            EnsureAllowed(uri, what);
            using var request = new HttpRequestMessage(HttpMethod.Get, uri);
            foreach (string type in accept)
                request.Headers.Accept.Add(new MediaTypeWithQualityHeaderValue(type));
            if (authorization is not null && uri.Authority.Equals(BaseUri.Authority, StringComparison.OrdinalIgnoreCase))
                request.Headers.Authorization = authorization;
            HttpResponseMessage response;
            try
            {
                response = _http.Send(request, HttpCompletionOption.ResponseHeadersRead, cancellationToken);
            }
            catch (Exception ex) when (ex is HttpRequestException or TaskCanceledException && !cancellationToken.IsCancellationRequested)
            {
                throw Unreachable(uri, what, ex);
            }

            if ((int)response.StatusCode is 301 or 302 or 303 or 307 or 308 && response.Headers.Location is { } location)
            {
                response.Dispose();
                if (hop == MaxRedirects)
                    throw new EnclaveBuildException(BuildError.RemoteError, $"{_description}: {what}: more than {MaxRedirects} redirects (last to {Printable(location.ToString())})");
                uri = location.IsAbsoluteUri ? location : new Uri(uri, location);
                continue;
            }

            return response;
        }
    }

    private void EnsureAllowed(Uri uri, string what)
    {
        if (uri.Scheme == Uri.UriSchemeHttps || (uri.Scheme == Uri.UriSchemeHttp && AllowsPlainHttp(uri.Authority)))
            return;
        string detail = uri.Scheme == Uri.UriSchemeHttp
            ? $"refusing plain HTTP to {uri.Authority}, which is not a loopback host: use TLS, or pass --insecure-registry {uri.Authority} if the network is trusted"
            : $"refusing the {uri.Scheme}: scheme (only https, or http to loopback and --insecure-registry hosts)";
        throw new EnclaveBuildException(BuildError.RemoteError, $"{_description}: {what}: {Printable(uri.GetLeftPart(UriPartial.Path))}: {detail}");
    }

    // Turns a 401's challenges into the Authorization to retry with.
    private AuthenticationHeaderValue Answer(IReadOnlyList<AuthChallenge> challenges, string what, CancellationToken cancellationToken)
    {
        _config ??= DockerConfigCredentials.Load(_environment);
        RegistryCredential? credential = _config.Find(_reference.Domain);
        foreach (AuthChallenge challenge in challenges)
        {
            if (challenge.Scheme.Equals("Bearer", StringComparison.OrdinalIgnoreCase) && challenge.Parameters.TryGetValue("realm", out string? realm))
                return new AuthenticationHeaderValue("Bearer", FetchToken(realm, challenge, credential, what, cancellationToken));
            if (challenge.Scheme.Equals("Basic", StringComparison.OrdinalIgnoreCase))
            {
                return credential is not null
                    ? AuthChallenge.Basic(credential)
                    : throw new EnclaveBuildException(BuildError.AccessDenied, $"{_description}: {_reference.Domain} asks for a user name and password and {_config.Path} has none for it: run `docker login {_reference.Domain}`");
            }
        }

        string offered = string.Join(", ", challenges.Select(c => c.Scheme));
        throw new EnclaveBuildException(BuildError.AccessDenied, $"{_description}: {what}: 401 Unauthorized with {(offered.Length == 0 ? "no WWW-Authenticate challenge" : "the unsupported challenge " + offered)} (Basic and Bearer are supported)");
    }

    // docker/distribution docs/spec/auth/token.md: GET realm?service=S&scope=repository:NAME:pull, with Basic
    // credentials when there are any (anonymous otherwise); the answer's "token" (or OAuth2 "access_token").
    private string FetchToken(string realm, AuthChallenge challenge, RegistryCredential? credential, string what, CancellationToken cancellationToken)
    {
        if (!Uri.TryCreate(realm, UriKind.Absolute, out Uri? realmUri))
            throw new EnclaveBuildException(BuildError.RemoteError, $"{_description}: the registry's token realm '{Printable(realm)}' is not a URL");
        string scope = challenge.Parameters.TryGetValue("scope", out string? s) && s.Length > 0 ? s : $"repository:{_reference.Repository}:pull";
        var query = new List<string>();
        if (challenge.Parameters.TryGetValue("service", out string? service))
            query.Add("service=" + Uri.EscapeDataString(service));
        query.Add("scope=" + Uri.EscapeDataString(scope));
        var tokenUri = new UriBuilder(realmUri) { Query = string.Join('&', new[] { realmUri.Query.TrimStart('?') }.Where(q => q.Length > 0).Concat(query)) }.Uri;

        EnsureAllowed(tokenUri, "the token request");
        using var request = new HttpRequestMessage(HttpMethod.Get, tokenUri);
        if (credential is not null)
            request.Headers.Authorization = AuthChallenge.Basic(credential);
        HttpResponseMessage response;
        try
        {
            response = _http.Send(request, HttpCompletionOption.ResponseHeadersRead, cancellationToken);
        }
        catch (Exception ex) when (ex is HttpRequestException or TaskCanceledException && !cancellationToken.IsCancellationRequested)
        {
            throw Unreachable(tokenUri, "the token request", ex);
        }

        using (response)
        {
            if (response.StatusCode is HttpStatusCode.Unauthorized or HttpStatusCode.Forbidden)
            {
                string who = credential is null ? $"anonymous access (no credentials for {_reference.Domain} in {_config!.Path}: run `docker login {_reference.Domain}`)" : $"the credentials from {credential.Source}";
                throw new EnclaveBuildException(BuildError.AccessDenied, $"{_description}: the token service {realmUri.Authority} refused {who}: {(int)response.StatusCode} {ErrorDetail(response)}");
            }

            if (!response.IsSuccessStatusCode)
                throw new EnclaveBuildException(BuildError.RemoteError, $"{_description}: the token service {Printable(realmUri.GetLeftPart(UriPartial.Path))} answered {(int)response.StatusCode} {ErrorDetail(response)}");
            byte[] body = ReadBounded(response, OciLayoutSource.MaxManifestSize, "the token response", cancellationToken);
            try
            {
                var json = SerdeJsonParser.Parse(body) as JObject;
                string? token = (json?["token"] as JString)?.Value ?? (json?["access_token"] as JString)?.Value;
                return token is { Length: > 0 } ? token : throw new FormatException("no 'token'");
            }
            catch (FormatException ex)
            {
                throw new EnclaveBuildException(BuildError.RemoteError, $"{_description}: the token service {realmUri.Authority} answered without a token ({ex.Message})", ex);
            }
        }
    }

    /// <summary>Reads a whole body of at most <paramref name="max"/> bytes.</summary>
    /// <exception cref="EnclaveBuildException"><see cref="BuildError.InvalidImage"/>: the body is larger.</exception>
    internal byte[] ReadBounded(HttpResponseMessage response, int max, string what, CancellationToken cancellationToken)
    {
        if (response.Content.Headers.ContentLength > max)
            throw new EnclaveBuildException(BuildError.InvalidImage, $"{_description}: {what} is {response.Content.Headers.ContentLength} bytes, more than the {max} read");
        using Stream stream = response.Content.ReadAsStream(cancellationToken);
        var buffer = new MemoryStream();
        byte[] chunk = new byte[81920];
        int read;
        try
        {
            while ((read = stream.Read(chunk)) > 0)
            {
                if (buffer.Length + read > max)
                    throw new EnclaveBuildException(BuildError.InvalidImage, $"{_description}: {what} is more than the {max} bytes read");
                buffer.Write(chunk, 0, read);
            }
        }
        catch (IOException ex)
        {
            throw new EnclaveBuildException(BuildError.RemoteError, $"{_description}: {what}: the connection failed while reading ({ex.Message})", ex);
        }

        return buffer.ToArray();
    }

    private EnclaveBuildException Failure(HttpResponseMessage response, string what, Uri uri)
    {
        string detail = $"{(int)response.StatusCode} {ErrorDetail(response)}";
        return response.StatusCode switch
        {
            HttpStatusCode.NotFound => new EnclaveBuildException(BuildError.ImageNotFound, $"{_description}: {what} is not in the registry ({detail})"),
            HttpStatusCode.Unauthorized or HttpStatusCode.Forbidden => new EnclaveBuildException(BuildError.AccessDenied,
                $"{_description}: {_reference.Domain} refused access to {what} ({detail}){(_authorization?.Scheme == "Basic" ? $": check the credentials for {_reference.Domain} in {_config?.Path}" : string.Empty)}"),
            _ => new EnclaveBuildException(BuildError.RemoteError, $"{_description}: {what}: GET {Printable(uri.GetLeftPart(UriPartial.Path))} answered {detail}"),
        };
    }

    private EnclaveBuildException Unreachable(Uri uri, string what, Exception ex)
    {
        // The innermost message says what happened (refused, name not resolved, certificate rejected).
        Exception inner = ex;
        while (inner.InnerException is not null && inner is not (SocketException or AuthenticationException))
            inner = inner.InnerException;
        string reason = ex is TaskCanceledException ? $"no answer within {_http.Timeout.TotalSeconds:0} s" : inner.Message;
        return new EnclaveBuildException(BuildError.RemoteError, $"{_description}: {what}: cannot reach {Printable(uri.GetLeftPart(UriPartial.Path))}: {Printable(reason)}", ex);
    }

    // The registry's error (distribution-spec "Error Codes": {"errors":[{"code","message"}]}) or the reason phrase.
    private static string ErrorDetail(HttpResponseMessage response)
    {
        string reason = response.ReasonPhrase ?? string.Empty;
        try
        {
            using Stream stream = response.Content.ReadAsStream();
            byte[] buffer = new byte[MaxErrorBody];
            int length = 0, read;
            while (length < buffer.Length && (read = stream.Read(buffer, length, buffer.Length - length)) > 0)
                length += read;
            if (SerdeJsonParser.Parse(buffer.AsSpan(0, length)) is JObject { } json && json["errors"] is JArray { Items.Count: > 0 } errors)
            {
                return Printable(reason + ": " + string.Join("; ", errors.Items.OfType<JObject>().Select(e =>
                    $"{(e["code"] as JString)?.Value} {(e["message"] as JString)?.Value}".Trim())));
            }
        }
        catch (Exception ex) when (ex is FormatException or IOException or HttpRequestException)
        {
            // Not the spec's error JSON (a proxy's HTML page, say): the status line says enough.
        }

        return Printable(reason);
    }

    private static string Printable(string text) => EifFormat.PrintableText.Of(text, 200);
}

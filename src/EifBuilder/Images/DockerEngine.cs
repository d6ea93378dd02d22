using System.Net;
using System.Net.Sockets;
using Docker.DotNet;
using EifFormat.Json;

namespace EifBuilder.Images;

/// <summary>
/// A connection to a Docker daemon's Engine API: Docker.DotNet for the operations (pull, save, build), and a plain
/// HttpClient on the same endpoint for <c>GET /images/{name}/json</c>, whose raw JSON is what the builder embeds
/// (Docker.DotNet only hands out its typed model, which drops fields it does not know and reformats dates).
/// </summary>
internal sealed class DockerEngine : IDisposable
{
    /// <summary>The daemon's default socket (Docker docs, "dockerd": <c>-H unix:///var/run/docker.sock</c>).</summary>
    internal const string DefaultHost = "unix:///var/run/docker.sock";

    // Ordinary requests (inspect) are quick; a daemon that has not answered in this time is stuck.
    private static readonly TimeSpan RequestTimeout = TimeSpan.FromSeconds(60);

    private readonly HttpClient _raw;
    private readonly string? _socket;

    private DockerEngine(string endpoint, DockerClient client, HttpClient raw, string? socket)
    {
        Endpoint = endpoint;
        Client = client;
        _raw = raw;
        _socket = socket;
    }

    /// <summary>The endpoint, as configured (for messages).</summary>
    internal string Endpoint { get; }

    /// <summary>The Docker.DotNet client.</summary>
    internal DockerClient Client { get; }

    /// <summary>Connects (lazily: nothing is sent yet) to <paramref name="configured"/>, else DOCKER_HOST, else the default socket.</summary>
    /// <param name="configured">The endpoint the user gave, or null.</param>
    /// <param name="environment">Reads an environment variable (DOCKER_HOST, DOCKER_TLS_VERIFY).</param>
    /// <param name="what">Prefixes messages.</param>
    /// <exception cref="EnclaveBuildException"><see cref="BuildError.DaemonUnreachable"/>: an endpoint this client cannot use.</exception>
    internal static DockerEngine Connect(string? configured, Func<string, string?> environment, string what)
    {
        string endpoint = configured is { Length: > 0 } ? configured
            : environment("DOCKER_HOST") is { Length: > 0 } env ? env
            : DefaultHost;
        if (!Uri.TryCreate(endpoint, UriKind.Absolute, out Uri? uri))
            throw new EnclaveBuildException(BuildError.DaemonUnreachable, $"{what}: the Docker endpoint '{EifFormat.PrintableText.Of(endpoint, 200)}' is not a URL (unix:///PATH or tcp://HOST:PORT)");

        SocketsHttpHandler handler = new() { UseCookies = false, AllowAutoRedirect = false };
        Uri rawBase;
        string? socket = null;
        switch (uri.Scheme)
        {
            case "unix":
                // The Engine API over a Unix socket: HTTP/1.1 with any host name (Docker docs, "Engine API").
                socket = uri.AbsolutePath;
                handler.ConnectCallback = async (_, cancellationToken) =>
                {
                    var s = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
                    try
                    {
                        await s.ConnectAsync(new UnixDomainSocketEndPoint(socket), cancellationToken).ConfigureAwait(false);
                        return new NetworkStream(s, ownsSocket: true);
                    }
                    catch
                    {
                        s.Dispose();
                        throw;
                    }
                };
                rawBase = new Uri("http://docker/");
                break;
            case "tcp" or "http":
                // Docker.DotNet speaks TLS to a daemon only with client certificates from a package this builder
                // does not take; refuse rather than silently talk plain HTTP to a daemon that expects TLS.
                if (environment("DOCKER_TLS_VERIFY") is { Length: > 0 })
                    throw new EnclaveBuildException(BuildError.DaemonUnreachable, $"{what}: DOCKER_TLS_VERIFY is set, but TLS to the Docker daemon ({endpoint}) is not supported: use its unix socket, or forward it (ssh -L)");
                rawBase = new Uri($"http://{uri.Authority}/");
                break;
            default:
                throw new EnclaveBuildException(BuildError.DaemonUnreachable, $"{what}: the Docker endpoint scheme '{uri.Scheme}' ({endpoint}) is not supported: use unix:///PATH or tcp://HOST:PORT");
        }

        var configuration = new DockerClientConfiguration(uri, defaultTimeout: RequestTimeout);
        return new DockerEngine(endpoint, configuration.CreateClient(), new HttpClient(handler) { BaseAddress = rawBase, Timeout = RequestTimeout }, socket);
    }

    /// <summary>
    /// The daemon's image inspect (Engine API <c>GET /images/{name}/json</c>) as the JSON it sent, keys sorted as
    /// serde_json holds them; null when the daemon has no such image.
    /// </summary>
    /// <exception cref="EnclaveBuildException">DaemonUnreachable, or RemoteError for an error answer.</exception>
    internal JObject? InspectImage(string name, string what, CancellationToken cancellationToken)
    {
        HttpResponseMessage response;
        try
        {
            response = _raw.GetAsync($"images/{name}/json", cancellationToken).GetAwaiter().GetResult();
        }
        catch (Exception ex) when (ex is HttpRequestException or TaskCanceledException && !cancellationToken.IsCancellationRequested)
        {
            throw Unreachable(ex, what);
        }

        using (response)
        {
            byte[] body = response.Content.ReadAsByteArrayAsync(cancellationToken).GetAwaiter().GetResult();
            if (response.StatusCode == HttpStatusCode.NotFound)
                return null;
            if (!response.IsSuccessStatusCode)
                throw new EnclaveBuildException(BuildError.RemoteError, $"{what}: the Docker daemon ({Endpoint}) answered the image inspect with {(int)response.StatusCode} {ErrorMessage(body)}");
            try
            {
                return SerdeJsonParser.Parse(body) as JObject ?? throw new FormatException("not a JSON object");
            }
            catch (FormatException ex)
            {
                throw new EnclaveBuildException(BuildError.RemoteError, $"{what}: the Docker daemon ({Endpoint}) answered the image inspect with something that is not JSON ({ex.Message})", ex);
            }
        }
    }

    /// <summary>
    /// The error for a request that did not reach the daemon, naming the endpoint and how to start a daemon;
    /// null when <paramref name="ex"/> is not a connection failure.
    /// </summary>
    internal EnclaveBuildException? TryUnreachable(Exception ex, string what) =>
        ex is HttpRequestException or SocketException or TimeoutException || (ex is TaskCanceledException && ex.InnerException is TimeoutException)
            ? Unreachable(ex, what)
            : null;

    /// <summary>The message of a daemon error (Engine API errors are <c>{"message": "..."}</c>), made one safe line.</summary>
    internal static string ErrorMessage(string? body)
    {
        if (body is { Length: > 0 })
        {
            try
            {
                if (SerdeJsonParser.Parse(System.Text.Encoding.UTF8.GetBytes(body)) is JObject { } json && json["message"] is JString message)
                    return EifFormat.PrintableText.Of(message.Value.Trim(), 300);
            }
            catch (FormatException)
            {
                // Not the API's error JSON: show the text itself.
            }
        }

        return EifFormat.PrintableText.Of(body?.Trim() ?? string.Empty, 300);
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        Client.Dispose();
        _raw.Dispose();
    }

    private static string ErrorMessage(byte[] body) => ErrorMessage(System.Text.Encoding.UTF8.GetString(body));

    private EnclaveBuildException Unreachable(Exception ex, string what)
    {
        Exception inner = ex;
        while (inner.InnerException is not null && inner is not SocketException)
            inner = inner.InnerException;
        // A missing socket file surfaces as EADDRNOTAVAIL ("Cannot assign requested address"): say what it is.
        string reason = ex is TaskCanceledException or TimeoutException ? $"no answer within {RequestTimeout.TotalSeconds:0} s"
            : _socket is not null && !File.Exists(_socket) ? $"no such socket: {_socket}"
            : inner.Message;
        string hint = inner is SocketException { SocketErrorCode: SocketError.AccessDenied }
            ? "run as root or as a member of the docker group"
            : "is dockerd running? Start it (`sudo dockerd &`, or tools/services start in this repository) or point DOCKER_HOST at a running daemon";
        return new EnclaveBuildException(BuildError.DaemonUnreachable, $"{what}: no Docker daemon answers on {Endpoint} ({EifFormat.PrintableText.Of(reason, 200)}): {hint}", ex);
    }
}

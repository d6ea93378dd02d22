using System.IO.Pipelines;
using System.Net;
using System.Text.RegularExpressions;
using Docker.DotNet;
using Docker.DotNet.Models;
using EifFormat.Json;

namespace EifBuilder.Images;

/// <summary>
/// Images in a Docker daemon (<c>docker-daemon:REF</c>, nitro-cli's <c>--docker-uri</c>), reached through its
/// Engine API (DOCKER_HOST, else <c>unix:///var/run/docker.sock</c>). The image is inspected, pulled through the
/// daemon when it is missing, then streamed out with <c>docker save</c> (<c>GET /images/{name}/get</c>) into a
/// temporary docker-archive file that <see cref="DockerArchiveSource"/> reads in place; the file is removed on
/// <see cref="Dispose"/>.
/// </summary>
public sealed partial class DockerDaemonSource : IImageSource
{
    private readonly string _text;
    private readonly string _description;
    private readonly ImageReference? _reference;
    private readonly string _name;
    private readonly ImageSources.Options _options;
    private readonly Func<string, string?> _environment;
    private readonly List<string> _temporaryFiles = [];

    private DockerDaemonSource(string text, ImageSources.Options options, Func<string, string?> environment)
    {
        _text = text;
        _environment = environment;
        _description = $"docker-daemon:{EifFormat.PrintableText.Of(text, 200)}";
        _options = options;

        // An image ID ("sha256:HEX") names one image and is never pulled (skopeo's docker-daemon:algo:digest).
        if (ImageId().IsMatch(text))
        {
            _name = text;
        }
        else
        {
            _reference = ImageReference.Parse(text, _description);
            _name = _reference.Familiar; // Docker's normalisation: "name" is "name:latest"
        }
    }

    /// <summary>Opens the daemon source for <paramref name="reference"/>; the daemon is contacted by <see cref="Resolve"/>.</summary>
    /// <exception cref="EnclaveBuildException"><see cref="BuildError.InvalidReference"/>.</exception>
    public static IImageSource Create(string reference, ImageSources.Options options) => Create(reference, options, Environment.GetEnvironmentVariable);

    /// <summary>As <see cref="Create(string, ImageSources.Options)"/>, reading DOCKER_HOST, DOCKER_CONFIG and HOME through <paramref name="environment"/>.</summary>
    internal static DockerDaemonSource Create(string reference, ImageSources.Options options, Func<string, string?> environment) =>
        new(reference, options, environment);

    /// <summary>
    /// nitro-cli's <c>--docker-dir DIR</c>: builds <c>DIR/Dockerfile</c> through the daemon (the context tarred and
    /// streamed, <c>.dockerignore</c> honoured, the build output sent to <see cref="ImageSources.Options.Log"/>),
    /// tags the result <paramref name="tag"/>, and opens it.
    /// </summary>
    /// <exception cref="EnclaveBuildException">
    /// <see cref="BuildError.BuildFailed"/> (no Dockerfile, a bad .dockerignore, the build's own error),
    /// <see cref="BuildError.InvalidReference"/> (the tag), <see cref="BuildError.DaemonUnreachable"/>.
    /// </exception>
    public static IImageSource Build(string directory, string tag, ImageSources.Options options, CancellationToken cancellationToken) =>
        Build(directory, tag, options, Environment.GetEnvironmentVariable, cancellationToken);

    /// <summary>As <see cref="Build(string, string, ImageSources.Options, CancellationToken)"/>, reading the environment through <paramref name="environment"/>.</summary>
    internal static DockerDaemonSource Build(string directory, string tag, ImageSources.Options options, Func<string, string?> environment, CancellationToken cancellationToken)
    {
        string what = $"--docker-dir {EifFormat.PrintableText.Of(directory, 200)}";
        ImageReference reference = ImageReference.Parse(tag, $"{what}: the tag");
        DockerBuildContext context = DockerBuildContext.Open(directory, what);
        using DockerEngine engine = DockerEngine.Connect(options.DockerHost, environment, what);

        string? error = null;
        var progress = new Reporter<JSONMessage>(message =>
        {
            foreach (string line in Lines(message.Stream).Concat(Lines(message.Status)))
                options.Log(line);
            if (message.Error?.Message is { Length: > 0 } e)
                error ??= e;
            else if (message.ErrorMessage is { Length: > 0 } m)
                error ??= m;
        });

        // FROM may pull: the daemon gets the credentials of the docker config, as the CLI sends them (X-Registry-Config).
        var auths = DockerConfigCredentials.Load(environment).Auths
            .Select(a => new AuthConfig { ServerAddress = a.Key == "index.docker.io" ? DockerConfigCredentials.DockerHubServer : a.Key, Username = a.Value.Username, Password = a.Value.Password })
            .ToList();
        var parameters = new ImageBuildParameters
        {
            Dockerfile = DockerBuildContext.Dockerfile,
            Tags = [tag],
            Remove = true,
        };

        // The context goes through a pipe: written by one task while Docker.DotNet sends it, never whole in memory.
        var pipe = new Pipe(new PipeOptions(pauseWriterThreshold: 1 << 20, resumeWriterThreshold: 1 << 19));
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        Task writer = Task.Factory.StartNew(
            () =>
            {
                // leaveOpen: completing the pipe is done here, with the error when there is one, so that the
                // request fails instead of sending the daemon a tar cut short.
                try
                {
                    using (Stream output = pipe.Writer.AsStream(leaveOpen: true))
                        context.WriteTar(output, what, stop.Token);
                    pipe.Writer.Complete();
                }
                catch (Exception ex)
                {
                    pipe.Writer.Complete(ex);
                    throw;
                }
            },
            stop.Token,
            TaskCreationOptions.LongRunning,
            TaskScheduler.Default);

        Exception? failure = null;
        try
        {
            using Stream body = pipe.Reader.AsStream();
            engine.Client.Images.BuildImageFromDockerfileAsync(parameters, body, auths, new Dictionary<string, string>(), progress, cancellationToken)
                .WaitAsync(cancellationToken).GetAwaiter().GetResult();
        }
        catch (Exception ex) when (ex is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
        {
            failure = ex;
        }
        finally
        {
            stop.Cancel();
            pipe.Reader.Complete();
        }

        // A context that could not be written (a socket in it, say) is the cause of whatever the daemon or the
        // connection then said, so its error comes first.
        try
        {
            writer.GetAwaiter().GetResult();
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            // Stopped above: the daemon had what it read, or the request had failed.
        }

        switch (failure)
        {
            case null:
                break;
            case DockerApiException api:
                throw new EnclaveBuildException(BuildError.BuildFailed, $"{what}: docker build failed: {DockerEngine.ErrorMessage(api.ResponseBody)}", api);
            case var other when engine.TryUnreachable(other, what) is { } unreachable:
                throw unreachable;
            default:
                System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(failure);
                break;
        }

        cancellationToken.ThrowIfCancellationRequested(); // Docker.DotNet ends the message loop quietly on cancellation
        if (error is not null)
            throw new EnclaveBuildException(BuildError.BuildFailed, $"{what}: docker build failed: {EifFormat.PrintableText.Of(error.Trim(), 300)}");
        options.Log($"{what}: built {reference.Familiar}");
        return Create(tag, options, environment);
    }

    /// <inheritdoc/>
    public ResolvedImage Resolve(string architecture, CancellationToken cancellationToken)
    {
        using DockerEngine engine = DockerEngine.Connect(_options.DockerHost, _environment, _description);
        JObject inspect = engine.InspectImage(_name, _description, cancellationToken)
            ?? Pull(engine, architecture, cancellationToken);

        string id = (inspect["Id"] as JString)?.Value ?? throw new EnclaveBuildException(BuildError.RemoteError, $"{_description}: the daemon's image inspect has no Id");
        string os = (inspect["Os"] as JString)?.Value ?? string.Empty;
        string arch = (inspect["Architecture"] as JString)?.Value ?? string.Empty;
        if (os != "linux" || arch != architecture)
        {
            throw new EnclaveBuildException(BuildError.UnsupportedPlatform,
                $"{_description}: the daemon's image is {os}/{arch}, the enclave needs linux/{architecture}: pull or build that platform (docker pull --platform linux/{architecture} {EifFormat.PrintableText.Of(_text, 200)})");
        }

        string archive = Save(engine, id, cancellationToken);
        ResolvedImage saved = new DockerArchiveSource(archive, null) { Description = _description }.Resolve(architecture, cancellationToken);

        // Saved by ID, so the archive holds the inspected image even if the tag moved meanwhile; check it anyway by
        // its layers: the Id is the config digest with the classic image store, but the manifest or index digest
        // with the containerd one, while RootFS.Layers are the config's diff_ids with both.
        var inspected = ((inspect["RootFS"] as JObject)?["Layers"] as JArray)?.Items.Select(l => (l as JString)?.Value).ToList() ?? [];
        var savedLayers = ImageConfig.Parse(saved.Config, $"{_description} config {saved.ConfigDigest}").DiffIds.Select(d => d.ToString()).ToList();
        if (!inspected.SequenceEqual(savedLayers))
            throw new EnclaveBuildException(BuildError.DigestMismatch, $"{_description}: the daemon saved image {saved.ConfigDigest}, whose layers are not those its inspect of {EifFormat.PrintableText.Of(id, 80)} lists");
        return saved with { Reference = _text, DockerInspect = inspect };
    }

    /// <summary>Removes the temporary archives.</summary>
    public void Dispose()
    {
        foreach (string file in _temporaryFiles)
            File.Delete(file);
        _temporaryFiles.Clear();
    }

    // Engine API POST /images/create?fromImage=NAME&tag=TAG&platform=linux/ARCH (as `docker pull` sends it).
    private JObject Pull(DockerEngine engine, string architecture, CancellationToken cancellationToken)
    {
        if (_reference is null)
            throw new EnclaveBuildException(BuildError.ImageNotFound, $"{_description}: the daemon has no image with this ID");
        _options.Log($"{_description}: not in the daemon; pulling {_reference.Familiar} for linux/{architecture}");

        string? error = null;
        var progress = new Reporter<JSONMessage>(message =>
        {
            // Layer progress bars are one message per chunk; the status lines ("Pulling fs layer", "Pull complete") say enough.
            if (message.Progress is null && message.Status is { Length: > 0 } status)
                _options.Log(message.ID is { Length: > 0 } id ? $"{id}: {status}" : status);
            if (message.Error?.Message is { Length: > 0 } e)
                error ??= e;
            else if (message.ErrorMessage is { Length: > 0 } m)
                error ??= m;
        });

        RegistryCredential? credential = DockerConfigCredentials.Load(_environment).Find(_reference.Domain);
        var auth = credential is null ? null : new AuthConfig
        {
            Username = credential.Username,
            Password = credential.Password,
            ServerAddress = DockerConfigCredentials.ServerName(_reference.Domain),
        };
        var parameters = new ImagesCreateParameters
        {
            FromImage = _reference.FamiliarName,
            Tag = _reference.Digest?.ToString() ?? _reference.Tag,
            Platform = $"linux/{architecture}",
        };
        try
        {
            // WaitAsync: Docker.DotNet sends the request itself without the token, so cancelling must not wait for it.
            engine.Client.Images.CreateImageAsync(parameters, auth, progress, cancellationToken).WaitAsync(cancellationToken).GetAwaiter().GetResult();
        }
        catch (DockerApiException ex)
        {
            throw PullFailure(ex.StatusCode, DockerEngine.ErrorMessage(ex.ResponseBody), ex);
        }
        catch (Exception ex) when (engine.TryUnreachable(ex, _description) is { } unreachable)
        {
            throw unreachable;
        }

        cancellationToken.ThrowIfCancellationRequested(); // Docker.DotNet ends the message loop quietly on cancellation
        if (error is not null)
            throw PullFailure(HttpStatusCode.OK, EifFormat.PrintableText.Of(error.Trim(), 300), null);
        return engine.InspectImage(_name, _description, cancellationToken)
            ?? throw new EnclaveBuildException(BuildError.ImageNotFound, $"{_description}: the pull finished, but the daemon still has no image {_reference.Familiar}");
    }

    // The daemon reports a failed pull as an HTTP status (before the stream starts) or as an error message in the
    // stream. Not found and denied have their own codes; a registry that cannot be reached at all leaves the image
    // not found too (the daemon has none), with the daemon's reason.
    private EnclaveBuildException PullFailure(HttpStatusCode status, string message, Exception? inner)
    {
        string pulling = $"{_description}: the daemon has no such image and pulling {_reference!.Familiar} failed: {message}";
        bool denied = status is HttpStatusCode.Unauthorized or HttpStatusCode.Forbidden
            || (status != HttpStatusCode.NotFound && DeniedWords().IsMatch(message));
        if (denied)
            return new EnclaveBuildException(BuildError.AccessDenied, $"{pulling} (log in with `docker login {_reference.Domain}`)", inner);
        if (status == HttpStatusCode.OK)
            return new EnclaveBuildException(BuildError.RemoteError, pulling, inner); // failed halfway, while downloading
        return new EnclaveBuildException(BuildError.ImageNotFound, pulling, inner);
    }

    // Engine API GET /images/{name}/get, streamed to a file next to the other temporary files.
    private string Save(DockerEngine engine, string id, CancellationToken cancellationToken)
    {
        string root = _options.TemporaryDirectory ?? Path.GetTempPath();
        string path = Path.Combine(root, $"eif-docker-save-{Guid.NewGuid():N}.tar");
        _temporaryFiles.Add(path);
        _options.Log($"{_description}: saving {id} from the daemon");
        try
        {
            using Stream image = engine.Client.Images.SaveImageAsync(id, cancellationToken).WaitAsync(cancellationToken).GetAwaiter().GetResult();
            using var file = new FileStream(path, FileMode.CreateNew, FileAccess.Write, FileShare.None, bufferSize: 1 << 16);
            image.CopyTo(file, 1 << 16);
        }
        catch (DockerApiException ex)
        {
            throw new EnclaveBuildException(BuildError.RemoteError, $"{_description}: the daemon could not save the image: {(int)ex.StatusCode} {DockerEngine.ErrorMessage(ex.ResponseBody)}", ex);
        }
        catch (Exception ex) when (engine.TryUnreachable(ex, _description) is { } unreachable)
        {
            throw unreachable;
        }
        catch (IOException ex)
        {
            throw new EnclaveBuildException(BuildError.RemoteError, $"{_description}: saving the image from the daemon into {path} failed ({ex.Message})", ex);
        }

        return path;
    }

    private static IEnumerable<string> Lines(string? text) =>
        (text ?? string.Empty).Split('\n').Select(l => l.TrimEnd('\r')).Where(l => l.Trim().Length > 0);

    [GeneratedRegex("^sha256:[0-9a-f]{64}$")]
    private static partial Regex ImageId();

    // How registries and the daemon word a refusal (distribution-spec error codes UNAUTHORIZED, DENIED).
    [GeneratedRegex("unauthorized|authentication required|access denied|denied:|no basic auth credentials", RegexOptions.IgnoreCase)]
    private static partial Regex DeniedWords();

    // Reports synchronously, in order: System.Progress would post each message to the thread pool.
    private sealed class Reporter<T>(Action<T> report) : IProgress<T>
    {
        public void Report(T value) => report(value);
    }
}

using EifBuilder.Cpio;
using EifBuilder.Images;
using EifBuilder.Layers;
using EifBuilder.Ramdisks;
using EifBuilder.RootFs;
using EifFormat;
using EifFormat.Json;

namespace EifBuilder;

/// <summary>Everything a build needs besides the image itself.</summary>
public sealed record EnclaveBuildRequest
{
    /// <summary>Where the image comes from.</summary>
    public required IImageSource Source { get; init; }

    /// <summary>"x86_64" or "aarch64": the image platform, the kernel and the EIF header flag all follow it.</summary>
    public required string Architecture { get; init; }

    /// <summary>Kernel, cmdline, init, nsm.ko.</summary>
    public required EnclaveBlobs Blobs { get; init; }

    /// <summary>The EIF to write (atomically).</summary>
    public required string OutputPath { get; init; }

    /// <summary>BuildTime, RFC 3339.</summary>
    public required string BuildTime { get; init; }

    /// <summary>ImageName; default: the reference before its first ':' (nitro-cli).</summary>
    public string? Name { get; init; }

    /// <summary>ImageVersion; default: the image ID's hex (nitro-cli).</summary>
    public string? Version { get; init; }

    /// <summary>CustomMetadata.</summary>
    public JValue CustomMetadata { get; init; } = JNull.Instance;

    /// <summary>BuildTool and BuildToolVersion.</summary>
    public (string Tool, string Version) BuildTool { get; init; } = ("eif", "0.0.0");

    /// <summary>The signature section, made from PCR0 once measured; null: unsigned.</summary>
    public EifSectionSource? Signature { get; init; }

    /// <summary>Use nitro-cli's command rule (CMD alone, else ENTRYPOINT) instead of Docker's.</summary>
    public bool NitroCliCommand { get; init; }

    /// <summary>SOURCE_DATE_EPOCH: mtimes later than it are clamped to it.</summary>
    public long? SourceDateEpoch { get; init; }

    /// <summary>Where temporary files go (default: the system's temporary folder).</summary>
    public string? TemporaryDirectory { get; init; }

    /// <summary>Receives one line per warning (entries dropped or reinterpreted).</summary>
    public Action<string> Warn { get; init; } = _ => { };

    /// <summary>Receives progress: a stage name and the bytes done so far.</summary>
    public Action<string, long>? Progress { get; init; }
}

/// <summary>What a build produced.</summary>
/// <param name="Written">The EIF's layout, CRC and PCRs.</param>
/// <param name="ImageId">The image ID (config digest).</param>
/// <param name="Files">Entries in the customer ramdisk's root filesystem.</param>
public sealed record EnclaveBuildResult(EifWriteResult Written, string ImageId, int Files);

/// <summary>
/// Turns a container image into an EIF, streaming: each layer is read once to check its digests and index its tar
/// headers, the layers are merged into a metadata-only tree, and the two ramdisks are produced as cpio streams
/// straight into the EIF writer, which hashes and checksums them on the way. Memory stays bounded by the number of
/// files, never by their size.
/// </summary>
public static class EnclaveBuilder
{
    /// <summary>Builds the EIF.</summary>
    /// <exception cref="EnclaveBuildException">The image or the blobs are unusable.</exception>
    /// <exception cref="EifFormatException">The EIF cannot be formed (e.g. a bad signing input).</exception>
    /// <exception cref="IOException">Reading or writing failed.</exception>
    public static EnclaveBuildResult Build(EnclaveBuildRequest request, CancellationToken cancellationToken = default)
    {
        string goArchitecture = ImageConfig.GoArchitecture(request.Architecture);
        request.Progress?.Invoke("resolving the image", 0);
        ResolvedImage image = request.Source.Resolve(goArchitecture, cancellationToken);
        var config = ImageConfig.Parse(image.Config, $"{image.Description} config {image.ConfigDigest}");
        if (config.Os != "linux" || config.Architecture != goArchitecture)
        {
            throw new EnclaveBuildException(BuildError.UnsupportedPlatform,
                $"{image.Description}: the image is for {config.Os}/{config.Architecture}, the enclave for linux/{goArchitecture} (--arch {request.Architecture})");
        }

        if (config.DiffIds.Count != image.Layers.Count)
            throw new EnclaveBuildException(BuildError.InvalidImage, $"{image.Description}: the manifest has {image.Layers.Count} layers, the config's rootfs.diff_ids {config.DiffIds.Count}");
        RunSettings run = RunSettings.FromConfig(config, request.NitroCliCommand);

        using var store = new LayerStore(request.TemporaryDirectory);
        var tree = new RootFsTree(request.Warn);
        request.Progress?.Invoke($"reading {image.Layers.Count} layers", 0);
        foreach (MaterializedLayer layer in store.AddAll(image.Layers, config.DiffIds, Environment.ProcessorCount, cancellationToken))
        {
            tree.ApplyLayer(layer.Index, layer.Entries, layer.What);
            request.Progress?.Invoke($"merged layer {layer.Index + 1} of {image.Layers.Count}", store.BytesIndexed);
        }

        foreach (string mountPoint in RamdiskLayout.MountPoints)
        {
            if (!tree.EnsureDirectory(mountPoint, RamdiskLayout.BuilderModTime))
                request.Warn($"/{mountPoint} is not a directory in the image; the enclave init mounts a filesystem there");
        }

        tree.AddFileIfMissing(["etc", "hosts"], 0x1A4, RamdiskLayout.BuilderModTime, RamdiskLayout.Hosts);
        int files = tree.Walk().Count();

        var metadata = new EifMetadata(
            request.Name ?? DefaultName(image),
            request.Version ?? image.ConfigDigest.Hex,
            new EifBuildInfo(
                request.BuildTime,
                request.BuildTool.Tool,
                request.BuildTool.Version,
                request.Blobs.KernelConfig is { } kc ? EifMetadata.ReadKernelConfig(kc).OperatingSystem : "Unknown",
                request.Blobs.KernelConfig is { } kc2 ? EifMetadata.ReadKernelConfig(kc2).KernelVersion : "Unknown"),
            image.DockerInspect ?? DockerInfoFromConfig(image, config, store),
            request.CustomMetadata);

        long written = 0;
        var bootstrap = new CpioArchiveStream(RamdiskLayout.Bootstrap(request.Blobs.Init, request.Blobs.Nsm, request.Blobs.ExtraBootstrapFiles));
        var customer = new CpioArchiveStream(RamdiskLayout.Customer(tree, store, run, request.SourceDateEpoch))
        {
            EntryWritten = e =>
            {
                written += e.Size;
                request.Progress?.Invoke("writing the EIF", written);
            },
        };
        var spec = new EifImageSpec
        {
            Kernel = EifSectionSource.FromFile(request.Blobs.Kernel),
            Cmdline = request.Blobs.Cmdline,
            Ramdisks = [EifSectionSource.FromStream(bootstrap, "the bootstrap ramdisk"), EifSectionSource.FromStream(customer, "the customer ramdisk")],
            Metadata = metadata,
            Arm64 = request.Architecture == "aarch64",
            Signature = request.Signature,
        };
        try
        {
            EifWriteResult result = spec.WriteFile(request.OutputPath, cancellationToken);
            return new EnclaveBuildResult(result, image.ConfigDigest.ToString(), files);
        }
        finally
        {
            bootstrap.Dispose();
            customer.Dispose();
        }
    }

    /// <summary>nitro-cli's default ImageName: the reference up to its first ':' (so "host:5000/app" gives "host").</summary>
    public static string DefaultName(ResolvedImage image) =>
        image.Reference is { Length: > 0 } reference ? reference.Split(':')[0] : image.ConfigDigest.Hex[..12];

    // For sources without a daemon: the fields of `docker image inspect` that the image config determines.
    private static JValue DockerInfoFromConfig(ResolvedImage image, ImageConfig config, LayerStore store)
    {
        var root = (JObject)config.Json;
        JValue Field(string key) => root[key] ?? JNull.Instance;
        return JObject.Of(
            ("Architecture", new JString(config.Architecture)),
            ("Author", Field("author") is JString a ? a : new JString(string.Empty)),
            ("Comment", Field("comment") is JString c ? c : new JString(string.Empty)),
            ("Config", Field("config")),
            ("Created", Field("created")),
            ("DockerVersion", Field("docker_version") is JString d ? d : new JString(string.Empty)),
            ("Id", new JString(image.ConfigDigest.ToString())),
            ("Os", new JString(config.Os)),
            ("Parent", new JString(string.Empty)),
            ("RepoDigests", new JArray([])),
            ("RepoTags", new JArray(image.Reference is { } r ? [new JString(r)] : [])),
            ("RootFS", JObject.Of(("Layers", new JArray(config.DiffIds.Select(d => (JValue)new JString(d.ToString())))), ("Type", new JString("layers")))),
            ("Size", JNumber.From(store.Tars.Sum(t => t?.Length ?? 0)))).WithSortedKeys();
    }
}

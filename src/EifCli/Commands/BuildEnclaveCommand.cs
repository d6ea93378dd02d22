using System.CommandLine;
using System.Globalization;
using System.Runtime.InteropServices;
using EifBuilder;
using EifBuilder.Images;
using EifFormat;
using EifFormat.Json;
using EifFormat.Signing;
using Spectre.Console;

namespace EifCli;

/// <summary>
/// <c>eif build-enclave</c>: a container image → an EIF, as <c>nitro-cli build-enclave</c> (same flags and JSON),
/// from a Docker daemon (<c>--docker-uri</c>, <c>--docker-dir</c>) or without one (<c>--image</c> with skopeo's
/// transports: docker-archive, oci, oci-archive, docker://).
/// </summary>
internal sealed class BuildEnclaveCommand : Command
{
    private readonly TextWriter _stdout;
    private readonly TextWriter _stderr;

    internal BuildEnclaveCommand(TextWriter stdout, TextWriter stderr)
        : base("build-enclave", "Build an EIF from a container image (Docker daemon, Dockerfile, docker-save archive, OCI layout or archive, registry) and print its measurements.")
    {
        _stdout = stdout;
        _stderr = stderr;
        foreach (Option option in new Option[]
        {
            DockerUriOption, DockerDirOption, ImageOption, OutputOption, NameOption, VersionOption, MetadataOption,
            BlobsOption, KernelOption, CmdlineOption, InitOption, NsmOption, ArchOption, BuildTimeOption,
            InsecureRegistryOption, NitroCliCmdOption, QuietOption,
        })
        {
            Options.Add(option);
        }

        Signing.AddTo(this);
        Validators.Add(result =>
        {
            bool uri = result.GetResult(DockerUriOption) is not null;
            bool image = result.GetResult(ImageOption) is not null;
            if (uri == image)
                result.AddError("Give exactly one of --docker-uri (a Docker daemon image) and --image (TRANSPORT:REFERENCE).");
            if (result.GetResult(DockerDirOption) is not null && !uri)
                result.AddError("--docker-dir needs --docker-uri: the tag to give the image it builds.");
            if ((result.GetResult(Signing.CertificateOption) is not null) != (result.GetResult(Signing.PrivateKeyOption) is not null))
                result.AddError("--signing-certificate and --private-key go together.");
        });
        SetAction((result, token) => Task.FromResult(Execute(result, token)));
    }

    internal Option<string> DockerUriOption { get; } = new("--docker-uri") { Description = "Image in the Docker daemon (pulled through it when missing); with --docker-dir, the tag of the image built.", HelpName = "REF" };

    internal Option<string> DockerDirOption { get; } = new("--docker-dir") { Description = "Build the Dockerfile in this directory through the daemon first (.dockerignore honoured).", HelpName = "DIR" };

    internal Option<string> ImageOption { get; } = new("--image")
    {
        Description = "Image without a daemon: docker-archive:FILE[:REF], oci:DIR[:TAG], oci-archive:FILE[:TAG], docker://HOST/REPO[:TAG|@DIGEST]; or docker-daemon:REF.",
        HelpName = "TRANSPORT:REF",
    };

    internal Option<string> OutputOption { get; } = EifCli.Options.OutputFile("--output-file", "Where to write the EIF (written to a temporary file, then renamed).");

    internal Option<string> NameOption { get; } = new("--name") { Description = "ImageName (default: the image reference before its first ':').", HelpName = "TEXT" };

    internal Option<string> VersionOption { get; } = new("--version") { Description = "ImageVersion (default: the image ID).", HelpName = "TEXT" };

    internal Option<string> MetadataOption { get; } = EifCli.Options.ExistingFile("--metadata", $"Custom metadata: a file of at most {EifConstants.MaxCustomMetadataSize} bytes holding one JSON value.", required: false);

    internal Option<string> BlobsOption { get; } = new("--blobs") { Description = "Folder with bzImage (or Image), bzImage.config, cmdline, init, nsm.ko. Default: NITRO_CLI_BLOBS, nitro-cli's installed blobs, the default runtime.", HelpName = "DIR" };

    internal Option<string> KernelOption { get; } = EifCli.Options.ExistingFile("--kernel", "Kernel instead of the blobs' (its .config is looked for next to it).", required: false);

    internal Option<string> CmdlineOption { get; } = new("--cmdline") { Description = "Kernel command line instead of the blobs' cmdline file.", HelpName = "TEXT" };

    internal Option<string> InitOption { get; } = EifCli.Options.ExistingFile("--init", "Enclave init instead of the blobs'.", required: false);

    internal Option<string> NsmOption { get; } = EifCli.Options.ExistingFile("--nsm", "nsm.ko instead of the blobs'.", required: false);

    internal Option<string> ArchOption { get; } = CreateArchOption();

    internal Option<string> BuildTimeOption { get; } = new("--build-time") { Description = "BuildTime, RFC 3339 (default: SOURCE_DATE_EPOCH when set, else now).", HelpName = "RFC3339" };

    internal Option<string[]> InsecureRegistryOption { get; } = new("--insecure-registry") { Description = "Registry reachable over plain HTTP (loopback registries always are); repeatable.", HelpName = "HOST[:PORT]", Arity = ArgumentArity.OneOrMore };

    internal Option<bool> NitroCliCmdOption { get; } = new("--nitro-cli-cmd") { Description = "Run CMD alone when set, else ENTRYPOINT (nitro-cli's rule) instead of ENTRYPOINT followed by CMD (docker run's rule)." };

    internal Option<bool> QuietOption { get; } = new("--quiet", "-q") { Description = "No progress or daemon output on stderr (errors and warnings still)." };

    internal SigningOptions Signing { get; } = new();

    /// <summary>The EIF architecture of this machine.</summary>
    internal static string HostArchitecture => RuntimeInformation.OSArchitecture == Architecture.Arm64 ? "aarch64" : "x86_64";

    private static Option<string> CreateArchOption()
    {
        var option = new Option<string>("--arch") { Description = "Target architecture: image platform, kernel and EIF flag (default: this machine's).", HelpName = "ARCH", DefaultValueFactory = _ => HostArchitecture };
        option.AcceptOnlyFromAmong("x86_64", "aarch64");
        return option;
    }

    private int Execute(ParseResult result, CancellationToken cancellationToken)
    {
        bool quiet = result.GetValue(QuietOption);
        string architecture = result.GetValue(ArchOption)!;

        // Everything that can be checked without the image is checked first: signing inputs, blobs, metadata.
        EifSectionSource? signature = null;
        if (result.GetValue(Signing.CertificateOption) is not null)
        {
            (byte[] pem, _, EifSigningKey? key) = Signing.Load(result);
            signature = EifSectionSource.AfterMeasurement(pcr0 => EifSigner.CreateSection(pem, key!, pcr0), "the signature section");
        }

        EnclaveBlobs blobs = EnclaveBlobs.Locate(
            architecture, result.GetValue(BlobsOption), result.GetValue(KernelOption), result.GetValue(CmdlineOption),
            result.GetValue(InitOption), result.GetValue(NsmOption), DefaultRuntime.Locate);
        JValue custom = result.GetValue(MetadataOption) is { } metadataPath ? EifMetadata.ReadCustomMetadataFile(metadataPath) : JNull.Instance;
        string? sourceDateEpoch = Environment.GetEnvironmentVariable("SOURCE_DATE_EPOCH");
        string buildTime = result.GetValue(BuildTimeOption) is { } time
            ? EifMetadata.ValidateBuildTime(time)
            : EifMetadata.DefaultBuildTime(sourceDateEpoch, DateTimeOffset.UtcNow);
        long? epoch = string.IsNullOrEmpty(sourceDateEpoch) ? null : long.Parse(sourceDateEpoch, NumberStyles.None, CultureInfo.InvariantCulture);

        var sourceOptions = new ImageSources.Options
        {
            InsecureRegistries = result.GetValue(InsecureRegistryOption) ?? [],
            Log = quiet ? _ => { } : line => _stderr.WriteLine(line),
        };
        string output = result.GetValue(OutputOption)!;
        if (!quiet)
            _stderr.WriteLine("Start building the Enclave Image...");

        using IImageSource source = result.GetValue(DockerDirOption) is { } directory
            ? DockerDaemonSource.Build(directory, result.GetValue(DockerUriOption)!, sourceOptions, cancellationToken)
            : ImageSources.Open(result.GetValue(ImageOption) ?? "docker-daemon:" + result.GetValue(DockerUriOption), sourceOptions);
        var request = new EnclaveBuildRequest
        {
            Source = source,
            Architecture = architecture,
            Blobs = blobs,
            OutputPath = output,
            BuildTime = buildTime,
            Name = result.GetValue(NameOption),
            Version = result.GetValue(VersionOption),
            CustomMetadata = custom,
            BuildTool = (BuildEifCommand.DefaultBuildTool, BuildEifCommand.ToolVersion),
            Signature = signature,
            NitroCliCommand = result.GetValue(NitroCliCmdOption),
            SourceDateEpoch = epoch,
            Warn = line => _stderr.WriteLine($"eif: warning: {line}"),
        };

        EnclaveBuildResult built = RunWithProgress(request, quiet, cancellationToken);
        if (!quiet)
            _stderr.WriteLine($"Enclave Image successfully created: {output} ({built.Written.Length} bytes, {built.Files} files, image {built.ImageId}).");
        Output.WriteJson(_stdout, JObject.Of(("Measurements", Output.Measurements(built.Written.Measurements))));
        return ExitCode.Success;
    }

    // A live status line when stderr is a terminal (Spectre.Console); nothing otherwise.
    private EnclaveBuildResult RunWithProgress(EnclaveBuildRequest request, bool quiet, CancellationToken cancellationToken)
    {
        if (quiet || Console.IsErrorRedirected || !ReferenceEquals(_stderr, Console.Error))
            return EnclaveBuilder.Build(request, cancellationToken);

        var console = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(Console.Error) });
        EnclaveBuildResult? built = null;
        var started = DateTime.UtcNow;
        var lastUpdate = DateTime.MinValue;
        console.Status().Start("resolving the image", context =>
        {
            built = EnclaveBuilder.Build(request with
            {
                Progress = (stage, bytes) =>
                {
                    var now = DateTime.UtcNow;
                    if (now - lastUpdate < TimeSpan.FromMilliseconds(200))
                        return;
                    lastUpdate = now;
                    double seconds = Math.Max((now - started).TotalSeconds, 0.001);
                    context.Status(string.Create(CultureInfo.InvariantCulture, $"{stage}: {bytes / 1048576.0:F1} MiB, {bytes / 1048576.0 / seconds:F1} MiB/s"));
                },
            }, cancellationToken);
        });
        return built!;
    }
}

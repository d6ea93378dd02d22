using System.CommandLine;
using System.Reflection;
using EifFormat;
using EifFormat.Json;
using EifFormat.Signing;

namespace EifCli;

/// <summary>
/// <c>eif build-eif</c>: assembles an EIF from a kernel, a command line and ramdisks, as eif_build 0.3.1 does
/// (spec §8.3), with its bugs left behind: <c>--version</c> is honoured, explicit build-info options win over
/// <c>--kernel-config</c>, a bad input fails before any output exists.
/// </summary>
internal sealed class BuildEifCommand : Command
{
    /// <summary>The BuildTool written when none is given: this program.</summary>
    internal const string DefaultBuildTool = "eif";

    // eif_build's defaults for the kernel identity when neither an option nor a kernel config gives it (main.rs).
    internal const string DefaultOperatingSystem = "OS";
    internal const string DefaultKernelVersion = "kernel";
    internal const string DefaultImageVersion = "1.0";

    private readonly TextWriter _stdout;
    private readonly TextWriter _stderr;

    internal BuildEifCommand(TextWriter stdout, TextWriter stderr)
        : base("build-eif", "Assemble an EIF from a kernel, a command line and ramdisks (the eif_build tool), and print its measurements.")
    {
        _stdout = stdout;
        _stderr = stderr;
        Options.Add(KernelOption);
        Options.Add(CmdlineOption);
        Options.Add(RamdiskOption);
        Options.Add(OutputOption);
        Options.Add(NameOption);
        Options.Add(VersionOption);
        Options.Add(MetadataOption);
        Options.Add(BuildTimeOption);
        Options.Add(BuildToolOption);
        Options.Add(BuildToolVersionOption);
        Options.Add(ImageOsOption);
        Options.Add(ImageKernelOption);
        Options.Add(KernelConfigOption);
        Options.Add(ArchOption);
        Signing.AddTo(this);
        Validators.Add(result =>
        {
            bool certificate = result.GetResult(Signing.CertificateOption) is not null;
            bool key = result.GetResult(Signing.PrivateKeyOption) is not null;
            if (certificate != key)
                result.AddError("--signing-certificate and --private-key go together.");
        });
        SetAction(result => Execute(result));
    }

    internal Option<string> KernelOption { get; } = EifCli.Options.ExistingFile("--kernel", "Kernel image: bzImage (x86_64) or Image (aarch64).");

    internal Option<string> CmdlineOption { get; } = new("--cmdline") { Description = "Kernel command line, stored verbatim.", Required = true, HelpName = "TEXT" };

    internal Option<string[]> RamdiskOption { get; } = new("--ramdisk")
    {
        Description = "Ramdisk (cpio or cpio.gz); repeat in order. The first is the bootstrap ramdisk (PCR1), the rest make PCR2.",
        Required = true,
        HelpName = "FILE",
        Arity = ArgumentArity.OneOrMore,
    };

    internal Option<string> OutputOption { get; } = EifCli.Options.OutputFile("--output", "Where to write the EIF (written to a temporary file, then renamed).");

    internal Option<string> NameOption { get; } = new("--name") { Description = "ImageName in the metadata (default: the kernel's file name).", HelpName = "TEXT" };

    internal Option<string> VersionOption { get; } = new("--version") { Description = $"ImageVersion in the metadata (default: {DefaultImageVersion}).", HelpName = "TEXT" };

    internal Option<string> MetadataOption { get; } = EifCli.Options.ExistingFile("--metadata", $"Custom metadata: a file of at most {EifConstants.MaxCustomMetadataSize} bytes holding one JSON value.", required: false);

    internal Option<string> BuildTimeOption { get; } = new("--build-time") { Description = "BuildTime, RFC 3339 (default: SOURCE_DATE_EPOCH when set, else now).", HelpName = "RFC3339" };

    internal Option<string> BuildToolOption { get; } = new("--build-tool") { Description = $"BuildTool (default: {DefaultBuildTool}).", HelpName = "TEXT" };

    internal Option<string> BuildToolVersionOption { get; } = new("--build-tool-version") { Description = "BuildToolVersion (default: this program's version).", HelpName = "TEXT" };

    internal Option<string> ImageOsOption { get; } = new("--img-os") { Description = $"OperatingSystem (default: from --kernel-config, else {DefaultOperatingSystem}).", HelpName = "TEXT" };

    internal Option<string> ImageKernelOption { get; } = new("--img-kernel") { Description = $"KernelVersion (default: from --kernel-config, else {DefaultKernelVersion}).", HelpName = "TEXT" };

    internal Option<string> KernelConfigOption { get; } = EifCli.Options.ExistingFile("--kernel-config", "Kernel .config: OperatingSystem and KernelVersion are read from its third line.", required: false);

    internal Option<string> ArchOption { get; } = CreateArchOption();

    internal SigningOptions Signing { get; } = new();

    /// <summary>This program's version, written as BuildToolVersion by default.</summary>
    internal static string ToolVersion =>
        typeof(BuildEifCommand).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion.Split('+')[0] ?? "0.0.0";

    private static Option<string> CreateArchOption()
    {
        var option = new Option<string>("--arch") { Description = "Target architecture (header flag bit 0).", HelpName = "ARCH", DefaultValueFactory = _ => "x86_64" };
        option.AcceptOnlyFromAmong("x86_64", "aarch64");
        return option;
    }

    private int Execute(ParseResult result)
    {
        // Signing inputs are checked first: a bad key or certificate must not cost a build.
        EifSectionSource? signature = null;
        if (result.GetValue(Signing.CertificateOption) is not null)
        {
            (byte[] pem, _, EifSigningKey? key) = Signing.Load(result);
            signature = EifSectionSource.AfterMeasurement(pcr0 => EifSigner.CreateSection(pem, key!, pcr0), "the signature section");
        }

        string kernel = result.GetValue(KernelOption)!;
        string? kernelConfig = result.GetValue(KernelConfigOption);
        (string os, string kernelVersion) = kernelConfig is null
            ? (DefaultOperatingSystem, DefaultKernelVersion)
            : EifMetadata.ReadKernelConfig(kernelConfig);
        string buildTime = result.GetValue(BuildTimeOption) is { } time
            ? EifMetadata.ValidateBuildTime(time)
            : EifMetadata.DefaultBuildTime(Environment.GetEnvironmentVariable("SOURCE_DATE_EPOCH"), DateTimeOffset.UtcNow);
        JValue custom = result.GetValue(MetadataOption) is { } metadataPath
            ? EifMetadata.ReadCustomMetadataFile(metadataPath)
            : JNull.Instance;

        var metadata = new EifMetadata(
            result.GetValue(NameOption) ?? Path.GetFileName(kernel),
            result.GetValue(VersionOption) ?? DefaultImageVersion,
            new EifBuildInfo(
                buildTime,
                result.GetValue(BuildToolOption) ?? DefaultBuildTool,
                result.GetValue(BuildToolVersionOption) ?? ToolVersion,
                result.GetValue(ImageOsOption) ?? os,
                result.GetValue(ImageKernelOption) ?? kernelVersion),
            JNull.Instance,
            custom);
        var spec = new EifImageSpec
        {
            Kernel = EifSectionSource.FromFile(kernel),
            Cmdline = result.GetValue(CmdlineOption)!,
            Ramdisks = result.GetValue(RamdiskOption)!.Select(EifSectionSource.FromFile).ToList(),
            Metadata = metadata,
            Arm64 = result.GetValue(ArchOption) == "aarch64",
            Signature = signature,
        };

        string output = result.GetValue(OutputOption)!;
        EifWriteResult written = spec.WriteFile(output);
        _stderr.WriteLine($"Enclave image written to {output} ({written.Length} bytes).");
        Output.WriteJson(_stdout, JObject.Of(("Measurements", Output.Measurements(written.Measurements))));
        return ExitCode.Success;
    }
}

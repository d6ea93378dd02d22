using System.CommandLine;
using EifFormat;
using EifFormat.Json;
using EifFormat.Signing;

namespace EifCli;

/// <summary>
/// <c>eif describe-eif</c>: nitro-cli's JSON (spec §8.1) plus a <c>Sections</c> array. A structurally invalid file
/// fails with one line; a CRC mismatch or a failed signature check prints the JSON (<c>"CheckCRC": false</c>,
/// <c>"SignatureCheck": false</c>), then fails with the reason.
/// </summary>
internal sealed class DescribeEifCommand : Command
{
    private readonly TextWriter _stdout;

    internal DescribeEifCommand(TextWriter stdout, TextWriter stderr)
        : base("describe-eif", "Print an EIF's version, measurements, CRC check, metadata and section layout as JSON.")
    {
        _stdout = stdout;
        _ = stderr;
        Options.Add(EifPathOption);
        Options.Add(LenientLayoutOption);
        SetAction(result => Execute(result));
    }

    internal Option<string> EifPathOption { get; } = EifCli.Options.ExistingFile("--eif-path", "The EIF to describe.");

    internal Option<bool> LenientLayoutOption { get; } = new("--lenient-layout")
    {
        Description = "Accept gaps between sections and trailing bytes (walk the header table as QEMU and the hypervisor do).",
    };

    /// <summary>Reads, measures and describes an EIF: the library call behind the verb (also used by the fuzzer).</summary>
    internal static (JObject Json, EifDigests Digests, EifSignatureCheck? Signature) Describe(EifReader reader)
    {
        EifDigests digests = reader.ComputeDigests();
        EifSignatureCheck? signature = reader.Signatures is { } entries ? EifSigner.Check(entries[0], digests.Measurements.Pcr0) : null;
        var properties = new List<(string, JValue)>
        {
            ("EifVersion", JNumber.From((long)reader.Header.Version)),
            ("Measurements", Output.Measurements(digests.Measurements)),
            ("IsSigned", JBool.From(reader.IsSigned)),
        };
        if (signature is not null)
            properties.Add(("SigningCertificate", CertificateObject(signature.Certificate)));
        properties.Add(("CheckCRC", JBool.From(digests.CrcMatches)));
        if (signature is not null)
            properties.Add(("SignatureCheck", JBool.From(signature.Passed)));
        if (reader.Metadata is { } metadata)
        {
            properties.Add(("ImageName", new JString(metadata.ImageName)));
            properties.Add(("ImageVersion", new JString(metadata.ImageVersion)));
            properties.Add(("Metadata", MetadataObject(metadata)));
        }

        properties.Add(("Sections", new JArray(reader.Sections.Select(s => (JValue)JObject.Of(
            ("Index", JNumber.From((long)s.Index)),
            ("Type", new JString(EifSectionTypes.Name(s.Type))),
            ("Offset", JNumber.From(s.Offset)),
            ("Size", JNumber.From(s.Size)))))));
        return (JObject.Of(properties.ToArray()), digests, signature);
    }

    /// <summary>nitro-cli's <c>SigningCertificate</c> object (spec §8.1), in its key order.</summary>
    internal static JObject CertificateObject(EifCertificate certificate) => JObject.Of(
        ("IssuerName", new JObject(certificate.IssuerName().Select(p => new KeyValuePair<string, JValue>(p.Key, new JString(p.Value))))),
        ("Algorithm", new JString(certificate.SignatureAlgorithmName)),
        ("NotBefore", new JString(EifCertificate.FormatAsn1Time(certificate.NotBefore))),
        ("NotAfter", new JString(EifCertificate.FormatAsn1Time(certificate.NotAfter))),
        ("Signature", new JString(certificate.SignatureText)));

    /// <summary>Why a signature check failed, in one sentence, or null when it passed.</summary>
    internal static string? SignatureFailure(EifSignatureCheck check, byte[] pcr0) => check.FailureReason(pcr0);

    // nitro-cli flattens the CustomMetadata object's keys into Metadata. Where that is impossible (a non-object
    // value, on which nitro-cli itself fails, or a key that would collide with a build key) the value is printed
    // whole under "CustomMetadata" instead, so nothing is lost and the JSON stays valid.
    internal static JObject MetadataObject(EifMetadata metadata)
    {
        var properties = new List<(string Key, JValue Value)>
        {
            ("BuildTime", new JString(metadata.BuildMetadata.BuildTime)),
            ("BuildTool", new JString(metadata.BuildMetadata.BuildTool)),
            ("BuildToolVersion", new JString(metadata.BuildMetadata.BuildToolVersion)),
            ("OperatingSystem", new JString(metadata.BuildMetadata.OperatingSystem)),
            ("KernelVersion", new JString(metadata.BuildMetadata.KernelVersion)),
            ("DockerInfo", metadata.DockerInfo),
        };
        if (metadata.CustomMetadata is JObject custom && custom.Properties.All(p => properties.All(q => q.Key != p.Key)))
        {
            foreach (var p in custom.Properties)
                properties.Add((p.Key, p.Value));
        }
        else if (metadata.CustomMetadata is not JNull)
        {
            properties.Add(("CustomMetadata", metadata.CustomMetadata));
        }

        return JObject.Of(properties.ToArray());
    }

    private int Execute(ParseResult result)
    {
        string path = result.GetValue(EifPathOption)!;
        var options = new EifReaderOptions { AllowNonContiguous = result.GetValue(LenientLayoutOption) };
        using var reader = EifReader.Open(path, options);
        (JObject json, EifDigests digests, EifSignatureCheck? signature) = Describe(reader);
        Output.WriteJson(_stdout, json);
        if (digests.ChecksumError is { } error)
            throw error.WithPath(path);
        if (signature is not null && SignatureFailure(signature, digests.Measurements.Pcr0) is { } failure)
            throw new CliException(ExitCode.VerificationFailed, $"{path}: {failure}");
        return ExitCode.Success;
    }
}

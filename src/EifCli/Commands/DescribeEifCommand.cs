using System.CommandLine;
using EifFormat;
using EifFormat.Json;

namespace EifCli;

/// <summary>
/// <c>eif describe-eif</c>: nitro-cli's JSON (spec §8.1) plus a <c>Sections</c> array. A structurally invalid file
/// fails with one line; a CRC mismatch prints the JSON with <c>"CheckCRC": false</c>, then fails.
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
    internal static (JObject Json, EifDigests Digests) Describe(EifReader reader)
    {
        EifDigests digests = reader.ComputeDigests();
        var properties = new List<(string, JValue)>
        {
            ("EifVersion", JNumber.From((long)reader.Header.Version)),
            ("Measurements", Output.Measurements(digests.Measurements)),
            ("IsSigned", JBool.From(reader.IsSigned)),
            ("CheckCRC", JBool.From(digests.CrcMatches)),
        };
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
        return (JObject.Of(properties.ToArray()), digests);
    }

    // nitro-cli flattens the CustomMetadata object's keys into Metadata. Where that is impossible (a non-object
    // value, on which nitro-cli itself fails, or a key that would collide with a build key) the value is printed
    // whole under "CustomMetadata" instead, so nothing is lost and the JSON stays valid.
    private static JObject MetadataObject(EifMetadata metadata)
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
        (JObject json, EifDigests digests) = Describe(reader);
        Output.WriteJson(_stdout, json);
        if (digests.ChecksumError is { } error)
            throw error.WithPath(path);
        return ExitCode.Success;
    }
}

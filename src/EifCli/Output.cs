using EifFormat;
using EifFormat.Json;

namespace EifCli;

/// <summary>How the commands print: JSON as nitro-cli's serde_json <c>to_string_pretty</c>, then a newline.</summary>
internal static class Output
{
    /// <summary>Environment variable that overrides the <c>HashAlgorithm</c> string (spec §8.4: nitro-cli 1.5.0
    /// built with sha2 0.10 is expected to print "Sha512_48 { .. }"; the default matches eif_build 0.3.1 and the
    /// AWS documentation). Consumers should not parse it.</summary>
    internal const string HashAlgorithmLabelVariable = "EIF_HASH_ALGORITHM_LABEL";

    internal static void WriteJson(TextWriter writer, JValue value)
    {
        writer.Write(value.ToPrettyString());
        writer.Write('\n');
        writer.Flush();
    }

    internal static string HashAlgorithmLabel =>
        Environment.GetEnvironmentVariable(HashAlgorithmLabelVariable) is { Length: > 0 } label
            ? label
            : EifMeasurements.DefaultHashAlgorithmLabel;

    /// <summary>The <c>Measurements</c> object: HashAlgorithm, then PCR0, PCR1, PCR2[, PCR8] (a sorted map upstream).</summary>
    internal static JObject Measurements(EifMeasurements measurements)
    {
        var properties = new List<(string, JValue)> { ("HashAlgorithm", new JString(HashAlgorithmLabel)) };
        foreach (var (key, value) in measurements.ToHexPairs())
            properties.Add((key, new JString(value)));
        return JObject.Of(properties.ToArray());
    }
}

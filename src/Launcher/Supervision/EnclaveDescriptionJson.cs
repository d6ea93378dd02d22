using System.Globalization;
using System.Text.Json.Nodes;
using EifFormat;

namespace Launcher.Supervision;

/// <summary>The supervisor protocol's form of an <see cref="EnclaveDescription"/> (our own field names; the CLI prints nitro-cli's).</summary>
internal static class EnclaveDescriptionJson
{
    internal static JsonObject ToJson(EnclaveDescription d) => new()
    {
        ["EnclaveName"] = d.EnclaveName,
        ["EnclaveId"] = d.EnclaveId,
        ["ProcessId"] = d.ProcessId,
        ["EnclaveCid"] = d.EnclaveCid,
        ["CpuIds"] = new JsonArray(d.CpuIds.Select(c => (JsonNode)c).ToArray()),
        ["MemoryMiB"] = d.MemoryMiB,
        ["State"] = d.State.ToString(),
        ["DebugMode"] = d.DebugMode,
        ["Pcr0"] = Pcr.ToHex(d.Measurements.Pcr0),
        ["Pcr1"] = Pcr.ToHex(d.Measurements.Pcr1),
        ["Pcr2"] = Pcr.ToHex(d.Measurements.Pcr2),
        ["Pcr8"] = d.Measurements.Pcr8 is { } pcr8 ? Pcr.ToHex(pcr8) : null,
        ["Metadata"] = d.MetadataJson is { } metadata ? Convert.ToBase64String(metadata) : null,
        ["EifPath"] = d.EifPath,
        ["Platform"] = d.Platform,
        ["StartedAt"] = d.StartedAt.ToString("O", CultureInfo.InvariantCulture),
        ["Forwarding"] = d.Forwarding is { } f
            ? new JsonObject
            {
                ["Forward"] = new JsonArray(f.Forward.Select(r => (JsonNode)JsonValue.Create(r)).ToArray()),
                ["Publish"] = new JsonArray(f.Publish.Select(r => (JsonNode)JsonValue.Create(r)).ToArray()),
                ["ActiveConnections"] = f.ActiveConnections,
                ["TotalConnections"] = f.TotalConnections,
            }
            : null,
    };

    /// <exception cref="FormatException">A field is missing or malformed.</exception>
    internal static EnclaveDescription FromJson(JsonObject json)
    {
        try
        {
            return new EnclaveDescription
            {
                EnclaveName = Required(json, "EnclaveName").GetValue<string>(),
                EnclaveId = Required(json, "EnclaveId").GetValue<string>(),
                ProcessId = Required(json, "ProcessId").GetValue<int>(),
                EnclaveCid = Required(json, "EnclaveCid").GetValue<ulong>(),
                CpuIds = Required(json, "CpuIds").AsArray().Select(c => c!.GetValue<int>()).ToList(),
                MemoryMiB = Required(json, "MemoryMiB").GetValue<ulong>(),
                State = Enum.Parse<EnclaveState>(Required(json, "State").GetValue<string>()),
                DebugMode = Required(json, "DebugMode").GetValue<bool>(),
                Measurements = new EifMeasurements(
                    Convert.FromHexString(Required(json, "Pcr0").GetValue<string>()),
                    Convert.FromHexString(Required(json, "Pcr1").GetValue<string>()),
                    Convert.FromHexString(Required(json, "Pcr2").GetValue<string>()),
                    json["Pcr8"] is { } pcr8 ? Convert.FromHexString(pcr8.GetValue<string>()) : null),
                MetadataJson = json["Metadata"] is { } metadata ? Convert.FromBase64String(metadata.GetValue<string>()) : null,
                EifPath = Required(json, "EifPath").GetValue<string>(),
                Platform = Required(json, "Platform").GetValue<string>(),
                StartedAt = DateTimeOffset.Parse(Required(json, "StartedAt").GetValue<string>(), CultureInfo.InvariantCulture),
                Forwarding = json["Forwarding"] is JsonObject f
                    ? new ForwardingStatus(
                        Required(f, "Forward").AsArray().Select(r => r!.GetValue<string>()).ToList(),
                        Required(f, "Publish").AsArray().Select(r => r!.GetValue<string>()).ToList(),
                        Required(f, "ActiveConnections").GetValue<int>(),
                        Required(f, "TotalConnections").GetValue<long>())
                    : null,
            };
        }
        catch (Exception ex) when (ex is InvalidOperationException or ArgumentException)
        {
            throw new FormatException($"a malformed enclave description: {ex.Message}", ex);
        }
    }

    private static JsonNode Required(JsonObject json, string key) => json[key] ?? throw new FormatException($"'{key}' is missing");
}

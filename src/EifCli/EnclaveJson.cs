using EifFormat;
using EifFormat.Json;
using Launcher;

namespace EifCli;

/// <summary>
/// nitro-cli's JSON for enclaves (src/common/json_output.rs, src/enclave_proc/utils.rs): pretty-printed, keys in its
/// order. Enclaves that are not on Nitro hardware get one more key, <c>Platform</c> (<c>simulated</c> or <c>local</c>),
/// so that nothing mistakes them for real ones.
/// </summary>
internal static class EnclaveJson
{
    /// <summary>run-enclave's object.</summary>
    internal static JObject Run(EnclaveDescription d) => JObject.Of(Common(d).ToArray());

    /// <summary>One element of describe-enclaves' array.</summary>
    internal static JObject Describe(EnclaveDescription d, bool withMetadata)
    {
        var properties = Common(d);
        properties.Add(("State", new JString(d.State switch
        {
            EnclaveState.Running => "RUNNING",
            EnclaveState.Terminating => "TERMINATING",
            _ => "EMPTY",
        })));
        properties.Add(("Flags", new JString(d.DebugMode ? "DEBUG_MODE" : "NONE")));
        properties.Add(("Measurements", Output.Measurements(d.Measurements)));
        if (withMetadata && d.MetadataJson is { } bytes && EifMetadata.Parse(bytes) is { } metadata)
        {
            properties.Add(("ImageName", new JString(metadata.ImageName)));
            properties.Add(("ImageVersion", new JString(metadata.ImageVersion)));
            properties.Add(("Metadata", DescribeEifCommand.MetadataObject(metadata)));
        }

        return JObject.Of(properties.ToArray());
    }

    /// <summary>terminate-enclave's object.</summary>
    internal static JObject Terminated(EnclaveDescription d) => JObject.Of(
        ("EnclaveName", new JString(d.EnclaveName)),
        ("EnclaveID", new JString(d.EnclaveId)),
        ("Terminated", JBool.True));

    private static List<(string Key, JValue Value)> Common(EnclaveDescription d)
    {
        var properties = new List<(string, JValue)>
        {
            ("EnclaveName", new JString(d.EnclaveName)),
            ("EnclaveID", new JString(d.EnclaveId)),
            ("ProcessID", JNumber.From(d.ProcessId)),
            ("EnclaveCID", JNumber.From(d.EnclaveCid)),
            ("NumberOfCPUs", JNumber.From(d.CpuIds.Count)),
            ("CPUIDs", new JArray(d.CpuIds.Select(c => (JValue)JNumber.From(c)))),
            ("MemoryMiB", JNumber.From(d.MemoryMiB)),
        };
        if (d.Platform != "nitro")
            properties.Add(("Platform", new JString(d.Platform)));
        if (d.Forwarding is { } f)
        {
            properties.Add(("Forwarding", JObject.Of(
                ("Forward", new JArray(f.Forward.Select(r => (JValue)new JString(r)))),
                ("Publish", new JArray(f.Publish.Select(r => (JValue)new JString(r)))),
                ("ActiveConnections", JNumber.From(f.ActiveConnections)),
                ("TotalConnections", JNumber.From(f.TotalConnections)))));
        }

        return properties;
    }
}

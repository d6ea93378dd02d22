using System.Text.Json;

namespace EifFormat.Tests;

/// <summary>The golden files of tests/golden (made by eif_build 0.3.1; provenance in its README).</summary>
public static class Golden
{
    internal static string Directory => Path.Combine(AppContext.BaseDirectory, "golden");

    internal static string PathOf(string name) => Path.Combine(Directory, name);

    internal static string Input(string name) => Path.Combine(Directory, "inputs", name);

    internal static byte[] Bytes(string name) => File.ReadAllBytes(PathOf(name));

    /// <summary>Every golden case (file name without extension).</summary>
    internal static readonly string[] Cases =
    [
        "synth_sha384_named", "synth_sha384_noname", "synth_one_ramdisk", "synth_three_ramdisks",
        "synth_aarch64", "synth_metadata", "synth_signed",
    ];

    public static TheoryData<string> AllCases() => new(Cases);

    public static TheoryData<string> UnsignedCases() => new(Cases.Where(c => c != "synth_signed"));

    /// <summary>The PCRs eif_build printed for a case.</summary>
    internal static Dictionary<string, string> Pcrs(string name)
    {
        using var doc = JsonDocument.Parse(File.ReadAllBytes(PathOf(name + ".pcrs.json")));
        return doc.RootElement.EnumerateObject().ToDictionary(p => p.Name, p => p.Value.GetString()!);
    }
}

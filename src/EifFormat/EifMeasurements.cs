namespace EifFormat;

/// <summary>The PCRs an EIF determines (spec §6): PCR0 (image), PCR1 (bootstrap), PCR2 (application), PCR8 (signer).</summary>
/// <remarks>Only section data is measured: kernel and cmdline go to PCR0 and PCR1, the first ramdisk to PCR0 and
/// PCR1, later ramdisks to PCR0 and PCR2, the signing certificate's DER to PCR8; metadata is not measured.</remarks>
public sealed class EifMeasurements
{
    /// <summary>The <c>HashAlgorithm</c> string of sha2 0.9 (eif_build 0.3.1, nitro-cli ≤ 1.4.5, AWS docs), spec §8.4.</summary>
    public const string DefaultHashAlgorithmLabel = "Sha384 { ... }";

    /// <summary>Creates measurements from raw 48-byte registers.</summary>
    public EifMeasurements(byte[] pcr0, byte[] pcr1, byte[] pcr2, byte[]? pcr8)
    {
        Pcr0 = pcr0;
        Pcr1 = pcr1;
        Pcr2 = pcr2;
        Pcr8 = pcr8;
    }

    /// <summary>PCR0: kernel, cmdline and every ramdisk.</summary>
    public byte[] Pcr0 { get; }

    /// <summary>PCR1: kernel, cmdline and the first (bootstrap) ramdisk.</summary>
    public byte[] Pcr1 { get; }

    /// <summary>PCR2: the ramdisks after the first.</summary>
    public byte[] Pcr2 { get; }

    /// <summary>PCR8: the DER of the signing certificate; null when the image is unsigned.</summary>
    public byte[]? Pcr8 { get; }

    /// <summary>The registers as (name, lowercase hex), in the order nitro-cli prints them.</summary>
    public IReadOnlyList<KeyValuePair<string, string>> ToHexPairs()
    {
        var list = new List<KeyValuePair<string, string>>(4)
        {
            new("PCR0", Pcr.ToHex(Pcr0)),
            new("PCR1", Pcr.ToHex(Pcr1)),
            new("PCR2", Pcr.ToHex(Pcr2)),
        };
        if (Pcr8 is not null)
            list.Add(new("PCR8", Pcr.ToHex(Pcr8)));
        return list;
    }
}

namespace EifFormat;

/// <summary>Section types (<c>EifSectionType</c>, repr(u16), src/defs/mod.rs), named without the upstream stutter.</summary>
public enum EifSectionType : ushort
{
    /// <summary>Never valid; the Rust reader and the hypervisor reject it.</summary>
    Invalid = 0,

    /// <summary>The kernel: a bzImage (x86_64) or an uncompressed arm64 Image. Since V2.</summary>
    Kernel = 1,

    /// <summary>The kernel command line, UTF-8 without a trailing NUL. Since V2.</summary>
    Cmdline = 2,

    /// <summary>A cpio (or cpio.gz) initramfs piece. Since V2.</summary>
    Ramdisk = 3,

    /// <summary>CBOR array of PCR signatures (COSE_Sign1). Since V3.</summary>
    Signature = 4,

    /// <summary>JSON build metadata. Since V4.</summary>
    Metadata = 5,
}

/// <summary>Helpers for <see cref="EifSectionType"/>.</summary>
public static class EifSectionTypes
{
    /// <summary>
    /// The first value that is not a section type. 6 is where the Rust reference's <c>from_be_bytes</c> starts
    /// failing ("Invalid section type"); every type up to 5 has been defined by V4.
    /// </summary>
    public const ushort FirstUnknown = 6;

    /// <summary>True for the types 1..5 that may appear in a file.</summary>
    public static bool IsDefined(ushort value) => value is > 0 and < FirstUnknown;

    /// <summary>The name used in JSON outputs and messages.</summary>
    public static string Name(EifSectionType type) => type switch
    {
        EifSectionType.Kernel => "Kernel",
        EifSectionType.Cmdline => "Cmdline",
        EifSectionType.Ramdisk => "Ramdisk",
        EifSectionType.Signature => "Signature",
        EifSectionType.Metadata => "Metadata",
        EifSectionType.Invalid => "Invalid",
        _ => $"Unknown({(ushort)type})",
    };
}

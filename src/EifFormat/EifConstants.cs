namespace EifFormat;

/// <summary>Constants of the Enclave Image Format.</summary>
/// <remarks>
/// Sources: aws/aws-nitro-enclaves-image-format <c>src/defs/mod.rs</c> (the Rust reference, crate 0.5.0) and its
/// README "EIF Specification"; see <c>shared/spec/eif-format.md</c> for the byte-level description.
/// </remarks>
public static class EifConstants
{
    /// <summary>The four magic bytes at offset 0: ".eif" (<c>EIF_MAGIC</c> in src/defs/mod.rs).</summary>
    public static ReadOnlySpan<byte> Magic => ".eif"u8;

    /// <summary>The version every writer of this project emits.</summary>
    /// <remarks>
    /// Format history (comment on <c>CURRENT_VERSION</c> in src/defs/mod.rs and the README):
    /// V0, V1: internal only, never published.
    /// V1 → V2 (nitro-cli 0.1.0, 2020-08-13): CRC-32 over the file.
    /// V2 → V3 (nitro-cli 1.0.10, 2021-04-29): optional signature section.
    /// V3 → V4 (nitro-cli 1.2.0, 2022-03-08): metadata section, mandatory from V4 on.
    /// </remarks>
    public const ushort CurrentVersion = 4;

    /// <summary>The oldest published version (README: V0/V1 "will fail at the crc check stage").</summary>
    public const ushort MinSupportedVersion = 2;

    /// <summary>The first version with a signature section.</summary>
    public const ushort FirstVersionWithSignature = 3;

    /// <summary>The first version with a (mandatory) metadata section.</summary>
    public const ushort FirstVersionWithMetadata = 4;

    /// <summary>Header flag bit 0: the image targets aarch64 (<c>EIF_HDR_ARCH_ARM64</c>, src/defs/mod.rs).</summary>
    public const ushort ArchArm64Flag = 0x0001;

    /// <summary>Header flag bits with a defined meaning; the others are reserved and must be 0.</summary>
    public const ushort KnownHeaderFlags = ArchArm64Flag;

    /// <summary>Size of the section tables (<c>MAX_NUM_SECTIONS</c>, src/defs/mod.rs).</summary>
    public const int MaxSections = 32;

    /// <summary><c>default_mem</c> hard-coded by the reference builder (<c>EifBuilder::new</c>): 1 GiB.</summary>
    public const ulong DefaultMemory = 1UL << 30;

    /// <summary><c>default_cpus</c> hard-coded by the reference builder (<c>EifBuilder::new</c>).</summary>
    public const ulong DefaultCpus = 2;

    /// <summary>Largest signature section (<c>SIGNATURE_MAX_SIZE</c>, README "EIF Specification").</summary>
    public const int MaxSignatureSize = 32768;

    /// <summary>Largest custom metadata file (<c>MAX_META_FILE_SIZE</c>, src/utils/identity.rs).</summary>
    public const int MaxCustomMetadataSize = 4096;

    /// <summary>Largest metadata section this library reads or writes.</summary>
    /// <remarks>
    /// The reference sets no bound. The section holds a few fixed strings, <c>docker image inspect</c> output
    /// (a few KiB) and at most 4096 bytes of custom metadata, so 1 MiB is generous while keeping a hostile
    /// size field from making a reader allocate much.
    /// </remarks>
    public const int MaxMetadataSize = 1 << 20;
}

using System.Buffers.Binary;

namespace EifFormat;

/// <summary>
/// The fixed 548-byte header at offset 0 (<c>EifHeader</c>, src/defs/mod.rs; the reference's unit test pins 548).
/// Big-endian, no padding: the u64 tables start at the unaligned offset 0x1C.
/// </summary>
/// <remarks>Fields the format does not interpret (<c>reserved</c>, <c>unused</c>, the defaults) are kept as read so
/// that a read → write round trip reproduces the file byte for byte (STYLE.md rule 8).</remarks>
public readonly struct EifHeader
{
    /// <summary>Encoded size in bytes.</summary>
    public const int EncodedSize =
        4 +                                            // magic
        sizeof(ushort) +                               // version
        sizeof(ushort) +                               // flags
        sizeof(ulong) +                                // default_mem
        sizeof(ulong) +                                // default_cpus
        sizeof(ushort) +                               // reserved
        sizeof(ushort) +                               // num_sections
        sizeof(ulong) * EifConstants.MaxSections +     // section_offsets
        sizeof(ulong) * EifConstants.MaxSections +     // section_sizes
        sizeof(uint) +                                 // unused
        sizeof(uint);                                  // eif_crc32 → 548

    /// <summary>Number of leading header bytes covered by the CRC: everything before <c>eif_crc32</c>.</summary>
    public const int CrcCoveredSize = Offsets.Crc32;

    /// <summary>Field locations; each is the previous location plus the previous length.</summary>
    internal static class Offsets
    {
        internal const int Magic = 0;                                                          // 0x000
        internal const int Version = Magic + 4;                                                // 0x004
        internal const int Flags = Version + sizeof(ushort);                                   // 0x006
        internal const int DefaultMemory = Flags + sizeof(ushort);                             // 0x008
        internal const int DefaultCpus = DefaultMemory + sizeof(ulong);                        // 0x010
        internal const int Reserved = DefaultCpus + sizeof(ulong);                             // 0x018
        internal const int NumSections = Reserved + sizeof(ushort);                            // 0x01A
        internal const int SectionOffsets = NumSections + sizeof(ushort);                      // 0x01C
        internal const int SectionSizes = SectionOffsets + sizeof(ulong) * EifConstants.MaxSections; // 0x11C
        internal const int Unused = SectionSizes + sizeof(ulong) * EifConstants.MaxSections;   // 0x21C
        internal const int Crc32 = Unused + sizeof(uint);                                      // 0x220
    }

    /// <summary>Creates a header.</summary>
    public EifHeader(
        uint magic, ushort version, ushort flags, ulong defaultMemory, ulong defaultCpus, ushort reserved,
        ushort numSections, EifSectionTable table, uint unused, uint crc32)
    {
        ArgumentNullException.ThrowIfNull(table);
        Magic = magic;
        Version = version;
        Flags = flags;
        DefaultMemory = defaultMemory;
        DefaultCpus = defaultCpus;
        Reserved = reserved;
        NumSections = numSections;
        Table = table;
        Unused = unused;
        Crc32 = crc32;
    }

    /// <summary>The <c>magic</c> field read as a big-endian u32; ".eif" is 0x2E656966.</summary>
    public uint Magic { get; }

    /// <summary>The <c>version</c> field.</summary>
    public ushort Version { get; }

    /// <summary>The <c>flags</c> field: bit 0 = aarch64.</summary>
    public ushort Flags { get; }

    /// <summary>The <c>default_mem</c> field (unused by every consumer).</summary>
    public ulong DefaultMemory { get; }

    /// <summary>The <c>default_cpus</c> field (unused by every consumer).</summary>
    public ulong DefaultCpus { get; }

    /// <summary>The <c>reserved</c> field.</summary>
    public ushort Reserved { get; }

    /// <summary>The <c>num_sections</c> field.</summary>
    public ushort NumSections { get; }

    /// <summary>The offsets and sizes tables.</summary>
    public EifSectionTable Table { get; }

    /// <summary>The <c>unused</c> field.</summary>
    public uint Unused { get; }

    /// <summary>The <c>eif_crc32</c> field.</summary>
    public uint Crc32 { get; }

    /// <summary>The magic value ".eif" as a big-endian u32.</summary>
    public static uint ExpectedMagic => BinaryPrimitives.ReadUInt32BigEndian(EifConstants.Magic);

    /// <summary>True when flag bit 0 (aarch64) is set.</summary>
    public bool IsArm64 => (Flags & EifConstants.ArchArm64Flag) != 0;

    /// <summary>The architecture name used by nitro-cli and eif_build: "x86_64" or "aarch64".</summary>
    public string Architecture => IsArm64 ? "aarch64" : "x86_64";

    /// <summary>Parses the first 548 bytes of <paramref name="source"/> without validating them.</summary>
    /// <exception cref="ArgumentException"><paramref name="source"/> is shorter than 548 bytes.</exception>
    public static EifHeader Read(ReadOnlySpan<byte> source)
    {
        if (source.Length < EncodedSize)
            throw new ArgumentException($"An EIF header needs {EncodedSize} bytes.", nameof(source));
        var table = new EifSectionTable();
        ulong[] offsets = table.MutableOffsets;
        ulong[] sizes = table.MutableSizes;
        for (int i = 0; i < EifConstants.MaxSections; i++)
        {
            offsets[i] = BinaryPrimitives.ReadUInt64BigEndian(source[(Offsets.SectionOffsets + i * sizeof(ulong))..]);
            sizes[i] = BinaryPrimitives.ReadUInt64BigEndian(source[(Offsets.SectionSizes + i * sizeof(ulong))..]);
        }

        return new EifHeader(
            BinaryPrimitives.ReadUInt32BigEndian(source[Offsets.Magic..]),
            BinaryPrimitives.ReadUInt16BigEndian(source[Offsets.Version..]),
            BinaryPrimitives.ReadUInt16BigEndian(source[Offsets.Flags..]),
            BinaryPrimitives.ReadUInt64BigEndian(source[Offsets.DefaultMemory..]),
            BinaryPrimitives.ReadUInt64BigEndian(source[Offsets.DefaultCpus..]),
            BinaryPrimitives.ReadUInt16BigEndian(source[Offsets.Reserved..]),
            BinaryPrimitives.ReadUInt16BigEndian(source[Offsets.NumSections..]),
            table,
            BinaryPrimitives.ReadUInt32BigEndian(source[Offsets.Unused..]),
            BinaryPrimitives.ReadUInt32BigEndian(source[Offsets.Crc32..]));
    }

    /// <summary>Writes the 548 encoded bytes to the start of <paramref name="destination"/>.</summary>
    /// <exception cref="ArgumentException"><paramref name="destination"/> is shorter than 548 bytes.</exception>
    public void Write(Span<byte> destination)
    {
        if (destination.Length < EncodedSize)
            throw new ArgumentException($"An EIF header needs {EncodedSize} bytes.", nameof(destination));
        BinaryPrimitives.WriteUInt32BigEndian(destination[Offsets.Magic..], Magic);
        BinaryPrimitives.WriteUInt16BigEndian(destination[Offsets.Version..], Version);
        BinaryPrimitives.WriteUInt16BigEndian(destination[Offsets.Flags..], Flags);
        BinaryPrimitives.WriteUInt64BigEndian(destination[Offsets.DefaultMemory..], DefaultMemory);
        BinaryPrimitives.WriteUInt64BigEndian(destination[Offsets.DefaultCpus..], DefaultCpus);
        BinaryPrimitives.WriteUInt16BigEndian(destination[Offsets.Reserved..], Reserved);
        BinaryPrimitives.WriteUInt16BigEndian(destination[Offsets.NumSections..], NumSections);
        ReadOnlySpan<ulong> offsets = Table.Offsets;
        ReadOnlySpan<ulong> sizes = Table.Sizes;
        for (int i = 0; i < EifConstants.MaxSections; i++)
        {
            BinaryPrimitives.WriteUInt64BigEndian(destination[(Offsets.SectionOffsets + i * sizeof(ulong))..], offsets[i]);
            BinaryPrimitives.WriteUInt64BigEndian(destination[(Offsets.SectionSizes + i * sizeof(ulong))..], sizes[i]);
        }

        BinaryPrimitives.WriteUInt32BigEndian(destination[Offsets.Unused..], Unused);
        BinaryPrimitives.WriteUInt32BigEndian(destination[Offsets.Crc32..], Crc32);
    }

    /// <summary>A copy with another CRC.</summary>
    public EifHeader WithCrc32(uint crc32) =>
        new(Magic, Version, Flags, DefaultMemory, DefaultCpus, Reserved, NumSections, Table, Unused, crc32);
}

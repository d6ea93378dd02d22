using System.Buffers.Binary;

namespace EifFormat;

/// <summary>The 12-byte header in front of every section (<c>EifSectionHeader</c>, src/defs/mod.rs). Big-endian.</summary>
/// <param name="RawType">The <c>section_type</c> field as stored; see <see cref="Type"/>.</param>
/// <param name="Flags">The <c>flags</c> field: reserved, always 0 in valid files (QEMU rejects anything else).</param>
/// <param name="DataSize">The <c>section_size</c> field: length of the data after this header.</param>
public readonly record struct EifSectionHeader(ushort RawType, ushort Flags, ulong DataSize)
{
    /// <summary>Encoded size in bytes; the reference's unit test pins it at 12.</summary>
    public const int EncodedSize =
        sizeof(ushort) +   // section_type
        sizeof(ushort) +   // flags (reserved, 0)
        sizeof(ulong);     // section_size → 12

    /// <summary>Field locations; each is the previous location plus the previous length.</summary>
    internal static class Offsets
    {
        internal const int SectionType = 0;                               // 0x0
        internal const int Flags = SectionType + sizeof(ushort);          // 0x2
        internal const int SectionSize = Flags + sizeof(ushort);          // 0x4
    }

    /// <summary>Creates a header for a section of a defined type.</summary>
    public EifSectionHeader(EifSectionType type, ulong dataSize)
        : this((ushort)type, 0, dataSize)
    {
    }

    /// <summary>The section type (may be an undefined value when read from a file).</summary>
    public EifSectionType Type => (EifSectionType)RawType;

    /// <summary>Parses the first 12 bytes of <paramref name="source"/>.</summary>
    /// <exception cref="ArgumentException"><paramref name="source"/> is shorter than 12 bytes.</exception>
    public static EifSectionHeader Read(ReadOnlySpan<byte> source)
    {
        if (source.Length < EncodedSize)
            throw new ArgumentException($"A section header needs {EncodedSize} bytes.", nameof(source));
        return new EifSectionHeader(
            BinaryPrimitives.ReadUInt16BigEndian(source[Offsets.SectionType..]),
            BinaryPrimitives.ReadUInt16BigEndian(source[Offsets.Flags..]),
            BinaryPrimitives.ReadUInt64BigEndian(source[Offsets.SectionSize..]));
    }

    /// <summary>Writes the 12 encoded bytes to the start of <paramref name="destination"/>.</summary>
    /// <exception cref="ArgumentException"><paramref name="destination"/> is shorter than 12 bytes.</exception>
    public void Write(Span<byte> destination)
    {
        if (destination.Length < EncodedSize)
            throw new ArgumentException($"A section header needs {EncodedSize} bytes.", nameof(destination));
        BinaryPrimitives.WriteUInt16BigEndian(destination[Offsets.SectionType..], RawType);
        BinaryPrimitives.WriteUInt16BigEndian(destination[Offsets.Flags..], Flags);
        BinaryPrimitives.WriteUInt64BigEndian(destination[Offsets.SectionSize..], DataSize);
    }
}

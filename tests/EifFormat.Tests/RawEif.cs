using System.Buffers.Binary;
using IoCrc32 = System.IO.Hashing.Crc32;

namespace EifFormat.Tests;

/// <summary>
/// Test-side EIF surgery, independent of <see cref="EifWriter"/> (which refuses invalid content): split a file into
/// its sections, change them, and reassemble a contiguous file with a correct table and CRC, so that each malformed
/// case breaks exactly one rule.
/// </summary>
internal static class RawEif
{
    internal sealed record Section(ushort Type, ushort Flags, byte[] Data);

    internal static List<Section> Split(byte[] file)
    {
        var header = EifHeader.Read(file);
        var sections = new List<Section>();
        for (int i = 0; i < header.NumSections; i++)
        {
            int offset = checked((int)header.Table.Offsets[i]);
            var sh = EifSectionHeader.Read(file.AsSpan(offset));
            sections.Add(new Section(sh.RawType, sh.Flags, file.AsSpan(offset + 12, checked((int)sh.DataSize)).ToArray()));
        }

        return sections;
    }

    /// <summary>A contiguous file with a consistent table and a correct CRC; header fields copied from <paramref name="template"/>.</summary>
    internal static byte[] Assemble(byte[] template, IReadOnlyList<Section> sections)
    {
        var stream = new MemoryStream();
        stream.Write(template.AsSpan(0, EifHeader.EncodedSize));
        byte[] file;
        var offsets = new List<ulong>();
        Span<byte> h = stackalloc byte[12];
        foreach (var s in sections)
        {
            offsets.Add((ulong)stream.Position);
            new EifSectionHeader(s.Type, s.Flags, (ulong)s.Data.Length).Write(h);
            stream.Write(h);
            stream.Write(s.Data);
        }

        file = stream.ToArray();
        BinaryPrimitives.WriteUInt16BigEndian(file.AsSpan(EifHeader.Offsets.NumSections), (ushort)sections.Count);
        for (int i = 0; i < EifConstants.MaxSections; i++)
        {
            BinaryPrimitives.WriteUInt64BigEndian(file.AsSpan(EifHeader.Offsets.SectionOffsets + 8 * i), i < sections.Count ? offsets[i] : 0);
            BinaryPrimitives.WriteUInt64BigEndian(file.AsSpan(EifHeader.Offsets.SectionSizes + 8 * i), i < sections.Count ? (ulong)sections[i].Data.Length : 0);
        }

        return FixCrc(file);
    }

    /// <summary>Replaces section <paramref name="index"/>'s data and reassembles.</summary>
    internal static byte[] ReplaceData(byte[] file, int index, byte[] data)
    {
        var sections = Split(file);
        sections[index] = sections[index] with { Data = data };
        return Assemble(file, sections);
    }

    /// <summary>Recomputes the CRC over everything but its own four bytes (spec §2.3).</summary>
    internal static byte[] FixCrc(byte[] file)
    {
        var crc = new IoCrc32();
        crc.Append(file.AsSpan(0, EifHeader.CrcCoveredSize));
        crc.Append(file.AsSpan(EifHeader.EncodedSize));
        BinaryPrimitives.WriteUInt32BigEndian(file.AsSpan(EifHeader.Offsets.Crc32), crc.GetCurrentHashAsUInt32());
        return file;
    }

    internal static byte[] Copy(byte[] file) => (byte[])file.Clone();

    internal static byte[] SetU16(byte[] file, int offset, ushort value)
    {
        byte[] copy = Copy(file);
        BinaryPrimitives.WriteUInt16BigEndian(copy.AsSpan(offset), value);
        return copy;
    }

    internal static byte[] SetU64(byte[] file, int offset, ulong value)
    {
        byte[] copy = Copy(file);
        BinaryPrimitives.WriteUInt64BigEndian(copy.AsSpan(offset), value);
        return copy;
    }

    internal static int TableOffset(int index) => EifHeader.Offsets.SectionOffsets + 8 * index;

    internal static int TableSize(int index) => EifHeader.Offsets.SectionSizes + 8 * index;

    /// <summary>File offset of section <paramref name="index"/>'s header, from the table.</summary>
    internal static int SectionAt(byte[] file, int index) =>
        checked((int)BinaryPrimitives.ReadUInt64BigEndian(file.AsSpan(TableOffset(index))));

    /// <summary>Inserts bytes at <paramref name="at"/> and moves every table offset at or after it.</summary>
    internal static byte[] InsertBytes(byte[] file, int at, int count)
    {
        byte[] result = [.. file.AsSpan(0, at), .. new byte[count], .. file.AsSpan(at)];
        int n = BinaryPrimitives.ReadUInt16BigEndian(file.AsSpan(EifHeader.Offsets.NumSections));
        for (int i = 0; i < n; i++)
        {
            ulong offset = BinaryPrimitives.ReadUInt64BigEndian(file.AsSpan(TableOffset(i)));
            if (offset >= (ulong)at)
                BinaryPrimitives.WriteUInt64BigEndian(result.AsSpan(TableOffset(i)), offset + (ulong)count);
        }

        return FixCrc(result);
    }
}

using System.Buffers.Binary;
using System.Globalization;
using System.Text;
using EifFormat;

namespace EifFuzz;

/// <summary>The kinds of mutation the fuzzer applies.</summary>
internal enum MutationKind
{
    /// <summary>Flip one to four bits within four bytes (reported as the start and the span).</summary>
    FlipBits,

    /// <summary>Set one byte to 0x00, 0xFF, 0x7F, 0x80 or 0x01.</summary>
    InterestingByte,

    /// <summary>Overwrite a big-endian u16/u32/u64 field with a value that tends to break length arithmetic.</summary>
    InterestingField,

    /// <summary>Insert random bytes.</summary>
    InsertBytes,

    /// <summary>Delete a range.</summary>
    DeleteRange,

    /// <summary>Copy a range to another place, inserting it.</summary>
    DuplicateRange,

    /// <summary>Cut the file short.</summary>
    Truncate,

    /// <summary>Add bytes at the end.</summary>
    Append,

    /// <summary>Insert bytes before a section (or at the end) and move the table's offsets past them: a layout gap.</summary>
    InsertGap,

    /// <summary>Grow or shrink one section's data, updating its two size fields and the offsets after it.</summary>
    ResizeSection,

    /// <summary>Swap two entries of the header table (offset and size together), or copy one over another.</summary>
    ReorderTable,
}

/// <summary>One applied mutation, kept for reports: where, how many bytes, and the value written when there is one.</summary>
internal readonly record struct Mutation(MutationKind Kind, int Offset, int Size, ulong Value);

/// <summary>
/// Turns a corpus file into a mutated input in a reused buffer. Every choice comes from the one <see cref="Random"/>
/// it is given, in a fixed order, so a seed and a corpus determine the whole sequence of inputs.
/// </summary>
/// <remarks>
/// Positions of in-place changes are aimed: 40% fall in the 548-byte header, 20% in a section header and 20% in
/// section data (which reaches the metadata JSON and the signature CBOR), the rest anywhere. Field overwrites pick
/// the header's own fields (half of those the offset and size tables) and the section headers' fields more often
/// than random aligned words, because those are the values every length check depends on. Insertions and
/// deletions aim less at the header: shifting it turns nearly every input into the same early rejection.
/// Two mutations keep the header table consistent with what they insert or delete (<see cref="MutationKind.InsertGap"/>,
/// <see cref="MutationKind.ResizeSection"/>), and one rearranges the table's entries
/// (<see cref="MutationKind.ReorderTable"/>), so that the checks after the table (layout, overlaps, order and set of
/// sections, metadata, signature, and the lenient reader's gaps) are reached with unusual but coherent files.
/// </remarks>
internal sealed class Mutator
{
    internal const int MaxMutations = 8;

    // The most one insertion, duplication or append adds; the buffer has room for MaxMutations of them, so inputs
    // stay small enough that the reader hashes them inline on this thread (the allocation check relies on that).
    private const int MaxGrowth = 4096;

    private static readonly byte[] InterestingBytes = [0x00, 0xFF, 0x7F, 0x80, 0x01];

    // The header fields other than the two tables (EifHeader.Offsets), with their widths.
    private static readonly (int Offset, int Width)[] HeaderScalars =
    [
        (0x000, 4), // magic
        (0x004, 2), // version
        (0x006, 2), // flags
        (0x008, 8), // default_mem
        (0x010, 8), // default_cpus
        (0x018, 2), // reserved
        (0x01A, 2), // num_sections
        (0x21C, 4), // unused
        (0x220, 4), // eif_crc32
    ];

    // EifSectionHeader.Offsets: section_type, flags, section_size.
    private static readonly (int Offset, int Width)[] SectionHeaderFields = [(0, 2), (2, 2), (4, 8)];

    private readonly Random _random;
    private readonly Mutation[] _applied = new Mutation[MaxMutations];
    private readonly byte[] _scratch = new byte[MaxGrowth];
    private readonly ulong[] _offsets = new ulong[EifConstants.MaxSections];
    private readonly ulong[] _sizes = new ulong[EifConstants.MaxSections];
    private CorpusFile? _seed;
    private int _count;

    internal Mutator(Random random, int maxSeedLength)
    {
        _random = random;
        Buffer = new byte[maxSeedLength + MaxMutations * MaxGrowth];
    }

    /// <summary>The current input is <c>Buffer[..Length]</c>.</summary>
    internal byte[] Buffer { get; }

    internal int Length { get; private set; }

    /// <summary>The corpus file the current input came from.</summary>
    internal CorpusFile Seed => _seed ?? throw new InvalidOperationException("No input has been made yet.");

    internal ReadOnlySpan<Mutation> Applied => _applied.AsSpan(0, _count);

    /// <summary>Makes the next input: picks a corpus file and applies one to eight mutations.</summary>
    internal void Next(IReadOnlyList<CorpusFile> corpus)
    {
        _seed = corpus[_random.Next(corpus.Count)];
        _seed.Bytes.CopyTo(Buffer, 0);
        Length = _seed.Bytes.Length;
        // 1..8, weighted towards few: each added mutation makes an early rejection likelier, and single mutations
        // are what reach the deep checks.
        _count = _random.Next(1, 1 + (1 << _random.Next(4)));
        for (int i = 0; i < _count; i++)
            _applied[i] = MutateOnce();
    }

    /// <summary>The applied mutations in order, e.g. "InterestingField@0x1C/8=0x1000000000000000, Truncate@0x100".</summary>
    internal string DescribeMutations()
    {
        var sb = new StringBuilder();
        foreach (var m in Applied)
        {
            if (sb.Length > 0)
                sb.Append(", ");
            sb.Append(CultureInfo.InvariantCulture, $"{m.Kind}@0x{m.Offset:X}");
            if (m.Kind == MutationKind.InterestingField)
                sb.Append(CultureInfo.InvariantCulture, $"/{m.Size}=0x{m.Value:X}");
            else if (m.Kind == MutationKind.InterestingByte)
                sb.Append(CultureInfo.InvariantCulture, $"=0x{m.Value:X2}");
            else if (m.Kind == MutationKind.ReorderTable)
                sb.Append(CultureInfo.InvariantCulture, $" {(m.Value == 1 ? "swapped with" : "copied from")} entry {m.Size}");
            else if (m.Kind == MutationKind.ResizeSection)
                sb.Append(CultureInfo.InvariantCulture, $"{m.Size:+0;-0;+0} (size 0x{m.Value:X})");
            else if (m.Kind == MutationKind.DuplicateRange)
                sb.Append(CultureInfo.InvariantCulture, $"+{m.Size} (from 0x{m.Value:X})");
            else if (m.Kind != MutationKind.Truncate)
                sb.Append(CultureInfo.InvariantCulture, $"+{m.Size}");
        }

        return sb.ToString();
    }

    private Mutation MutateOnce()
    {
        MutationKind kind = _random.Next(100) switch
        {
            < 14 => MutationKind.FlipBits,
            < 24 => MutationKind.InterestingByte,
            < 49 => MutationKind.InterestingField,
            < 60 => MutationKind.InsertBytes,
            < 68 => MutationKind.DeleteRange,
            < 75 => MutationKind.DuplicateRange,
            < 81 => MutationKind.Truncate,
            < 88 => MutationKind.Append,
            < 93 => MutationKind.InsertGap,
            < 97 => MutationKind.ResizeSection,
            _ => MutationKind.ReorderTable,
        };

        // An empty input has nothing to change in place; it can only grow.
        if (Length == 0 && kind is not MutationKind.InsertBytes)
            kind = MutationKind.Append;

        return kind switch
        {
            MutationKind.FlipBits => FlipBits(),
            MutationKind.InterestingByte => SetInterestingByte(),
            MutationKind.InterestingField => SetInterestingField(),
            MutationKind.InsertBytes => InsertRandomBytes(),
            MutationKind.DeleteRange => DeleteRange(),
            MutationKind.DuplicateRange => DuplicateRange(),
            MutationKind.Truncate => Truncate(),
            MutationKind.Append => Append(),
            MutationKind.InsertGap => InsertGap(),
            MutationKind.ResizeSection => ResizeSection(),
            _ => ReorderTable(),
        };
    }

    private Mutation FlipBits()
    {
        int at = PickPosition(1);
        int span = Math.Min(Length - at, 4);
        int bits = _random.Next(1, 5);
        for (int i = 0; i < bits; i++)
            Buffer[at + _random.Next(span)] ^= (byte)(1 << _random.Next(8));
        return new Mutation(MutationKind.FlipBits, at, span, 0);
    }

    private Mutation SetInterestingByte()
    {
        int at = PickPosition(1);
        Buffer[at] = InterestingBytes[_random.Next(InterestingBytes.Length)];
        return new Mutation(MutationKind.InterestingByte, at, 1, Buffer[at]);
    }

    private Mutation SetInterestingField()
    {
        (int at, int width) = PickField();
        if (at + width > Length)
        {
            // The field was cut off by an earlier mutation; recording a zero-width write keeps reports honest.
            return new Mutation(MutationKind.InterestingField, at, 0, 0);
        }

        Span<byte> field = Buffer.AsSpan(at, width);
        ulong current = width switch
        {
            2 => BinaryPrimitives.ReadUInt16BigEndian(field),
            4 => BinaryPrimitives.ReadUInt32BigEndian(field),
            _ => BinaryPrimitives.ReadUInt64BigEndian(field),
        };
        ulong value = InterestingValue(width, current);
        switch (width)
        {
            case 2:
                BinaryPrimitives.WriteUInt16BigEndian(field, (ushort)value);
                break;
            case 4:
                BinaryPrimitives.WriteUInt32BigEndian(field, (uint)value);
                break;
            default:
                BinaryPrimitives.WriteUInt64BigEndian(field, value);
                break;
        }

        return new Mutation(MutationKind.InterestingField, at, width, value);
    }

    private Mutation InsertRandomBytes()
    {
        int count = Math.Min(GrowthSize(), Buffer.Length - Length);
        int at = PickShiftPosition(0);
        Span<byte> gap = OpenGap(at, count);
        _random.NextBytes(gap);
        return new Mutation(MutationKind.InsertBytes, at, count, 0);
    }

    private Mutation DeleteRange()
    {
        int at = PickShiftPosition(1);
        int count = Math.Min(ShrinkSize(), Length - at);
        Buffer.AsSpan(at + count, Length - at - count).CopyTo(Buffer.AsSpan(at));
        Length -= count;
        return new Mutation(MutationKind.DeleteRange, at, count, 0);
    }

    private Mutation DuplicateRange()
    {
        // Half the time copy a whole section header (12 bytes), which makes plausible extra or shifted sections.
        int from;
        int count;
        var sections = Seed.Sections;
        if (sections.Length > 0 && _random.Next(2) == 0)
        {
            from = Math.Min(sections[_random.Next(sections.Length)].Header, Length - 1);
            count = EifSectionHeader.EncodedSize;
        }
        else
        {
            from = _random.Next(Length);
            count = GrowthSize();
        }

        count = Math.Min(Math.Min(count, Length - from), Buffer.Length - Length);
        Buffer.AsSpan(from, count).CopyTo(_scratch);
        int at = PickShiftPosition(0);
        _scratch.AsSpan(0, count).CopyTo(OpenGap(at, count));
        return new Mutation(MutationKind.DuplicateRange, at, count, (ulong)from);
    }

    private Mutation Truncate()
    {
        var sections = Seed.Sections;
        int length = _random.Next(4) switch
        {
            0 => _random.Next(Math.Min(Length, EifHeader.EncodedSize) + 1),          // inside or at the end of the header
            1 => Length - _random.Next(1, Math.Min(Length, 64) + 1),                 // a little off the end
            2 when sections.Length > 0 => SectionBoundary(sections),                   // at or near a section's start or end
            _ => _random.Next(Length + 1),
        };
        Length = Math.Clamp(length, 0, Length);
        return new Mutation(MutationKind.Truncate, Length, 0, 0);
    }

    private int SectionBoundary((int Header, int DataStart, int DataLength)[] sections)
    {
        var s = sections[_random.Next(sections.Length)];
        int edge = _random.Next(3) switch
        {
            0 => s.Header,
            1 => s.DataStart,
            _ => s.DataStart + s.DataLength,
        };
        return edge + _random.Next(-2, 3);
    }

    private Mutation Append()
    {
        int count = Math.Min(GrowthSize(), Buffer.Length - Length);
        Span<byte> tail = Buffer.AsSpan(Length, count);
        switch (_random.Next(3))
        {
            case 0:
                _random.NextBytes(tail);
                break;
            case 1:
                tail.Clear();
                break;
            default:
                // A copy of bytes already in the file (a header, a section) is likelier to look like structure.
                if (Length > 0)
                {
                    int from = _random.Next(Length);
                    int copied = Math.Min(count, Length - from);
                    Buffer.AsSpan(from, copied).CopyTo(tail);
                    tail[copied..].Clear();
                }
                else
                {
                    tail.Clear();
                }

                break;
        }

        int at = Length;
        Length += count;
        return new Mutation(MutationKind.Append, at, count, 0);
    }

    private Mutation InsertGap()
    {
        int count = ReadTable(out Span<ulong> offsets, out _);
        if (count < 0)
            return new Mutation(MutationKind.InsertGap, 0, 0, 0);

        // Before one of the sections, or after the last byte (trailing bytes).
        int k = _random.Next(count + 1);
        ulong target = k < count ? offsets[k] : (ulong)Length;
        if (target < EifHeader.EncodedSize || target > (ulong)Length)
            return new Mutation(MutationKind.InsertGap, 0, 0, 0);
        int at = (int)target;
        int gap = Math.Min(GrowthSize(), Buffer.Length - Length);
        _random.NextBytes(OpenGap(at, gap));
        for (int j = 0; j < count; j++)
        {
            if (offsets[j] >= target)
                offsets[j] = unchecked(offsets[j] + (ulong)gap);
        }

        WriteTable(count, offsets, sizes: null);
        return new Mutation(MutationKind.InsertGap, at, gap, 0);
    }

    private Mutation ResizeSection()
    {
        int count = ReadTable(out Span<ulong> offsets, out Span<ulong> sizes);
        if (count <= 0)
            return new Mutation(MutationKind.ResizeSection, 0, 0, 0);
        int k = _random.Next(count);
        ulong dataStart = unchecked(offsets[k] + EifSectionHeader.EncodedSize);
        ulong dataEnd = unchecked(dataStart + sizes[k]);
        if (offsets[k] < EifHeader.EncodedSize || dataStart < offsets[k] || dataEnd < dataStart || dataEnd > (ulong)Length)
            return new Mutation(MutationKind.ResizeSection, (int)Math.Min(offsets[k], (ulong)Length), 0, 0);

        // Grow by inserting random bytes anywhere in the data, or shrink by deleting a range of it.
        int size = (int)sizes[k];
        long delta;
        int at;
        if (size == 0 || _random.Next(2) == 0)
        {
            int grow = Math.Min(GrowthSize(), Buffer.Length - Length);
            at = (int)dataStart + _random.Next(size + 1);
            _random.NextBytes(OpenGap(at, grow));
            delta = grow;
        }
        else
        {
            int shrink = Math.Min(ShrinkSize(), size);
            at = (int)dataStart + _random.Next(size - shrink + 1);
            Buffer.AsSpan(at + shrink, Length - at - shrink).CopyTo(Buffer.AsSpan(at));
            Length -= shrink;
            delta = -shrink;
        }

        for (int j = 0; j < count; j++)
        {
            if (j != k && offsets[j] >= dataEnd)
                offsets[j] = unchecked(offsets[j] + (ulong)delta);
        }

        sizes[k] = unchecked(sizes[k] + (ulong)delta);
        WriteTable(count, offsets, sizes);
        BinaryPrimitives.WriteUInt64BigEndian(Buffer.AsSpan((int)offsets[k] + 4), sizes[k]); // section_size
        return new Mutation(MutationKind.ResizeSection, at, (int)delta, sizes[k]);
    }

    private Mutation ReorderTable()
    {
        int count = ReadTable(out Span<ulong> offsets, out Span<ulong> sizes);
        if (count < 2)
            return new Mutation(MutationKind.ReorderTable, 0, 0, 0);
        int i = _random.Next(count);
        int j = _random.Next(count);
        bool swap = _random.Next(2) == 0;
        (ulong offset, ulong size) = (offsets[i], sizes[i]);
        (offsets[i], sizes[i]) = (offsets[j], sizes[j]);
        if (swap)
            (offsets[j], sizes[j]) = (offset, size);
        WriteTable(count, offsets, sizes);

        // Offset: the first entry's place in the offsets table; Size: the other entry; Value: 1 for a swap.
        return new Mutation(MutationKind.ReorderTable, CorpusFile.SectionOffsetsTable + 8 * i, j, swap ? 1UL : 0UL);
    }

    // Reads the current input's table entries in use (num_sections, at most 32) into the mutator's own arrays;
    // returns how many, or -1 when the input is shorter than a header.
    private int ReadTable(out Span<ulong> offsets, out Span<ulong> sizes)
    {
        offsets = _offsets;
        sizes = _sizes;
        if (Length < EifHeader.EncodedSize)
            return -1;
        int count = Math.Min((int)BinaryPrimitives.ReadUInt16BigEndian(Buffer.AsSpan(CorpusFile.NumSectionsOffset)), EifConstants.MaxSections);
        for (int i = 0; i < count; i++)
        {
            offsets[i] = BinaryPrimitives.ReadUInt64BigEndian(Buffer.AsSpan(CorpusFile.SectionOffsetsTable + 8 * i));
            sizes[i] = BinaryPrimitives.ReadUInt64BigEndian(Buffer.AsSpan(CorpusFile.SectionSizesTable + 8 * i));
        }

        return count;
    }

    private void WriteTable(int count, ReadOnlySpan<ulong> offsets, ReadOnlySpan<ulong> sizes)
    {
        for (int i = 0; i < count; i++)
        {
            BinaryPrimitives.WriteUInt64BigEndian(Buffer.AsSpan(CorpusFile.SectionOffsetsTable + 8 * i), offsets[i]);
            if (!sizes.IsEmpty)
                BinaryPrimitives.WriteUInt64BigEndian(Buffer.AsSpan(CorpusFile.SectionSizesTable + 8 * i), sizes[i]);
        }
    }

    // Moves Buffer[at..Length] up by count and returns the gap; the caller fills it.
    private Span<byte> OpenGap(int at, int count)
    {
        Buffer.AsSpan(at, Length - at).CopyTo(Buffer.AsSpan(at + count));
        Length += count;
        return Buffer.AsSpan(at, count);
    }

    // A start position for width bytes, in [0, Length - width]; width 0 asks for an insertion point in [0, Length].
    // Positions derived from the seed's layout may lie past the end after earlier cuts; they are clamped.
    private int PickPosition(int width)
    {
        var sections = Seed.Sections;
        int roll = _random.Next(100);
        int at;
        if (roll < 40)
        {
            at = PickHeaderPosition();
        }
        else if (roll < 60 && sections.Length > 0)
        {
            at = sections[_random.Next(sections.Length)].Header + _random.Next(EifSectionHeader.EncodedSize);
        }
        else if (roll < 80 && sections.Length > 0)
        {
            var s = sections[_random.Next(sections.Length)];
            at = s.DataStart + _random.Next(Math.Max(s.DataLength, 1));
        }
        else
        {
            at = _random.Next(Length + 1);
        }

        return Math.Min(at, Length - width);
    }

    // A byte of the header. Three quarters of the header are table entries past num_sections, which must be zero
    // and so end the parse at once when touched; half the picks go to the fields in use instead.
    private int PickHeaderPosition() => _random.Next(6) switch
    {
        0 or 1 or 2 => _random.Next(EifHeader.EncodedSize),
        3 => _random.Next(CorpusFile.SectionOffsetsTable),                                   // magic .. num_sections
        4 => CorpusFile.SectionSizesTable + 8 * EifConstants.MaxSections + _random.Next(8), // unused, eif_crc32
        _ => (_random.Next(2) == 0 ? CorpusFile.SectionOffsetsTable : CorpusFile.SectionSizesTable)
            + 8 * _random.Next(Math.Max(Seed.NumSections, 1)) + _random.Next(8),            // a table entry in use
    };

    // Where to insert or delete: 10% in the header, 30% at a section's edge (its header or the end of its data),
    // 30% inside section data, 30% anywhere. Same contract as PickPosition.
    private int PickShiftPosition(int width)
    {
        var sections = Seed.Sections;
        int roll = _random.Next(100);
        int at;
        if (roll < 10)
        {
            at = _random.Next(EifHeader.EncodedSize);
        }
        else if (roll < 40 && sections.Length > 0)
        {
            var s = sections[_random.Next(sections.Length)];
            at = _random.Next(2) == 0 ? s.Header : s.DataStart + s.DataLength;
        }
        else if (roll < 70 && sections.Length > 0)
        {
            var s = sections[_random.Next(sections.Length)];
            at = s.DataStart + _random.Next(Math.Max(s.DataLength, 1));
        }
        else
        {
            at = _random.Next(Length + 1);
        }

        return Math.Min(at, Length - width);
    }

    private (int Offset, int Width) PickField()
    {
        int roll = _random.Next(100);
        if (roll < 55)
        {
            if (_random.Next(2) == 0)
            {
                // Mostly the entries in use and the first unused one; sometimes any of the 32 (an unused entry that
                // is not zero is rejected before anything else is looked at, so it is kept rare).
                int index = _random.Next(10) != 0
                    ? _random.Next(Math.Min(Seed.NumSections + 1, EifConstants.MaxSections))
                    : _random.Next(EifConstants.MaxSections);
                int table = _random.Next(2) == 0 ? CorpusFile.SectionOffsetsTable : CorpusFile.SectionSizesTable;
                return (table + 8 * index, 8);
            }

            return HeaderScalars[_random.Next(HeaderScalars.Length)];
        }

        var sections = Seed.Sections;
        if (roll < 80 && sections.Length > 0)
        {
            var field = SectionHeaderFields[_random.Next(SectionHeaderFields.Length)];
            return (sections[_random.Next(sections.Length)].Header + field.Offset, field.Width);
        }

        int width = 2 << _random.Next(3);
        return (_random.Next(Length) & ~(width - 1), width);
    }

    // Values that make length arithmetic overflow, point at the file's edges, or hit the format's own constants.
    private ulong InterestingValue(int width, ulong current)
    {
        ulong max = width == 8 ? ulong.MaxValue : (1UL << (8 * width)) - 1;
        ulong length = (ulong)Length;
        ulong small = (ulong)_random.Next(2, 17);
        ulong value = _random.Next(16) switch
        {
            0 => 0,
            1 => 1,
            2 => small,
            3 => max,
            4 => max - small,                       // offset + size wraps
            5 => length + small,                    // just past the end of the file
            6 => length - Math.Min(small, length),  // just inside it
            7 => length,
            8 => EifConstants.MaxSections,          // 32: the table's size
            9 => EifConstants.MaxSections + 1,      // 33: one more
            10 => EifHeader.EncodedSize,            // 548: where the first section starts
            11 => unchecked(current + small),
            12 => unchecked(current - small),
            13 => 1UL << 60,                        // a section no file holds: nothing of that size may be allocated
            14 => 1UL << 63,                        // negative once cast to long
            _ => (ulong)int.MaxValue - 8 + small,   // around int.MaxValue, where casts to int go wrong
        };
        return value & max;
    }

    private int GrowthSize() => _random.Next(4) == 0 ? _random.Next(1, MaxGrowth + 1) : _random.Next(1, 17);

    private int ShrinkSize() => _random.Next(4) == 0 ? _random.Next(1, MaxGrowth + 1) : _random.Next(1, 17);
}

using System.Buffers.Binary;
using EifFormat;

namespace EifFuzz;

/// <summary>A seed file and where its structures lie, so that mutations can aim at them.</summary>
internal sealed class CorpusFile
{
    // Header layout (EifHeader.Offsets is internal to EifFormat): num_sections at 0x1A, then the two u64 tables.
    internal const int NumSectionsOffset = 0x1A;
    internal const int SectionOffsetsTable = 0x1C;
    internal const int SectionSizesTable = SectionOffsetsTable + 8 * EifConstants.MaxSections;

    internal CorpusFile(string name, byte[] bytes)
    {
        Name = name;
        Bytes = bytes;
        var sections = new List<(int Header, int DataStart, int DataLength)>();

        // A corpus may hold files that are not valid EIFs; only table entries that fit the file become targets,
        // and such a file is still mutated, just without section-aware aim.
        if (bytes.Length >= EifHeader.EncodedSize)
        {
            int count = Math.Min((int)BinaryPrimitives.ReadUInt16BigEndian(bytes.AsSpan(NumSectionsOffset)), EifConstants.MaxSections);
            for (int i = 0; i < count; i++)
            {
                ulong offset = BinaryPrimitives.ReadUInt64BigEndian(bytes.AsSpan(SectionOffsetsTable + 8 * i));
                ulong size = BinaryPrimitives.ReadUInt64BigEndian(bytes.AsSpan(SectionSizesTable + 8 * i));
                ulong length = (ulong)bytes.Length;
                if (offset > length - EifSectionHeader.EncodedSize || size > length - EifSectionHeader.EncodedSize - offset)
                    continue;
                sections.Add(((int)offset, (int)offset + EifSectionHeader.EncodedSize, (int)size));
            }
        }

        Sections = sections.ToArray();
        NumSections = Sections.Length;
    }

    /// <summary>The file name, for reports.</summary>
    internal string Name { get; }

    /// <summary>The file's bytes; never modified.</summary>
    internal byte[] Bytes { get; }

    /// <summary>The sections the header table locates inside the file: section header offset, data start and length.</summary>
    internal (int Header, int DataStart, int DataLength)[] Sections { get; }

    /// <summary>How many table entries point inside the file.</summary>
    internal int NumSections { get; }

    // Loads every *.eif of the folder in ordinal name order, so that a seed picks the same file on every machine.
    internal static List<CorpusFile> Load(string directory)
    {
        var files = Directory.GetFiles(directory, "*.eif");
        Array.Sort(files, StringComparer.Ordinal);
        return files.Select(f => new CorpusFile(Path.GetFileName(f), File.ReadAllBytes(f))).ToList();
    }
}

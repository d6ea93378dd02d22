namespace EifFormat;

/// <summary>
/// The header's two 32-entry tables: <c>section_offsets</c> (file offset of each section's <em>header</em>) and
/// <c>section_sizes</c> (each section's data length). Kept apart from <see cref="EifHeader"/> because arrays
/// break record equality (STYLE.md rule 2).
/// </summary>
public sealed class EifSectionTable
{
    private readonly ulong[] _offsets;
    private readonly ulong[] _sizes;

    /// <summary>An all-zero table.</summary>
    public EifSectionTable()
    {
        _offsets = new ulong[EifConstants.MaxSections];
        _sizes = new ulong[EifConstants.MaxSections];
    }

    /// <summary>Creates a table from up to 32 entries; the rest are zero.</summary>
    /// <exception cref="ArgumentException">The lists differ in length or hold more than 32 entries.</exception>
    public EifSectionTable(IReadOnlyList<ulong> offsets, IReadOnlyList<ulong> sizes)
        : this()
    {
        if (offsets.Count != sizes.Count)
            throw new ArgumentException("The offset and size lists must have the same length.", nameof(sizes));
        if (offsets.Count > EifConstants.MaxSections)
            throw new ArgumentException($"At most {EifConstants.MaxSections} entries.", nameof(offsets));
        for (int i = 0; i < offsets.Count; i++)
        {
            _offsets[i] = offsets[i];
            _sizes[i] = sizes[i];
        }
    }

    /// <summary>The offsets table: absolute file offset of each section's 12-byte header; unused entries 0.</summary>
    public ReadOnlySpan<ulong> Offsets => _offsets;

    /// <summary>The sizes table: data length of each section, header excluded; unused entries 0.</summary>
    public ReadOnlySpan<ulong> Sizes => _sizes;

    internal ulong[] MutableOffsets => _offsets;

    internal ulong[] MutableSizes => _sizes;
}

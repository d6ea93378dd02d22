using System.Text;

namespace EifFormat;

/// <summary>
/// The inputs of an EIF in the reference builder's terms (<c>EifBuilder</c>, src/utils/mod.rs): a kernel, a command
/// line, ramdisks in order (the first is the bootstrap ramdisk, PCR1), metadata, an optional signature and the target
/// architecture. Turns into sections in the builder's order: kernel, cmdline, metadata, ramdisks…, signature (spec §4.1).
/// </summary>
public sealed class EifImageSpec
{
    /// <summary>The kernel (bzImage on x86_64, Image on aarch64).</summary>
    public required EifSectionSource Kernel { get; init; }

    /// <summary>The kernel command line, stored as UTF-8 without a trailing NUL.</summary>
    public required string Cmdline { get; init; }

    /// <summary>The ramdisks, bootstrap first.</summary>
    public required IReadOnlyList<EifSectionSource> Ramdisks { get; init; }

    /// <summary>The metadata section's content.</summary>
    public required EifMetadata Metadata { get; init; }

    /// <summary>The signature section, last; usually <see cref="EifSectionSource.AfterMeasurement"/>. Null: unsigned.</summary>
    public EifSectionSource? Signature { get; init; }

    /// <summary>True for an aarch64 image (header flag bit 0).</summary>
    public bool Arm64 { get; init; }

    /// <summary>The header fields: version 4, the reference's defaults, the architecture flag.</summary>
    public EifHeaderFields ToHeaderFields() => new() { Flags = Arm64 ? EifConstants.ArchArm64Flag : (ushort)0 };

    /// <summary>The sections in the reference builder's order.</summary>
    /// <exception cref="EifFormatException"><see cref="EifFormatError.InvalidCmdline"/>: the command line holds a NUL.</exception>
    public IReadOnlyList<EifSectionInput> ToSections()
    {
        // The reference passes the command line through CString::new, which rejects an interior NUL.
        int nul = Cmdline.IndexOf('\0', StringComparison.Ordinal);
        if (nul >= 0)
            Throw.InvalidCmdline(Encoding.UTF8.GetByteCount(Cmdline.AsSpan(0, nul)));
        var sections = new List<EifSectionInput>(3 + Ramdisks.Count)
        {
            new(EifSectionType.Kernel, Kernel),
            new(EifSectionType.Cmdline, EifSectionSource.FromBytes(Encoding.UTF8.GetBytes(Cmdline), "the command line")),
            new(EifSectionType.Metadata, EifSectionSource.FromBytes(Metadata.ToJsonBytes(), "the metadata")),
        };
        foreach (var ramdisk in Ramdisks)
            sections.Add(new EifSectionInput(EifSectionType.Ramdisk, ramdisk));
        if (Signature is not null)
            sections.Add(new EifSectionInput(EifSectionType.Signature, Signature));
        return sections;
    }

    /// <summary>Writes the image to <paramref name="path"/> atomically (see <see cref="EifWriter.WriteFile"/>).</summary>
    /// <exception cref="EifFormatException">The inputs do not form a valid EIF.</exception>
    /// <exception cref="IOException">An input cannot be read or the output cannot be written.</exception>
    public EifWriteResult WriteFile(string path, CancellationToken cancellationToken = default) =>
        EifWriter.WriteFile(path, ToHeaderFields(), ToSections(), cancellationToken);
}

namespace EifFormat;

/// <summary>
/// The structural rules a reader enforces and a writer must not break (spec §10.1 and §10.2), in one place so the
/// two cannot drift: what the writer produces is exactly what the strict reader accepts.
/// </summary>
internal static class EifRules
{
    /// <summary>Version 2..4, no reserved flag bits, at most 32 sections.</summary>
    internal static void ValidateHeaderFields(ushort version, ushort flags, int sectionCount)
    {
        if (version is < EifConstants.MinSupportedVersion or > EifConstants.CurrentVersion)
            Throw.UnsupportedVersion(version);
        if ((flags & ~EifConstants.KnownHeaderFlags) != 0)
            Throw.UnknownFlags(flags);
        if (sectionCount > EifConstants.MaxSections)
            Throw.TooManySections(sectionCount);
    }

    /// <summary>
    /// Exactly one kernel and one cmdline, at least one ramdisk and none before the kernel, at most one metadata and
    /// one signature section and only in versions that have them, metadata present from version 4. The types must
    /// already be defined ones (1..5).
    /// </summary>
    internal static void ValidateSectionSet(ushort version, IReadOnlyList<EifSectionType> types)
    {
        int kernel = -1, cmdline = -1, metadata = -1, signature = -1, firstRamdisk = -1;
        for (int i = 0; i < types.Count; i++)
        {
            switch (types[i])
            {
                case EifSectionType.Kernel:
                    Single(ref kernel, i, types[i]);
                    break;
                case EifSectionType.Cmdline:
                    Single(ref cmdline, i, types[i]);
                    break;
                case EifSectionType.Metadata:
                    Since(i, types[i], EifConstants.FirstVersionWithMetadata);
                    Single(ref metadata, i, types[i]);
                    break;
                case EifSectionType.Signature:
                    Since(i, types[i], EifConstants.FirstVersionWithSignature);
                    Single(ref signature, i, types[i]);
                    break;
                case EifSectionType.Ramdisk:
                    if (firstRamdisk < 0)
                        firstRamdisk = i;
                    if (kernel < 0 && IndexOf(types, EifSectionType.Kernel) is int laterKernel and >= 0)
                        Throw.SectionOrder(i, laterKernel);
                    break;
            }
        }

        if (kernel < 0)
            Throw.MissingSection("kernel");
        if (cmdline < 0)
            Throw.MissingSection("cmdline");
        if (firstRamdisk < 0)
            Throw.MissingSection("ramdisk");
        if (metadata < 0 && version >= EifConstants.FirstVersionWithMetadata)
            Throw.MissingSection($"metadata (required from version {EifConstants.FirstVersionWithMetadata})");

        void Since(int index, EifSectionType type, ushort since)
        {
            if (version < since)
                Throw.SectionNotInVersion(index, type, version, since);
        }

        static void Single(ref int seen, int index, EifSectionType type)
        {
            if (seen >= 0)
                Throw.DuplicateSection(type, seen, index);
            seen = index;
        }

        static int IndexOf(IReadOnlyList<EifSectionType> types, EifSectionType type)
        {
            for (int i = 0; i < types.Count; i++)
            {
                if (types[i] == type)
                    return i;
            }

            return -1;
        }
    }
}

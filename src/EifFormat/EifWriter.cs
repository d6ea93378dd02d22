using IoCrc32 = System.IO.Hashing.Crc32;

namespace EifFormat;

/// <summary>
/// Writes EIFs. The layout is planned and checked first (a bad plan throws before the first byte), then every
/// section is streamed once through the CRC-32 and PCR hashers into the output, and the header, with its tables and
/// CRC, is written last. The CRC of the pieces is combined (<see cref="Crc32Combine"/>), so nothing is read twice.
/// </summary>
public static class EifWriter
{
    /// <summary>
    /// Writes to <paramref name="path"/> atomically: into a temporary file in the same folder, flushed to disk and
    /// renamed over <paramref name="path"/> on success; on any failure the temporary file is removed and an existing
    /// file at <paramref name="path"/> is left as it was.
    /// </summary>
    /// <exception cref="EifFormatException">The sections do not form a valid EIF, or an input changed while read.</exception>
    /// <exception cref="IOException">An input cannot be read or the output cannot be written.</exception>
    public static EifWriteResult WriteFile(
        string path, EifHeaderFields header, IReadOnlyList<EifSectionInput> sections, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        return AtomicFile.Write(path, stream => Write(stream, header, sections, cancellationToken));
    }

    /// <summary>Writes an EIF to a seekable stream, starting at offset 0 of the stream.</summary>
    /// <exception cref="ArgumentException">The stream cannot write or seek.</exception>
    /// <exception cref="EifFormatException">The sections do not form a valid EIF, or an input changed while read.</exception>
    /// <exception cref="IOException">An input cannot be read or the output cannot be written.</exception>
    public static EifWriteResult Write(
        Stream destination, EifHeaderFields header, IReadOnlyList<EifSectionInput> sections, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(destination);
        ArgumentNullException.ThrowIfNull(header);
        ArgumentNullException.ThrowIfNull(sections);
        if (!destination.CanWrite || !destination.CanSeek)
            throw new ArgumentException("The destination must be writable and seekable (the header is written last).", nameof(destination));

        var plan = Plan(header, sections);
        var opened = new List<Stream>();
        try
        {
            // Open every input before the first byte is written, so a missing or unreadable file fails early.
            var inputs = new Stream[plan.Count];
            for (int i = 0; i < plan.Count; i++)
            {
                if (plan[i].Input.Source is EifSectionSource.DeferredSource)
                    continue; // produced when its turn comes
                inputs[i] = plan[i].Bytes is { } bytes ? new MemoryStream(bytes, writable: false) : plan[i].Input.Source.Open();
                if (plan[i].Bytes is not null || plan[i].Input.Source.OwnsStream)
                    opened.Add(inputs[i]);
            }

            return WritePlanned(destination, header, plan, inputs, cancellationToken);
        }
        finally
        {
            foreach (var s in opened)
                s.Dispose();
        }
    }

    private static EifWriteResult WritePlanned(
        Stream destination, EifHeaderFields fields, List<PlannedSection> plan, Stream[] inputs, CancellationToken cancellationToken)
    {
        destination.Position = 0;
        destination.SetLength(0);
        destination.Write(new byte[EifHeader.EncodedSize]);
        long position = EifHeader.EncodedSize;

        long measured = plan.Sum(p => p.Length ?? 0);
        PcrRoute[] routes = PcrRoutes.Of(plan.Select(p => p.Input.Type));
        using var digester = new SectionDigester(measured, routes);
        var written = new EifSection[plan.Count];
        uint restCrc = 0; // CRC of everything after the header; CRC-32 of no bytes is 0
        long restLength = 0;
        Span<byte> sectionHeader = stackalloc byte[EifSectionHeader.EncodedSize];
        (byte[] Pcr0, byte[] Pcr1, byte[] Pcr2)? pcrs = null;
        byte[]? producedCertificateDer = null;
        for (int i = 0; i < plan.Count; i++)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var p = plan[i];
            long headerOffset = position;
            if (p.Input.Source is EifSectionSource.DeferredSource deferred)
            {
                // Every measured section is behind us (checked by Plan): PCR0 is final.
                pcrs ??= digester.Finish();
                byte[] produced = deferred.Produce(pcrs.Value.Pcr0);
                producedCertificateDer = CheckSignatureSection(produced, deferred.Name);
                new EifSectionHeader(p.Input.Type, (ulong)produced.Length).Write(sectionHeader);
                destination.Write(sectionHeader);
                destination.Write(produced);
                restCrc = Crc32Combine.Combine(restCrc, IoCrc32.HashToUInt32(sectionHeader), EifSectionHeader.EncodedSize);
                restCrc = Crc32Combine.Combine(restCrc, IoCrc32.HashToUInt32(produced), produced.Length);
                restLength += EifSectionHeader.EncodedSize + produced.Length;
                written[i] = new EifSection(i, p.Input.Type, 0, headerOffset, produced.Length);
                position = headerOffset + EifSectionHeader.EncodedSize + produced.Length;
                continue;
            }

            new EifSectionHeader(p.Input.Type, (ulong)(p.Length ?? 0)).Write(sectionHeader);
            destination.Write(sectionHeader);

            (uint dataCrc, long length) = digester.Copy(inputs[i], p.Length ?? long.MaxValue, routes[i], destination);
            if (p.Length is { } planned)
            {
                if (length != planned)
                    Throw.InputChanged(p.Input.Source.Name, planned, length);
                if (p.Input.Source.OwnsStream && inputs[i].ReadByte() >= 0)
                    Throw.InputChanged(p.Input.Source.Name, planned, planned + 1);
            }
            else
            {
                // Unknown length: patch the placeholder header now that the size is known.
                new EifSectionHeader(p.Input.Type, (ulong)length).Write(sectionHeader);
                destination.Position = headerOffset;
                destination.Write(sectionHeader);
                destination.Position = headerOffset + EifSectionHeader.EncodedSize + length;
            }

            restCrc = Crc32Combine.Combine(restCrc, IoCrc32.HashToUInt32(sectionHeader), EifSectionHeader.EncodedSize);
            restCrc = Crc32Combine.Combine(restCrc, dataCrc, length);
            restLength += EifSectionHeader.EncodedSize + length;
            written[i] = new EifSection(i, p.Input.Type, 0, headerOffset, length);
            position = headerOffset + EifSectionHeader.EncodedSize + length;
        }

        (byte[] pcr0, byte[] pcr1, byte[] pcr2) = pcrs ?? digester.Finish();
        byte[]? certificateDer = producedCertificateDer ?? plan.FirstOrDefault(p => p.CertificateDer is not null)?.CertificateDer;
        byte[]? pcr8 = certificateDer is null ? null : Pcr.Compute(certificateDer);

        var table = new EifSectionTable(
            written.Select(s => (ulong)s.Offset).ToArray(),
            written.Select(s => (ulong)s.Size).ToArray());
        var header = new EifHeader(
            EifHeader.ExpectedMagic, fields.Version, fields.Flags, fields.DefaultMemory, fields.DefaultCpus,
            fields.Reserved, (ushort)plan.Count, table, fields.Unused, crc32: 0);
        byte[] headerBytes = new byte[EifHeader.EncodedSize];
        header.Write(headerBytes);
        uint crc = Crc32Combine.Combine(IoCrc32.HashToUInt32(headerBytes.AsSpan(0, EifHeader.CrcCoveredSize)), restCrc, restLength);
        header.WithCrc32(crc).Write(headerBytes);
        destination.Position = 0;
        destination.Write(headerBytes);
        destination.Position = position;
        destination.Flush();
        return new EifWriteResult(position, crc, new EifMeasurements(pcr0, pcr1, pcr2, pcr8), written);
    }

    // Checks the plan against the rules every reader applies (spec §10.1), before any output exists, and buffers
    // the two small sections whose content is checked too (metadata, signature).
    private static List<PlannedSection> Plan(EifHeaderFields header, IReadOnlyList<EifSectionInput> sections)
    {
        EifRules.ValidateHeaderFields(header.Version, header.Flags, sections.Count);
        for (int i = 0; i < sections.Count; i++)
        {
            var type = (sections[i] ?? throw new ArgumentException($"Section {i} is null.", nameof(sections))).Type;
            if (type == EifSectionType.Invalid)
                Throw.InvalidSectionType(i, 0);
            if (!EifSectionTypes.IsDefined((ushort)type))
                Throw.UnknownSectionType(i, 0, (ushort)type);
        }

        EifRules.ValidateSectionSet(header.Version, sections.Select(s => s.Type).ToArray());

        var plan = new List<PlannedSection>(sections.Count);
        for (int i = 0; i < sections.Count; i++)
        {
            var input = sections[i];
            byte[]? bytes = null;
            byte[]? certificateDer = null;
            if (input.Type == EifSectionType.Metadata)
            {
                // Small by definition; buffered so that what is written is known to parse.
                int index = i;
                bytes = ReadCapped(input.Source, EifConstants.MaxMetadataSize, () => Throw.MetadataTooLarge(index, (ulong)(input.Source.PlannedLength ?? EifConstants.MaxMetadataSize + 1L)));
                EifMetadata.Parse(bytes);
            }
            else if (input.Source is EifSectionSource.DeferredSource)
            {
                if (input.Type != EifSectionType.Signature)
                    throw new ArgumentException($"Section {i}: only a signature section can be made after measurement.", nameof(sections));
                if (i != sections.Count - 1)
                    throw new ArgumentException($"Section {i}: a section made after measurement must be the last one.", nameof(sections));
            }
            else if (input.Type == EifSectionType.Signature)
            {
                bytes = ReadCapped(input.Source, EifConstants.MaxSignatureSize, () => Throw.SignatureTooLarge(input.Source.PlannedLength ?? EifConstants.MaxSignatureSize + 1L));
                certificateDer = CheckSignatureSection(bytes, input.Source.Name);
            }

            plan.Add(new PlannedSection(input, bytes, bytes?.LongLength ?? input.Source.PlannedLength, certificateDer));
        }

        return plan;
    }

    // A signature section must decode as the reader will decode it; returns the DER that PCR8 measures.
    private static byte[] CheckSignatureSection(byte[] bytes, string name)
    {
        if (bytes.Length > EifConstants.MaxSignatureSize)
            Throw.SignatureTooLarge(bytes.Length);
        var entries = EifSignatureSection.Decode(bytes);
        return EifSignatureSection.FirstCertificateDer(entries[0].SigningCertificate, $"{name} entry 0 'signing_certificate'");
    }

    private static byte[] ReadCapped(EifSectionSource source, int cap, Action tooLarge)
    {
        if (source.PlannedLength > cap)
            tooLarge();
        Stream stream = source.Open();
        try
        {
            byte[] buffer = new byte[(int)Math.Min(source.PlannedLength ?? cap + 1L, cap + 1L)];
            int length = stream.ReadAtLeast(buffer, buffer.Length, throwOnEndOfStream: false);
            if (length > cap)
                tooLarge();
            if (source.PlannedLength is { } planned && (length != planned || (source.OwnsStream && stream.ReadByte() >= 0)))
                Throw.InputChanged(source.Name, planned, length != planned ? length : planned + 1);
            return buffer.AsSpan(0, length).ToArray();
        }
        finally
        {
            if (source.OwnsStream)
                stream.Dispose();
        }
    }

    private sealed record PlannedSection(EifSectionInput Input, byte[]? Bytes, long? Length, byte[]? CertificateDer);
}

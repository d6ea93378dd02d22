using System.Buffers.Binary;
using System.Security.Cryptography;
using IoCrc32 = System.IO.Hashing.Crc32;

namespace EifFormat;

/// <summary>
/// Reads an EIF from a seekable stream. Opening validates the whole structure (spec §10.2) from the header and the
/// 12-byte section headers alone; section data is never read into memory except the small metadata and signature
/// sections. Payloads are exposed as bounded read-only streams, and <see cref="ComputeDigests(CancellationToken)"/> streams the file
/// once for the CRC and the PCRs. Not thread-safe: it moves the stream's position.
/// </summary>
public sealed class EifReader : IDisposable
{
    private readonly Stream _stream;
    private readonly bool _leaveOpen;
    private readonly EifSection[] _sections;
    private readonly byte[]? _certificateDer;
    private bool _disposed;

    /// <summary>Opens and validates an EIF held in <paramref name="stream"/>.</summary>
    /// <param name="stream">A readable, seekable stream positioned anywhere; the EIF starts at offset 0.</param>
    /// <param name="leaveOpen">Whether disposing the reader leaves <paramref name="stream"/> open.</param>
    /// <param name="options">Layout strictness; <see cref="EifReaderOptions.Strict"/> when null.</param>
    /// <exception cref="ArgumentException">The stream cannot read or seek.</exception>
    /// <exception cref="EifFormatException">The file breaks a rule of the format; <see cref="EifFormatException.Error"/> says which.</exception>
    /// <exception cref="IOException">Reading failed.</exception>
    public EifReader(Stream stream, bool leaveOpen = false, EifReaderOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(stream);
        if (!stream.CanRead)
            throw new ArgumentException("The stream must be readable.", nameof(stream));
        if (!stream.CanSeek)
            throw new ArgumentException("The stream must be seekable.", nameof(stream));
        _stream = stream;
        _leaveOpen = leaveOpen;
        Options = options ?? EifReaderOptions.Strict;
        Length = stream.Length;

        Span<byte> headerBytes = stackalloc byte[EifHeader.EncodedSize];
        if (Length < EifHeader.EncodedSize)
            Throw.Truncated("the 548-byte header", EifHeader.EncodedSize, Length);
        ReadExactly(0, headerBytes, "the 548-byte header");
        Header = EifHeader.Read(headerBytes);
        ValidateHeader(Header);
        _sections = ReadSectionHeaders(Header);
        ValidateLayout();
        EifRules.ValidateSectionSet(Header.Version, _sections.Select(s => s.Type).ToArray());
        (Metadata, MetadataBytes) = ReadMetadata();
        (Signatures, _certificateDer) = ReadSignatures();
    }

    /// <summary>Opens and validates the EIF at <paramref name="path"/>; errors name the file.</summary>
    /// <exception cref="EifFormatException">The file breaks a rule of the format.</exception>
    /// <exception cref="IOException">The file cannot be opened or read.</exception>
    public static EifReader Open(string path, EifReaderOptions? options = null)
    {
        var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, bufferSize: 1, FileOptions.SequentialScan);
        try
        {
            return new EifReader(stream, leaveOpen: false, options) { Path = path };
        }
        catch (EifFormatException ex)
        {
            stream.Dispose();
            throw ex.WithPath(path);
        }
        catch
        {
            stream.Dispose();
            throw;
        }
    }

    /// <summary>The file this reader was opened on, when opened by path.</summary>
    public string? Path { get; private init; }

    /// <summary>The strictness in force.</summary>
    public EifReaderOptions Options { get; }

    /// <summary>The file length in bytes.</summary>
    public long Length { get; }

    /// <summary>The validated header.</summary>
    public EifHeader Header { get; }

    /// <summary>The sections in table order (file order for valid files).</summary>
    public IReadOnlyList<EifSection> Sections => _sections;

    /// <summary>The parsed metadata section; null when there is none or it holds the JSON literal <c>null</c>.</summary>
    public EifMetadata? Metadata { get; }

    /// <summary>The raw bytes of the metadata section, or null when there is none.</summary>
    public ReadOnlyMemory<byte>? MetadataBytes { get; }

    /// <summary>The decoded signature section, or null when the image is unsigned.</summary>
    public IReadOnlyList<EifPcrSignature>? Signatures { get; }

    /// <summary>True when the image has a signature section.</summary>
    public bool IsSigned => Signatures is not null;

    /// <summary>The DER of the certificate PCR8 measures (the first in entry 0), or null when unsigned.</summary>
    public ReadOnlyMemory<byte>? SigningCertificateDer => _certificateDer;

    /// <summary>The number of ramdisk sections.</summary>
    public int RamdiskCount => _sections.Count(s => s.Type == EifSectionType.Ramdisk);

    /// <summary>The first section of <paramref name="type"/>, or null.</summary>
    public EifSection? FindSection(EifSectionType type)
    {
        foreach (var s in _sections)
        {
            if (s.Type == type)
                return s;
        }

        return null;
    }

    /// <summary>A read-only stream over the data of section <paramref name="index"/>, bounded to its size.</summary>
    /// <remarks>The stream shares the reader's underlying stream: read one section at a time.</remarks>
    /// <exception cref="ArgumentOutOfRangeException">No such section.</exception>
    public Stream OpenSection(int index)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        ArgumentOutOfRangeException.ThrowIfNegative(index);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(index, _sections.Length);
        var s = _sections[index];
        return new SubReadStream(_stream, s.DataOffset, s.Size, $"section {index} ({EifSectionTypes.Name(s.Type)})");
    }

    /// <summary>
    /// Streams the file once: the CRC-32 over the header (less the CRC field) and every section in table order,
    /// and PCR0, PCR1, PCR2 (plus PCR8 when signed). PCR0 is hashed on a second thread for large files.
    /// </summary>
    /// <exception cref="EifFormatException">The file shrank or changed under the reader.</exception>
    /// <exception cref="IOException">Reading failed.</exception>
    public EifDigests ComputeDigests(CancellationToken cancellationToken = default) => ComputeDigests(hashSections: false, cancellationToken);

    /// <summary>
    /// As <see cref="ComputeDigests(CancellationToken)"/>; with <paramref name="hashSections"/>, the same single pass
    /// also gives the SHA-256 of each section's data (<see cref="EifDigests.SectionSha256"/>), so that a caller that
    /// compares sections does not read the file a second time.
    /// </summary>
    public EifDigests ComputeDigests(bool hashSections, CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        Span<byte> buffer = stackalloc byte[EifHeader.EncodedSize];
        ReadExactly(0, buffer, "the 548-byte header");
        uint crc = IoCrc32.HashToUInt32(buffer[..EifHeader.CrcCoveredSize]);
        uint storedCrc = BinaryPrimitives.ReadUInt32BigEndian(buffer[EifHeader.CrcCoveredSize..]);

        long measured = _sections.Sum(s => s.Size);
        PcrRoute[] routes = PcrRoutes.Of(_sections.Select(s => s.Type));
        using var digester = new SectionDigester(measured, routes);
        byte[][]? sectionSha256 = hashSections ? new byte[Sections.Count][] : null;
        foreach (var section in _sections)
        {
            cancellationToken.ThrowIfCancellationRequested();
            Span<byte> sectionHeader = buffer[..EifSectionHeader.EncodedSize];
            ReadExactly(section.Offset, sectionHeader, $"section {section.Index}'s header");
            crc = Crc32Combine.Combine(crc, IoCrc32.HashToUInt32(sectionHeader), EifSectionHeader.EncodedSize);

            using Stream data = OpenSection(section.Index);
            using var sha256 = hashSections ? new HashSink(HashAlgorithmName.SHA256) : null;
            // Copy hands the bytes to the output (on the digester's worker) and waits for it before returning.
            (uint dataCrc, long length) = digester.Copy(data, section.Size, routes[section.Index], output: sha256);
            if (sectionSha256 is not null)
                sectionSha256[section.Index] = sha256!.Finish();
            if (length != section.Size)
                Throw.Truncated($"section {section.Index}", section.Size, length);
            crc = Crc32Combine.Combine(crc, dataCrc, length);
        }

        (byte[] pcr0, byte[] pcr1, byte[] pcr2) = digester.Finish();
        byte[]? pcr8 = _certificateDer is null ? null : Pcr.Compute(_certificateDer);
        return new EifDigests(storedCrc, crc, new EifMeasurements(pcr0, pcr1, pcr2, pcr8), sectionSha256);
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        if (_disposed)
            return;
        _disposed = true;
        if (!_leaveOpen)
            _stream.Dispose();
    }

    private static void ValidateHeader(EifHeader header)
    {
        if (header.Magic != EifHeader.ExpectedMagic)
            Throw.BadMagic(header.Magic);

        // The section count is checked here, before anything walks the table (STYLE.md rule 3).
        EifRules.ValidateHeaderFields(header.Version, header.Flags, header.NumSections);
        ReadOnlySpan<ulong> offsets = header.Table.Offsets;
        ReadOnlySpan<ulong> sizes = header.Table.Sizes;
        for (int i = header.NumSections; i < EifConstants.MaxSections; i++)
        {
            if (offsets[i] != 0 || sizes[i] != 0)
                Throw.UnusedTableEntry(i, offsets[i], sizes[i]);
        }
    }

    private EifSection[] ReadSectionHeaders(EifHeader header)
    {
        var sections = new EifSection[header.NumSections];
        Span<byte> bytes = stackalloc byte[EifSectionHeader.EncodedSize];
        ulong length = (ulong)Length;
        for (int i = 0; i < sections.Length; i++)
        {
            ulong offset = header.Table.Offsets[i];
            ulong size = header.Table.Sizes[i];

            // Overflow-safe: length ≥ 548 > 12, and each subtraction is guarded by the comparison before it.
            if (offset > length - EifSectionHeader.EncodedSize || size > length - EifSectionHeader.EncodedSize - offset)
                Throw.SectionOutOfBounds(i, offset, size, Length);
            ReadExactly((long)offset, bytes, $"section {i}'s header");
            var sh = EifSectionHeader.Read(bytes);
            if (sh.RawType == (ushort)EifSectionType.Invalid)
                Throw.InvalidSectionType(i, (long)offset);
            if (!EifSectionTypes.IsDefined(sh.RawType))
                Throw.UnknownSectionType(i, (long)offset, sh.RawType);
            if (sh.Flags != 0)
                Throw.InvalidSectionFlags(i, sh.Flags);
            if (sh.DataSize != size)
                Throw.SectionSizeMismatch(i, size, sh.DataSize);
            sections[i] = new EifSection(i, sh.Type, sh.Flags, (long)offset, (long)size);
        }

        return sections;
    }

    // Sections in table order must follow the header and each other without overlap; strictly, without gaps or
    // trailing bytes either, so that the sequential walk (nitro-cli) and the table walk (QEMU, hypervisor) agree.
    private void ValidateLayout()
    {
        long previousEnd = EifHeader.EncodedSize;
        foreach (var s in _sections)
        {
            if (s.Offset < previousEnd)
                Throw.SectionOverlap(s.Index, (ulong)s.Offset, previousEnd);
            if (s.Offset > previousEnd && !Options.AllowNonContiguous)
                Throw.SectionGap(s.Index, (ulong)s.Offset, previousEnd);
            previousEnd = s.End;
        }

        if (previousEnd != Length && !Options.AllowNonContiguous)
            Throw.TrailingBytes(previousEnd, Length);
    }

    private (EifMetadata?, ReadOnlyMemory<byte>?) ReadMetadata()
    {
        if (FindSection(EifSectionType.Metadata) is not { } s)
            return (null, null);
        if (s.Size > EifConstants.MaxMetadataSize)
            Throw.MetadataTooLarge(s.Index, (ulong)s.Size);
        byte[] bytes = new byte[s.Size];
        ReadExactly(s.DataOffset, bytes, $"metadata section {s.Index}");
        return (EifMetadata.Parse(bytes), bytes);
    }

    private (IReadOnlyList<EifPcrSignature>?, byte[]?) ReadSignatures()
    {
        if (FindSection(EifSectionType.Signature) is not { } s)
            return (null, null);
        if (s.Size > EifConstants.MaxSignatureSize)
            Throw.SignatureTooLarge(s.Size);
        byte[] bytes = new byte[s.Size];
        ReadExactly(s.DataOffset, bytes, $"signature section {s.Index}");
        var entries = EifSignatureSection.Decode(bytes);
        byte[] der;
        try
        {
            der = EifSignatureSection.FirstCertificateDer(entries[0].SigningCertificate, "signature section entry 0 'signing_certificate'");
        }
        catch (EifFormatException ex) when (ex.Error == EifFormatError.InvalidCertificate)
        {
            throw Throw.InvalidSignature(ex.Message, ex);
        }

        return (entries, der);
    }

    private void ReadExactly(long offset, Span<byte> destination, string what)
    {
        _stream.Position = offset;
        int total = 0;
        while (total < destination.Length)
        {
            int read = _stream.Read(destination[total..]);
            if (read == 0)
                Throw.Truncated(what, destination.Length, total);
            total += read;
        }
    }
}

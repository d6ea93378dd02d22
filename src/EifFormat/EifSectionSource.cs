namespace EifFormat;

/// <summary>Where the writer takes a section's bytes from. Sources are read once, in chunks, never whole.</summary>
public abstract class EifSectionSource
{
    private protected EifSectionSource(string name) => Name = name;

    /// <summary>A name for messages: a file path or a description.</summary>
    public string Name { get; }

    /// <summary>The length known before writing starts, or null when the source is read to its end.</summary>
    internal abstract long? PlannedLength { get; }

    /// <summary>A file, opened when the writer plans (so a missing file fails before any output).</summary>
    public static EifSectionSource FromFile(string path) => new FileSource(path);

    /// <summary>Bytes in memory (small sections: cmdline, metadata, signature).</summary>
    public static EifSectionSource FromBytes(ReadOnlyMemory<byte> bytes, string name) => new BytesSource(bytes, name);

    /// <summary>
    /// A stream the caller owns. With <paramref name="length"/>, exactly that many bytes are taken from its current
    /// position; without, it is read to its end and the section header is patched afterwards.
    /// </summary>
    public static EifSectionSource FromStream(Stream stream, string name, long? length = null) => new StreamSource(stream, name, length);

    /// <summary>
    /// A section made from PCR0 once every measured section before it has been written: the signature section of an
    /// image signed while it is built. It must be the last section.
    /// </summary>
    public static EifSectionSource AfterMeasurement(Func<byte[], byte[]> fromPcr0, string name) => new DeferredSource(fromPcr0, name);

    /// <summary>Opens the source for reading; the writer disposes what it opens.</summary>
    internal abstract Stream Open();

    /// <summary>Whether the writer must dispose the stream <see cref="Open"/> returns.</summary>
    internal virtual bool OwnsStream => true;

    private sealed class FileSource(string path) : EifSectionSource(path)
    {
        private long? _length;

        internal override long? PlannedLength => _length ??= new FileInfo(Name) is { Exists: true } f
            ? f.Length
            : throw new FileNotFoundException($"{Name}: no such file", Name);

        internal override Stream Open() =>
            new FileStream(Name, FileMode.Open, FileAccess.Read, FileShare.Read, bufferSize: 1, FileOptions.SequentialScan);
    }

    private sealed class BytesSource(ReadOnlyMemory<byte> bytes, string name) : EifSectionSource(name)
    {
        internal override long? PlannedLength => bytes.Length;

        internal override Stream Open() => new ReadOnlyMemoryStream(bytes);
    }

    private sealed class StreamSource(Stream stream, string name, long? length) : EifSectionSource(name)
    {
        internal override long? PlannedLength => length;

        internal override bool OwnsStream => false;

        internal override Stream Open() => stream;
    }

    internal sealed class DeferredSource(Func<byte[], byte[]> fromPcr0, string name) : EifSectionSource(name)
    {
        internal override long? PlannedLength => null;

        internal byte[] Produce(byte[] pcr0) => fromPcr0(pcr0);

        internal override Stream Open() => throw new InvalidOperationException("A deferred section is produced, not opened.");
    }

    private sealed class ReadOnlyMemoryStream(ReadOnlyMemory<byte> bytes) : Stream
    {
        private int _position;

        public override bool CanRead => true;

        public override bool CanSeek => false;

        public override bool CanWrite => false;

        public override long Length => bytes.Length;

        public override long Position
        {
            get => _position;
            set => throw new NotSupportedException();
        }

        public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

        public override int Read(Span<byte> buffer)
        {
            int n = Math.Min(buffer.Length, bytes.Length - _position);
            bytes.Span.Slice(_position, n).CopyTo(buffer);
            _position += n;
            return n;
        }

        public override void Flush()
        {
        }

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();

        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    }
}

/// <summary>One section to write: its type and where its bytes come from.</summary>
/// <param name="Type">The section type.</param>
/// <param name="Source">The bytes.</param>
public sealed record EifSectionInput(EifSectionType Type, EifSectionSource Source);

/// <summary>The header fields a writer does not derive from the sections. Defaults are the reference builder's.</summary>
public sealed record EifHeaderFields
{
    /// <summary>The <c>version</c> field (2..4).</summary>
    public ushort Version { get; init; } = EifConstants.CurrentVersion;

    /// <summary>The <c>flags</c> field: bit 0 = aarch64.</summary>
    public ushort Flags { get; init; }

    /// <summary>The <c>default_mem</c> field.</summary>
    public ulong DefaultMemory { get; init; } = EifConstants.DefaultMemory;

    /// <summary>The <c>default_cpus</c> field.</summary>
    public ulong DefaultCpus { get; init; } = EifConstants.DefaultCpus;

    /// <summary>The <c>reserved</c> field.</summary>
    public ushort Reserved { get; init; }

    /// <summary>The <c>unused</c> field.</summary>
    public uint Unused { get; init; }

    /// <summary>The fields of an existing header, for a byte-identical rewrite.</summary>
    public static EifHeaderFields From(EifHeader header) => new()
    {
        Version = header.Version,
        Flags = header.Flags,
        DefaultMemory = header.DefaultMemory,
        DefaultCpus = header.DefaultCpus,
        Reserved = header.Reserved,
        Unused = header.Unused,
    };
}

/// <summary>What the writer produced.</summary>
public sealed class EifWriteResult
{
    internal EifWriteResult(long length, uint crc32, EifMeasurements measurements, IReadOnlyList<EifSection> sections)
    {
        Length = length;
        Crc32 = crc32;
        Measurements = measurements;
        Sections = sections;
    }

    /// <summary>Bytes written.</summary>
    public long Length { get; }

    /// <summary>The CRC stored at 0x220.</summary>
    public uint Crc32 { get; }

    /// <summary>The image's PCRs, computed while writing.</summary>
    public EifMeasurements Measurements { get; }

    /// <summary>The section layout written.</summary>
    public IReadOnlyList<EifSection> Sections { get; }
}

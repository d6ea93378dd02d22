using EifBuilder.Images;
using EifBuilder.Tar;
using SharpCompress.Compressors;
using SharpCompress.Compressors.Deflate;
using ZstdDecompressionStream = SharpCompress.Compressors.ZStandard.DecompressionStream;

namespace EifBuilder.Layers;

/// <summary>A layer ready for flattening: its entries, and where its uncompressed tar is.</summary>
/// <param name="Index">Position, bottom first.</param>
/// <param name="What">Name for messages.</param>
/// <param name="Tar">The uncompressed tar: in place in the source file, or a temporary file.</param>
/// <param name="Entries">The entries, in tar order.</param>
public sealed record MaterializedLayer(int Index, string What, FileRange Tar, IReadOnlyList<TarEntry> Entries);

/// <summary>
/// Reads each layer once, sequentially: checks its digest and its diff_id while it streams, decompresses gzip and
/// zstd (SharpCompress) into a temporary file, and indexes its tar headers, so that file data can later be read
/// by offset in any order. An uncompressed layer inside an archive or layout is indexed in place and never copied.
/// Temporary files live in one private folder, removed on <see cref="Dispose"/>: disk use is at most the
/// uncompressed size of the compressed layers.
/// </summary>
public sealed class LayerStore : IDisposable
{
    private readonly List<MaterializedLayer> _layers = [];
    private readonly Dictionary<string, FileStream> _open = new(StringComparer.Ordinal);
    private readonly string _temporary;

    /// <summary>Creates a store with its temporary folder under <paramref name="tempRoot"/> (default: the system's).</summary>
    public LayerStore(string? tempRoot = null)
    {
        _temporary = Directory.CreateTempSubdirectory("eif-layers-").FullName;
        if (tempRoot is not null)
        {
            Directory.Delete(_temporary);
            _temporary = Path.Combine(tempRoot, $"eif-layers-{Guid.NewGuid():N}");
            Directory.CreateDirectory(_temporary);
        }
    }

    /// <summary>The layers added so far.</summary>
    public IReadOnlyList<MaterializedLayer> Layers => _layers;

    /// <summary>Bytes of uncompressed tar read so far (for progress).</summary>
    public long BytesIndexed { get; private set; }

    /// <summary>Reads, checks and indexes the next layer.</summary>
    /// <param name="blob">The layer as the source offers it.</param>
    /// <param name="diffId">The config's diff_id for this layer: the digest of its uncompressed tar.</param>
    /// <param name="cancellationToken">Cancels between reads.</param>
    /// <exception cref="EnclaveBuildException"><see cref="BuildError.DigestMismatch"/>, <see cref="BuildError.InvalidLayer"/> or <see cref="BuildError.UnsupportedMediaType"/>.</exception>
    public MaterializedLayer Add(LayerBlob blob, Digest diffId, CancellationToken cancellationToken)
    {
        int index = _layers.Count;
        using var blobHash = blob.Digest?.CreateHash();
        using var diffHash = diffId.CreateHash();
        using var peekable = new PeekableStream(blob.Open());
        var stored = new HashingStream(peekable, blobHash);
        Compression compression = Detect(peekable.Peek(4), blob);

        Stream? decompressor = null;
        FileStream? temporary = null;
        try
        {
            Stream tar = stored;
            if (compression != Compression.None)
            {
                decompressor = compression == Compression.Gzip
                    ? new GZipStream(stored, CompressionMode.Decompress)
                    : new ZstdDecompressionStream(stored, 1 << 17, true, false);
                tar = decompressor;
            }

            var uncompressed = new HashingStream(tar, compression == Compression.None && blob.Digest == diffId ? null : diffHash);
            FileRange range;
            Stream parsed = uncompressed;
            string? temporaryPath = null;
            if (compression != Compression.None || blob.Location is null)
            {
                temporaryPath = Path.Combine(_temporary, $"layer-{index}.tar");
                temporary = new FileStream(temporaryPath, FileMode.CreateNew, FileAccess.Write, FileShare.None, bufferSize: 1 << 16);
                parsed = new TeeStream(uncompressed, temporary);
            }

            var reader = new TarStreamReader(parsed, blob.What);
            var entries = new List<TarEntry>();
            while (reader.Next() is { } entry)
            {
                entries.Add(entry);
                if ((entries.Count & 0xFF) == 0)
                    cancellationToken.ThrowIfCancellationRequested();
            }

            reader.Drain();
            stored.Drain(); // whatever follows the compressed stream belongs to the blob's digest too
            BytesIndexed += uncompressed.BytesRead;

            if (blob.Digest is { } digest)
                digest.VerifyHash(blobHash!.GetHashAndReset(), blob.What);
            if (blob.Size is { } size && size != stored.BytesRead)
                throw new EnclaveBuildException(BuildError.DigestMismatch, $"{blob.What}: the blob is {stored.BytesRead} bytes, its descriptor says {size}");
            byte[] uncompressedHash = compression == Compression.None && blob.Digest == diffId
                ? Convert.FromHexString(diffId.Hex) // the same bytes, already verified as the blob digest
                : diffHash.GetHashAndReset();
            diffId.VerifyHash(uncompressedHash, $"{blob.What} (uncompressed, against the config's diff_id)");

            range = temporaryPath is not null
                ? new FileRange(temporaryPath, 0, uncompressed.BytesRead)
                : blob.Location! with { Length = uncompressed.BytesRead };
            var layer = new MaterializedLayer(index, blob.What, range, entries);
            _layers.Add(layer);
            return layer;
        }
        catch (Exception ex) when (ex is InvalidDataException or InvalidOperationException or SharpCompress.Compressors.ZStandard.ZstdException || ex.GetType().Namespace?.StartsWith("SharpCompress", StringComparison.Ordinal) == true)
        {
            throw new EnclaveBuildException(BuildError.InvalidLayer, $"{blob.What}: not a valid {compression.ToString().ToLowerInvariant()} stream ({ex.Message})", ex);
        }
        finally
        {
            decompressor?.Dispose();
            temporary?.Dispose();
        }
    }

    /// <summary>Opens a file's data inside a layer (shares one handle per layer file; do not read two at once).</summary>
    public Stream OpenData(int layer, long offset, long size)
    {
        FileRange tar = _layers[layer].Tar;
        if (!_open.TryGetValue(tar.Path, out FileStream? file))
            _open[tar.Path] = file = new FileStream(tar.Path, FileMode.Open, FileAccess.Read, FileShare.Read, bufferSize: 1, FileOptions.SequentialScan);
        return new RangeStream(file, tar.Offset + offset, size, ownsInner: false);
    }

    /// <summary>Closes the files and removes the temporary folder.</summary>
    public void Dispose()
    {
        foreach (var file in _open.Values)
            file.Dispose();
        _open.Clear();
        try
        {
            Directory.Delete(_temporary, recursive: true);
        }
        catch (DirectoryNotFoundException)
        {
        }
    }

    private static Compression Detect(ReadOnlySpan<byte> head, LayerBlob blob)
    {
        Compression found = head.StartsWith((ReadOnlySpan<byte>)[0x1F, 0x8B]) ? Compression.Gzip
            : head.StartsWith((ReadOnlySpan<byte>)[0x28, 0xB5, 0x2F, 0xFD]) ? Compression.Zstd // RFC 8878 §3.1.1 magic
            : Compression.None;
        Compression? claimed = blob.MediaType switch
        {
            null => null,
            _ when blob.MediaType.EndsWith("gzip", StringComparison.Ordinal) => Compression.Gzip,
            _ when blob.MediaType.EndsWith("zstd", StringComparison.Ordinal) => Compression.Zstd,
            _ => Compression.None,
        };
        if (claimed is not null && claimed != found)
            throw new EnclaveBuildException(BuildError.InvalidLayer, $"{blob.What}: the media type '{blob.MediaType}' says {claimed}, the bytes are {found}");
        return found;
    }

    private enum Compression
    {
        None,
        Gzip,
        Zstd,
    }
}

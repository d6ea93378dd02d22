using EifBuilder.Cpio;
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
/// <param name="Entries">The entries, in tar order (not kept by the store: merge them, then let them go).</param>
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
    private readonly List<FileRange?> _tars = [];
    private readonly Dictionary<string, FileStream> _open = new(StringComparer.Ordinal);
    private readonly string _temporary;
    private long _bytesIndexed;

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

    /// <summary>The uncompressed tar of each layer read so far, by index.</summary>
    public IReadOnlyList<FileRange?> Tars => _tars;

    /// <summary>Bytes of uncompressed tar read so far (for progress).</summary>
    public long BytesIndexed => Interlocked.Read(ref _bytesIndexed);

    /// <summary>
    /// Reads, checks and indexes every layer, yielding them bottom first. Layers are independent until they are
    /// merged, so up to <paramref name="parallelism"/> are read at once (each on its own thread: digest, decompression
    /// and indexing), which puts a second core to work on multi-layer images; at most that many layers' entry lists
    /// are held before the caller takes them.
    /// </summary>
    /// <exception cref="EnclaveBuildException">As <see cref="Add"/>.</exception>
    public IEnumerable<MaterializedLayer> AddAll(IReadOnlyList<LayerBlob> blobs, IReadOnlyList<Digest> diffIds, int parallelism, CancellationToken cancellationToken)
    {
        int first = _tars.Count;
        for (int i = 0; i < blobs.Count; i++)
            _tars.Add(null);
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var pending = new Task<MaterializedLayer>?[blobs.Count];
        void Start(int i)
        {
            if (i < blobs.Count)
                pending[i] = Task.Factory.StartNew(() => Read(first + i, blobs[i], diffIds[i], stop.Token), stop.Token, TaskCreationOptions.LongRunning, TaskScheduler.Default);
        }

        for (int i = 0; i < Math.Max(1, parallelism); i++)
            Start(i);
        try
        {
            for (int i = 0; i < blobs.Count; i++)
            {
                MaterializedLayer layer;
                try
                {
                    layer = pending[i]!.GetAwaiter().GetResult();
                }
                finally
                {
                    pending[i] = null;
                }

                Start(i + Math.Max(1, parallelism));
                yield return layer;
            }
        }
        finally
        {
            // On an error or an early stop, let the readers still running finish before the store is disposed.
            stop.Cancel();
            foreach (var task in pending)
            {
                try
                {
                    task?.Wait(CancellationToken.None);
                }
                catch (AggregateException)
                {
                }
            }
        }
    }

    /// <summary>Reads, checks and indexes the next layer.</summary>
    /// <param name="blob">The layer as the source offers it.</param>
    /// <param name="diffId">The config's diff_id for this layer: the digest of its uncompressed tar.</param>
    /// <param name="cancellationToken">Cancels between reads.</param>
    /// <exception cref="EnclaveBuildException"><see cref="BuildError.DigestMismatch"/>, <see cref="BuildError.InvalidLayer"/> or <see cref="BuildError.UnsupportedMediaType"/>.</exception>
    public MaterializedLayer Add(LayerBlob blob, Digest diffId, CancellationToken cancellationToken)
    {
        _tars.Add(null);
        return Read(_tars.Count - 1, blob, diffId, cancellationToken);
    }

    private MaterializedLayer Read(int index, LayerBlob blob, Digest diffId, CancellationToken cancellationToken)
    {
        using var blobHash = blob.Digest?.CreateHash();
        using var diffHash = diffId.CreateHash();
        using var peekable = new PeekableStream(blob.Open());
        var stored = new HashingStream(peekable, blobHash);
        RamdiskCompression compression = Check(peekable.Compression, blob);

        Stream? decompressor = null;
        FileStream? temporary = null;
        try
        {
            Stream tar = stored;
            if (compression != RamdiskCompression.None)
            {
                decompressor = compression == RamdiskCompression.Gzip
                    ? new GZipStream(stored, CompressionMode.Decompress)
                    : new ZstdDecompressionStream(stored, 1 << 17, true, false);
                tar = decompressor;
            }

            var uncompressed = new HashingStream(tar, compression == RamdiskCompression.None && blob.Digest == diffId ? null : diffHash);
            FileRange range;
            Stream parsed = uncompressed;
            string? temporaryPath = null;
            if (compression != RamdiskCompression.None || blob.Location is null)
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
            Interlocked.Add(ref _bytesIndexed, uncompressed.BytesRead);

            if (blob.Digest is { } digest)
                digest.VerifyHash(blobHash!.GetHashAndReset(), blob.What);
            if (blob.Size is { } size && size != stored.BytesRead)
                throw new EnclaveBuildException(BuildError.DigestMismatch, $"{blob.What}: the blob is {stored.BytesRead} bytes, its descriptor says {size}");
            byte[] uncompressedHash = compression == RamdiskCompression.None && blob.Digest == diffId
                ? Convert.FromHexString(diffId.Hex) // the same bytes, already verified as the blob digest
                : diffHash.GetHashAndReset();
            diffId.VerifyHash(uncompressedHash, $"{blob.What} (uncompressed, against the config's diff_id)");

            range = temporaryPath is not null
                ? new FileRange(temporaryPath, 0, uncompressed.BytesRead)
                : blob.Location! with { Length = uncompressed.BytesRead };
            lock (_tars)
                _tars[index] = range;
            return new MaterializedLayer(index, blob.What, range, entries);
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
        FileRange tar = _tars[layer] ?? throw new InvalidOperationException($"Layer {layer} has not been read.");
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

    // The compression the bytes show must be the one the media type claims.
    private static RamdiskCompression Check(RamdiskCompression found, LayerBlob blob)
    {
        RamdiskCompression? claimed = blob.MediaType switch
        {
            null => null,
            _ when blob.MediaType.EndsWith("gzip", StringComparison.Ordinal) => RamdiskCompression.Gzip,
            _ when blob.MediaType.EndsWith("zstd", StringComparison.Ordinal) => RamdiskCompression.Zstd,
            _ => RamdiskCompression.None,
        };
        if (claimed is not null && claimed != found)
            throw new EnclaveBuildException(BuildError.InvalidLayer, $"{blob.What}: the media type '{blob.MediaType}' says {claimed}, the bytes are {found}");
        return found;
    }
}

using EifBuilder.Tar;

namespace EifBuilder.Images;

/// <summary>Named files of an image on disk: a directory (OCI layout) or a tar archive (docker save, OCI archive).</summary>
internal interface IFileSet
{
    string What { get; }

    bool Exists(string name);

    Stream Open(string name);

    FileRange Range(string name);

    IEnumerable<string> Names { get; }
}

internal static class FileSetExtensions
{
    /// <summary>Reads a small file (manifest, index, config) whole, refusing one larger than <paramref name="max"/>.</summary>
    internal static byte[] ReadSmall(this IFileSet files, string name, int max)
    {
        if (!files.Exists(name))
            throw new EnclaveBuildException(BuildError.InvalidImage, $"{files.What}: '{name}' is missing");
        FileRange range = files.Range(name);
        if (range.Length > max)
            throw new EnclaveBuildException(BuildError.InvalidImage, $"{files.What}: '{name}' is {range.Length} bytes, more than the {max} read");
        using Stream stream = files.Open(name);
        byte[] bytes = new byte[range.Length];
        stream.ReadExactly(bytes);
        return bytes;
    }
}

/// <summary>Files of a directory (an OCI image layout).</summary>
internal sealed class DirectoryFileSet(string root) : IFileSet
{
    public string What => root;

    public IEnumerable<string> Names => Directory.EnumerateFiles(root, "*", SearchOption.AllDirectories).Select(f => Path.GetRelativePath(root, f));

    public bool Exists(string name) => File.Exists(PathOf(name));

    public Stream Open(string name) =>
        new FileStream(PathOf(name), FileMode.Open, FileAccess.Read, FileShare.Read, bufferSize: 1, FileOptions.SequentialScan);

    public FileRange Range(string name) => new(PathOf(name), 0, new FileInfo(PathOf(name)).Length);

    // Names come from manifests (digests), never from the user; still, nothing may leave the layout directory.
    private string PathOf(string name)
    {
        string full = Path.GetFullPath(Path.Combine(root, name));
        if (!full.StartsWith(Path.GetFullPath(root) + Path.DirectorySeparatorChar, StringComparison.Ordinal))
            throw new EnclaveBuildException(BuildError.UnsafePath, $"{root}: '{name}' points outside the layout");
        return full;
    }
}

/// <summary>Files of a tar archive, indexed once by header (data skipped by seeking) and read in place.</summary>
internal sealed class TarFileSet : IFileSet
{
    private readonly Dictionary<string, (long Offset, long Length)> _files = new(StringComparer.Ordinal);

    internal TarFileSet(string archive)
    {
        What = archive;
        using var stream = new FileStream(archive, FileMode.Open, FileAccess.Read, FileShare.Read, bufferSize: 4096);
        var reader = new TarStreamReader(stream, archive, seekToSkip: true);
        try
        {
            var links = new List<(string Name, string Target, bool Symbolic)>();
            while (reader.Next() is { } entry)
            {
                if (entry.Kind == TarEntryKind.File)
                    _files[Normalize(entry.Name)] = (entry.DataOffset, entry.Size);
                else if (entry.Kind is TarEntryKind.Symlink or TarEntryKind.HardLink && entry.LinkName is { Length: > 0 } target)
                    links.Add((Normalize(entry.Name), target, entry.Kind == TarEntryKind.Symlink));
            }

            // docker save (20.10) stores a layer equal to an earlier one once and links the other layer.tar to it
            // ("ID/layer.tar -> ../OTHER/layer.tar"): a link to a file of the archive reads as that file. Links are
            // resolved inside the archive only, a few hops at most.
            for (int pass = 0; pass < 8 && links.Count > 0; pass++)
            {
                links.RemoveAll(link =>
                {
                    string resolved = link.Symbolic ? Resolve(link.Name, link.Target) : Normalize(link.Target);
                    if (!_files.TryGetValue(resolved, out var file))
                        return false;
                    _files[link.Name] = file;
                    return true;
                });
            }
        }
        catch (EnclaveBuildException ex) when (ex.Error == BuildError.InvalidLayer)
        {
            throw new EnclaveBuildException(BuildError.InvalidImage, $"not a tar archive: {ex.Message}", ex);
        }
    }

    public string What { get; }

    public IEnumerable<string> Names => _files.Keys;

    public bool Exists(string name) => _files.ContainsKey(Normalize(name));

    public Stream Open(string name)
    {
        FileRange range = Range(name);
        var file = new FileStream(What, FileMode.Open, FileAccess.Read, FileShare.Read, bufferSize: 1, FileOptions.SequentialScan);
        return new RangeStream(file, range.Offset, range.Length, ownsInner: true);
    }

    public FileRange Range(string name) =>
        _files.TryGetValue(Normalize(name), out var f)
            ? new FileRange(What, f.Offset, f.Length)
            : throw new EnclaveBuildException(BuildError.InvalidImage, $"{What}: '{name}' is not in the archive");

    // A symlink's target, relative to the link's folder, as an archive name; ".." past the root stays at the root.
    private static string Resolve(string linkName, string target)
    {
        var parts = new List<string>();
        if (!target.StartsWith('/'))
            parts.AddRange(linkName.Split('/')[..^1]);
        foreach (string part in target.Split('/'))
        {
            if (part is "" or ".")
                continue;
            if (part == "..")
            {
                if (parts.Count > 0)
                    parts.RemoveAt(parts.Count - 1);
                continue;
            }

            parts.Add(part);
        }

        return string.Join('/', parts);
    }

    private static string Normalize(string name)
    {
        while (name.StartsWith("./", StringComparison.Ordinal))
            name = name[2..];
        return name.TrimStart('/');
    }
}

/// <summary>A read-only window of a seekable stream; repositions before each read, so windows may share a stream.</summary>
public sealed class RangeStream(Stream inner, long offset, long length, bool ownsInner) : Stream
{
    private long _position;

    /// <inheritdoc/>
    public override bool CanRead => true;

    /// <inheritdoc/>
    public override bool CanSeek => true;

    /// <inheritdoc/>
    public override bool CanWrite => false;

    /// <inheritdoc/>
    public override long Length => length;

    /// <inheritdoc/>
    public override long Position
    {
        get => _position;
        set => _position = value >= 0 ? value : throw new ArgumentOutOfRangeException(nameof(value));
    }

    /// <inheritdoc/>
    public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

    /// <inheritdoc/>
    public override int Read(Span<byte> buffer)
    {
        long remaining = length - _position;
        if (remaining <= 0 || buffer.IsEmpty)
            return 0;
        if (buffer.Length > remaining)
            buffer = buffer[..(int)remaining];
        inner.Position = offset + _position;
        int read = inner.Read(buffer);
        _position += read;
        return read;
    }

    /// <inheritdoc/>
    public override long Seek(long offset, SeekOrigin origin)
    {
        Position = origin switch
        {
            SeekOrigin.Begin => offset,
            SeekOrigin.Current => _position + offset,
            _ => length + offset,
        };
        return _position;
    }

    /// <inheritdoc/>
    public override void Flush()
    {
    }

    /// <inheritdoc/>
    public override void SetLength(long value) => throw new NotSupportedException();

    /// <inheritdoc/>
    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();

    /// <inheritdoc/>
    protected override void Dispose(bool disposing)
    {
        if (disposing && ownsInner)
            inner.Dispose();
        base.Dispose(disposing);
    }
}

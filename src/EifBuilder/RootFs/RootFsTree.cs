using EifBuilder.Tar;

namespace EifBuilder.RootFs;

/// <summary>The file an entry names: shared by every name of a hard-linked file.</summary>
public sealed class RootFsInode
{
    internal RootFsInode(TarEntryKind kind, int mode, long uid, long gid, long modTime)
    {
        Kind = kind;
        Mode = mode;
        Uid = uid;
        Gid = gid;
        ModTime = modTime;
    }

    /// <summary>File, Directory, Symlink, CharDevice, BlockDevice or Fifo (never HardLink).</summary>
    public TarEntryKind Kind { get; }

    /// <summary>Permission and special bits.</summary>
    public int Mode { get; internal set; }

    /// <summary>Owner.</summary>
    public long Uid { get; internal set; }

    /// <summary>Group.</summary>
    public long Gid { get; internal set; }

    /// <summary>Unix seconds.</summary>
    public long ModTime { get; internal set; }

    /// <summary>Data length (files).</summary>
    public long Size { get; internal init; }

    /// <summary>The layer whose tar holds the data (files).</summary>
    public int Layer { get; internal init; } = -1;

    /// <summary>Offset of the data in that layer's uncompressed tar (files).</summary>
    public long DataOffset { get; internal init; }

    /// <summary>The data of a file the builder added itself (not from a layer), else null.</summary>
    public byte[]? InlineData { get; internal init; }

    /// <summary>Symlink target, raw bytes as Latin-1.</summary>
    public string LinkTarget { get; internal init; } = string.Empty;

    /// <summary>Device numbers.</summary>
    public long DevMajor { get; internal init; }

    /// <summary>Device numbers.</summary>
    public long DevMinor { get; internal init; }

    /// <summary>True for directories the builder created because an entry needed a parent no layer provided.</summary>
    public bool Implicit { get; internal set; }
}

/// <summary>A name in the merged tree.</summary>
public sealed class RootFsNode
{
    internal RootFsNode(string name, RootFsInode inode)
    {
        Name = name;
        Inode = inode;
        if (inode.Kind == TarEntryKind.Directory)
            Children = new SortedDictionary<string, RootFsNode>(StringComparer.Ordinal);
    }

    /// <summary>The last path component (raw bytes as Latin-1, so ordinal order is byte order).</summary>
    public string Name { get; }

    /// <summary>The file this name refers to.</summary>
    public RootFsInode Inode { get; internal set; }

    /// <summary>Children by name, in byte order (directories only).</summary>
    public SortedDictionary<string, RootFsNode>? Children { get; private set; }

    internal void BecomeDirectory(RootFsInode inode)
    {
        Inode = inode;
        Children ??= new SortedDictionary<string, RootFsNode>(StringComparer.Ordinal);
    }
}

/// <summary>
/// The image's root filesystem merged from its layers, metadata only (file data stays in the layers and is read
/// by offset when the ramdisk is written). Layers apply bottom to top with the OCI image-spec rules (layer.md):
/// whiteouts (<c>.wh.NAME</c>) and opaque directories (<c>.wh..wh..opq</c>) hide what lower layers put there,
/// a later entry replaces an earlier one (a directory over a directory merges), hard links share their target's
/// inode. Hostile entries cannot escape the root: names are cleaned, <c>..</c> past the root is an error, an
/// absolute name is taken relative to the root, and a write through a symlinked parent follows the link inside
/// the root (as a careful unpacker such as Docker's does with securejoin), never outside it.
/// </summary>
public sealed class RootFsTree
{
    private const string WhiteoutPrefix = ".wh.";
    private const string OpaqueMarker = ".wh..wh..opq";

    // Linux's limit on symlinks followed while resolving one path (MAXSYMLINKS, include/linux/namei.h).
    private const int MaxSymlinks = 40;

    private readonly Action<string> _warn;

    /// <summary>Creates an empty tree.</summary>
    /// <param name="warn">Receives one line for each entry dropped or reinterpreted.</param>
    public RootFsTree(Action<string> warn)
    {
        _warn = warn;
        Root = new RootFsNode(string.Empty, new RootFsInode(TarEntryKind.Directory, 0x1ED, 0, 0, 0) { Implicit = true });
    }

    /// <summary>The root directory.</summary>
    public RootFsNode Root { get; }

    /// <summary>Applies one layer's entries (in their tar order) over the tree.</summary>
    /// <param name="layer">The layer's index, recorded with each file's data.</param>
    /// <param name="entries">The layer's entries.</param>
    /// <param name="what">The layer's name for messages.</param>
    /// <exception cref="EnclaveBuildException"><see cref="BuildError.UnsafePath"/> or <see cref="BuildError.InvalidLayer"/>.</exception>
    public void ApplyLayer(int layer, IReadOnlyList<TarEntry> entries, string what)
    {
        // Whiteouts and opaque markers hide what LOWER layers put there, never this layer's own entries: apply them
        // all first, then the entries (OCI image-spec layer.md, "Whiteouts"). Two passes over the entries rather than
        // a list of the regular ones: names are cleaned twice, but nothing per entry is held between the passes.
        foreach (var entry in entries)
        {
            string[] path = Clean(entry.Name, what);
            if (path.Length == 0)
                continue; // "." or "/": the root's own metadata is not kept; the ramdisk's rootfs/ is the builder's
            string name = path[^1];
            if (name == OpaqueMarker)
            {
                if (Lookup(path[..^1], what) is { Children: { } children })
                    children.Clear();
                continue;
            }

            if (name.StartsWith(WhiteoutPrefix, StringComparison.Ordinal))
            {
                string hidden = name[WhiteoutPrefix.Length..];
                if (hidden.StartsWith(WhiteoutPrefix, StringComparison.Ordinal) || hidden.Length == 0)
                {
                    _warn($"{what}: '{Show(entry.Name)}' is an AUFS metadata entry; ignored");
                    continue;
                }

                if (Lookup(path[..^1], what) is { Children: { } siblings })
                    siblings.Remove(hidden);
            }
        }

        foreach (var entry in entries)
        {
            string[] path = Clean(entry.Name, what, warn: false);
            if (path.Length > 0 && !path[^1].StartsWith(WhiteoutPrefix, StringComparison.Ordinal))
                Add(layer, entry, path, what);
        }
    }

    /// <summary>Ensures a directory exists at <paramref name="name"/> under the root (e.g. a mount point).</summary>
    /// <returns>False when something that is not a directory is there.</returns>
    public bool EnsureDirectory(string name, long modTime)
    {
        if (Root.Children!.TryGetValue(name, out var existing))
            return existing.Inode.Kind == TarEntryKind.Directory;
        Root.Children[name] = new RootFsNode(name, new RootFsInode(TarEntryKind.Directory, 0x1ED, 0, 0, modTime) { Implicit = true });
        return true;
    }

    /// <summary>Adds a regular file the builder provides (e.g. /etc/hosts) when no entry has that path.</summary>
    /// <returns>False when the path exists, or a parent is not a directory.</returns>
    public bool AddFileIfMissing(string[] path, int mode, long modTime, byte[] data)
    {
        RootFsNode? parent;
        try
        {
            parent = Resolve(path[..^1], create: true, "the builder");
        }
        catch (EnclaveBuildException)
        {
            return false;
        }

        if (parent?.Children is null || parent.Children.ContainsKey(path[^1]))
            return false;
        parent.Children[path[^1]] = new RootFsNode(path[^1], new RootFsInode(TarEntryKind.File, mode, 0, 0, modTime) { Size = data.Length, InlineData = data });
        return true;
    }

    /// <summary>The tree depth-first, each directory's children in byte order, parents before children; paths relative to the root.</summary>
    public IEnumerable<(string Path, RootFsNode Node)> Walk()
    {
        var stack = new Stack<(string Prefix, IEnumerator<RootFsNode> Children)>();
        stack.Push((string.Empty, Root.Children!.Values.GetEnumerator()));
        while (stack.Count > 0)
        {
            var (prefix, children) = stack.Peek();
            if (!children.MoveNext())
            {
                stack.Pop();
                continue;
            }

            RootFsNode node = children.Current;
            string path = prefix.Length == 0 ? node.Name : prefix + "/" + node.Name;
            yield return (path, node);
            if (node.Children is { Count: > 0 })
                stack.Push((path, node.Children.Values.GetEnumerator()));
        }
    }

    private void Add(int layer, TarEntry entry, string[] path, string what)
    {
        RootFsNode parent = Resolve(path[..^1], create: true, what)
            ?? throw Invalid(what, entry, "its parent cannot be resolved");
        string name = path[^1];
        parent.Children!.TryGetValue(name, out RootFsNode? existing);

        switch (entry.Kind)
        {
            case TarEntryKind.Directory:
                var directory = new RootFsInode(TarEntryKind.Directory, entry.Mode, entry.Uid, entry.Gid, entry.ModTime);
                if (existing is not null && existing.Inode.Kind == TarEntryKind.Directory)
                    existing.BecomeDirectory(directory); // a directory over a directory merges, with the upper metadata
                else
                    parent.Children[name] = new RootFsNode(name, directory);
                return;

            case TarEntryKind.HardLink:
                string[] targetPath = Clean(entry.LinkName, what);
                RootFsNode? targetParent = targetPath.Length == 0 ? null : Resolve(targetPath[..^1], create: false, what);
                if (targetParent?.Children is null || !targetParent.Children.TryGetValue(targetPath[^1], out RootFsNode? target))
                    throw Invalid(what, entry, $"is a hard link to '{Show(entry.LinkName)}', which does not exist");
                if (target.Inode.Kind == TarEntryKind.Directory)
                    throw Invalid(what, entry, $"is a hard link to the directory '{Show(entry.LinkName)}'");
                if (!ReferenceEquals(existing?.Inode, target.Inode))
                    parent.Children[name] = new RootFsNode(name, target.Inode);
                return;

            default:
                parent.Children[name] = new RootFsNode(name, new RootFsInode(entry.Kind, entry.Mode, entry.Uid, entry.Gid, entry.ModTime)
                {
                    Size = entry.Size,
                    Layer = entry.Kind == TarEntryKind.File ? layer : -1,
                    DataOffset = entry.DataOffset,
                    LinkTarget = entry.Kind == TarEntryKind.Symlink ? entry.LinkName : string.Empty,
                    DevMajor = entry.DevMajor,
                    DevMinor = entry.DevMinor,
                });
                return;
        }
    }

    // Walks from the root through `path`, following symlinks inside the root, creating missing directories when asked.
    private RootFsNode? Resolve(string[] path, bool create, string what)
    {
        int followed = 0;
        return Resolve(path, create, what, ref followed, lenient: false);
    }

    // The directory a whiteout or opaque marker refers to in the LOWER layers, or null when there is none: a path
    // that lower layers have as a file (this layer turns it into a directory) has nothing to hide.
    private RootFsNode? Lookup(string[] path, string what)
    {
        int followed = 0;
        return Resolve(path, create: false, what, ref followed, lenient: true);
    }

    private RootFsNode? Resolve(string[] path, bool create, string what, ref int followed, bool lenient)
    {
        RootFsNode node = Root;
        for (int i = 0; i < path.Length; i++)
        {
            if (!node.Children!.TryGetValue(path[i], out RootFsNode? child))
            {
                if (!create)
                    return null;

                // A parent no layer provided: root-owned 0755 at time 0, deterministic (Docker would use "now").
                child = new RootFsNode(path[i], new RootFsInode(TarEntryKind.Directory, 0x1ED, 0, 0, 0) { Implicit = true });
                node.Children[path[i]] = child;
            }

            if (child.Inode.Kind == TarEntryKind.Symlink)
            {
                if (++followed > MaxSymlinks)
                    throw new EnclaveBuildException(BuildError.UnsafePath, $"{what}: more than {MaxSymlinks} symlinks followed resolving '{Show(string.Join('/', path))}' (a loop)");
                string target = child.Inode.LinkTarget;
                var combined = new List<string>(target.StartsWith('/') ? [] : path[..i]);
                combined.AddRange(target.Split('/'));
                combined.AddRange(path[(i + 1)..]);
                return Resolve(CleanClamped(combined), create, what, ref followed, lenient);
            }

            if (child.Inode.Kind != TarEntryKind.Directory)
            {
                if (lenient)
                    return null;
                throw new EnclaveBuildException(BuildError.InvalidLayer,
                    $"{what}: '{Show(string.Join('/', path))}' needs '{Show(string.Join('/', path[..(i + 1)]))}' to be a directory, but it is a {child.Inode.Kind}");
            }

            node = child;
        }

        return node;
    }

    // A symlink target's components resolved lexically, ".." stopping at the root (securejoin semantics).
    private static string[] CleanClamped(IEnumerable<string> parts)
    {
        var stack = new List<string>();
        foreach (string part in parts)
        {
            if (part.Length == 0 || part == ".")
                continue;
            if (part == "..")
            {
                if (stack.Count > 0)
                    stack.RemoveAt(stack.Count - 1);
                continue;
            }

            stack.Add(part);
        }

        return [.. stack];
    }

    // An entry name as components: "./" and empty parts dropped, ".." applied; climbing past the root is an error,
    // a leading '/' is taken relative to the root (as Docker's unpacker joins it under the destination).
    private string[] Clean(string name, string what, bool warn = true)
    {
        if (warn && name.StartsWith('/'))
            _warn($"{what}: '{Show(name)}' is an absolute name; taken relative to the root");
        var stack = new List<string>();
        foreach (string part in name.Split('/'))
        {
            if (part.Length == 0 || part == ".")
                continue;
            if (part == "..")
            {
                if (stack.Count == 0)
                    throw new EnclaveBuildException(BuildError.UnsafePath, $"{what}: entry '{Show(name)}' climbs out of the root filesystem ('..' past '/')");
                stack.RemoveAt(stack.Count - 1);
                continue;
            }

            stack.Add(part);
        }

        return [.. stack];
    }

    private static EnclaveBuildException Invalid(string what, TarEntry entry, string detail) =>
        new(BuildError.InvalidLayer, $"{what}: entry '{Show(entry.Name)}' {detail}");

    internal static string Show(string name) => TarStreamReader.Printable(name);
}

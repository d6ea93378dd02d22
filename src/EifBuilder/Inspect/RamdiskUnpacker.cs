using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text;
using EifBuilder.Cpio;
using Microsoft.Win32.SafeHandles;

namespace EifBuilder.Inspect;

/// <summary>How <see cref="RamdiskUnpacker"/> treats what only root can do.</summary>
public sealed record RamdiskUnpackOptions
{
    /// <summary>Whether this process runs as root (euid 0).</summary>
    public static bool IsRoot => Environment.IsPrivilegedProcess;

    /// <summary>
    /// Create device nodes and FIFOs (mknod). Default: when running as root. Honoured only as root; otherwise such
    /// entries are <see cref="UnpackAction.Recorded"/> in the manifest and not created.
    /// </summary>
    public bool CreateDevices { get; init; } = IsRoot;

    /// <summary>
    /// Give entries their owner (lchown) and keep set-user-ID and set-group-ID bits. Default and honoured: as root.
    /// Without it files belong to the user running the unpack, and those two bits are cleared (a set-uid file owned by
    /// the wrong user is a hazard, not a copy).
    /// </summary>
    public bool PreserveOwnership { get; init; } = IsRoot;
}

/// <summary>What the unpacker did with one archive entry.</summary>
public enum UnpackAction
{
    /// <summary>Made on disk, and still there.</summary>
    Created,

    /// <summary>A folder (or the same hard-linked file) already made by an earlier entry of the same name: it now has this entry's metadata (and data).</summary>
    Updated,

    /// <summary>Made on disk, then replaced by a later entry of the same name (last one wins, as in the kernel).</summary>
    Replaced,

    /// <summary>A device node, FIFO or socket listed but not created.</summary>
    Recorded,

    /// <summary>Not created, for the reason given (the archive's root, a missing parent folder, a type or size the kernel ignores).</summary>
    Skipped,
}

/// <summary>One archive entry and what was done with it.</summary>
/// <param name="Index">Its place in the archive, from 0 (trailers not counted).</param>
/// <param name="File">The entry as read (the SHA-256 of a regular file's data included).</param>
/// <param name="Offset">Where its header starts in the (decompressed) archive.</param>
/// <param name="Path">Where it landed, relative to the unpacked root (Latin-1-held bytes, '/'-separated); null for the root itself.</param>
/// <param name="Action">What was done.</param>
/// <param name="Reason">Why, for anything but a plain <see cref="UnpackAction.Created"/>.</param>
/// <param name="HardLinkTo">For a hard link: the path (relative to the root) of the name it was linked to.</param>
public sealed record UnpackedEntry(int Index, RamdiskFile File, long Offset, string? Path, UnpackAction Action, string? Reason, string? HardLinkTo);

/// <summary>
/// An unpacked ramdisk waiting in its temporary folder (<c>.NAME.tmp-XXXXXXXX</c> next to the destination).
/// <see cref="Commit"/> renames it into place (never over anything); disposing an uncommitted unpack removes the
/// temporary folder, so a failure leaves nothing half-written.
/// </summary>
public sealed class RamdiskUnpack : IDisposable
{
    private readonly RamdiskUnpacker.Unpacking _state;
    private bool _committed;
    private bool _disposed;

    internal RamdiskUnpack(RamdiskUnpacker.Unpacking state, string destination)
    {
        _state = state;
        Destination = destination;
    }

    /// <summary>The folder the tree is renamed to by <see cref="Commit"/>.</summary>
    public string Destination { get; }

    /// <summary>The temporary folder holding the tree until then.</summary>
    public string TemporaryPath => _state.Root;

    /// <summary>Every entry of the archive, in order, with what was done.</summary>
    public IReadOnlyList<UnpackedEntry> Entries => _state.Entries;

    /// <summary>Whether device nodes and FIFOs were created (the option, as root).</summary>
    public bool CreatedDevices => _state.CreateDevices;

    /// <summary>Whether owners and set-uid/set-gid bits were kept (the option, as root).</summary>
    public bool PreservedOwnership => _state.PreserveOwnership;

    /// <summary>Renames the temporary folder to <see cref="Destination"/>, which must not exist.</summary>
    /// <exception cref="IOException">The destination exists, or the rename failed.</exception>
    public void Commit()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_committed)
            return;
        Posix.RenameNoReplace(_state.Root, Destination);
        _committed = true;
    }

    /// <summary>Undoes <see cref="Commit"/> (when a later output of the same extraction failed): back to the temporary name, to be removed by <see cref="Dispose"/>.</summary>
    /// <exception cref="IOException">The rename failed.</exception>
    public void Revert()
    {
        if (!_committed)
            return;
        Posix.RenameNoReplace(Destination, _state.Root);
        _committed = false;
    }

    /// <summary>Removes the temporary folder unless the unpack was committed.</summary>
    public void Dispose()
    {
        if (_disposed)
            return;
        _disposed = true;
        if (!_committed)
            _state.Remove();
    }
}

/// <summary>
/// Unpacks a newc ramdisk into a folder as a careful unpacker would, so that a hostile archive cannot write outside
/// it. The model is the kernel's own unpacker (init/initramfs.c: <c>do_name</c>, <c>do_symlink</c>,
/// <c>maybe_link</c>, <c>clean_path</c>, <c>dir_utime</c>), minus everything that could follow a symlink:
/// <list type="bullet">
/// <item>Names are taken relative to the folder, as the kernel takes them relative to its root: leading <c>/</c>,
/// empty and <c>.</c> components are dropped; a name with a <c>..</c> component is refused
/// (<see cref="BuildError.UnsafePath"/>); the root itself (<c>.</c>) is skipped.</item>
/// <item>Every parent of an entry must be a folder made by this unpack (the unpacker's own record, checked again with
/// lstat semantics on disk). A parent that is a symlink is refused (<see cref="BuildError.UnsafePath"/>); a parent
/// that is missing or not a folder makes the entry skipped, as the kernel's open or mkdir would fail.</item>
/// <item>Leaves are made with calls that never follow a symlink (mkdir, open O_CREAT|O_EXCL, symlink, link, mknod);
/// symlink targets are stored verbatim, never resolved.</item>
/// <item>A later entry of an existing name: a folder over a folder takes the new metadata; anything over a non-folder
/// unlinks it first (unlink never follows) and makes the new one, last one wins as in the kernel; anything but a
/// folder over a folder is refused (<see cref="BuildError.UnsafePath"/>: removing it would drop what was unpacked
/// into it, and a symlink in its place would redirect the entries after it).</item>
/// <item>Hard links (c_nlink ≥ 2 and the same c_ino, c_dev and file type, reset at each trailer as the kernel's
/// link hash is): the first name is made, later names are linked to it, and a later name carrying the data (newc puts
/// it on the last) writes it into the shared file.</item>
/// <item>Device nodes and FIFOs are made only as root with <see cref="RamdiskUnpackOptions.CreateDevices"/>;
/// sockets never; both are recorded in the entries instead.</item>
/// <item>Folders are made 0700 and files 0600 while unpacking; owners, modes and mtimes are set at the end, files
/// first, then folders deepest first (as the kernel's <c>dir_utime</c> does), symlinks' times without following.</item>
/// </list>
/// Paths are kept within PATH_MAX (an entry that would not fit is refused, <see cref="BuildError.TooLarge"/>) so that
/// every file can be reached by ordinary tools. The temporary folder is mode 0700: no other user can enter it to swap
/// a folder for a symlink between the check and the use.
/// </summary>
public static class RamdiskUnpacker
{
    /// <summary>PATH_MAX with its NUL (linux/limits.h).</summary>
    public const int PathMax = 4096;

    /// <summary>NAME_MAX: the longest name component Linux file systems hold (linux/limits.h).</summary>
    public const int NameMax = 255;

    private const int BufferSize = 64 << 10;

    /// <summary>
    /// Unpacks the archive <paramref name="cpio"/> into a temporary folder next to <paramref name="destination"/>
    /// and returns it uncommitted. <paramref name="source"/> names the archive in messages.
    /// </summary>
    /// <exception cref="EnclaveBuildException">The archive is malformed (<see cref="BuildError.InvalidRamdisk"/>), has an
    /// unsafe entry (<see cref="BuildError.UnsafePath"/>) or a path too long for the destination (<see cref="BuildError.TooLarge"/>);
    /// the temporary folder is removed.</exception>
    /// <exception cref="IOException">The destination exists, its folder does not, or writing failed; the temporary folder is removed.</exception>
    public static RamdiskUnpack Stage(CpioReader cpio, string source, string destination, RamdiskUnpackOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(cpio);
        options ??= new RamdiskUnpackOptions();
        string full = Path.TrimEndingDirectorySeparator(Path.GetFullPath(destination));
        string parent = Path.GetDirectoryName(full) ?? throw new IOException($"{destination}: has no parent folder");
        if (!Directory.Exists(parent))
            throw new DirectoryNotFoundException($"{destination}: folder '{parent}' does not exist");
        if (Posix.Lstat(Posix.PathBytes(full), full) is not null)
            throw new IOException($"{full} already exists: nothing is ever replaced");

        string root = Path.Combine(parent, $".{Path.GetFileName(full)}.tmp-{Convert.ToHexString(RandomNumberGenerator.GetBytes(4)).ToLowerInvariant()}");
        if (Posix.Mkdir(Posix.PathBytes(root), 0x1C0) != 0) // 0700: see the class comment
            throw Posix.Failure("mkdir", root, Marshal.GetLastPInvokeError());
        var state = new Unpacking(root, source, options);
        try
        {
            state.Run(cpio);
        }
        catch
        {
            state.Remove();
            throw;
        }

        return new RamdiskUnpack(state, full);
    }

    /// <summary>Unpacks the archive into <paramref name="destination"/> (which must not exist) through a temporary folder renamed at the end.</summary>
    /// <exception cref="EnclaveBuildException">As <see cref="Stage"/>.</exception>
    /// <exception cref="IOException">As <see cref="Stage"/>, or the destination appeared meanwhile.</exception>
    public static IReadOnlyList<UnpackedEntry> Unpack(CpioReader cpio, string source, string destination, RamdiskUnpackOptions? options = null)
    {
        using RamdiskUnpack unpack = Stage(cpio, source, destination, options);
        unpack.Commit();
        return unpack.Entries;
    }

    /// <summary>The state of one unpack: what this unpack made, by relative path (the authority on what is safe to use).</summary>
    internal sealed class Unpacking(string root, string source, RamdiskUnpackOptions options)
    {
        private const int SocketType = 0xC000; // S_IFSOCK, sys/stat.h: a type newc can carry that CpioKind does not name

        private readonly Dictionary<string, Node> _nodes = new(StringComparer.Ordinal);
        private readonly Dictionary<(uint Inode, uint DevMajor, uint DevMinor, int Type), Group> _groups = [];
        private readonly List<UnpackedEntry> _entries = [];
        private readonly byte[] _rootBytes = Encoding.UTF8.GetBytes(root);
        private readonly byte[] _buffer = new byte[BufferSize];
        private long _offset; // the current entry's header offset

        internal string Root { get; } = root;

        internal IReadOnlyList<UnpackedEntry> Entries => _entries;

        internal bool CreateDevices { get; } = options.CreateDevices && RamdiskUnpackOptions.IsRoot;

        internal bool PreserveOwnership { get; } = options.PreserveOwnership && RamdiskUnpackOptions.IsRoot;

        internal void Run(CpioReader cpio)
        {
            int archives = cpio.ArchivesRead;
            while (cpio.Next() is { } record)
            {
                // The kernel forgets its hard links at each trailer (do_name: free_hash), so links never span archives.
                if (cpio.ArchivesRead != archives)
                {
                    _groups.Clear();
                    archives = cpio.ArchivesRead;
                }

                Process(cpio, record);
            }

            SetMetadata();
        }

        // Removes everything this unpack made, deepest first, then the temporary folder. Never throws: it runs while
        // another failure is being reported.
        internal void Remove()
        {
            try
            {
                foreach (var (path, node) in _nodes)
                {
                    if (node.Kind == CpioKind.Directory)
                        _ = Posix.Chmod(Host(path), 0x1C0); // a 0555 folder must take its children's removal
                }

                foreach (var (path, node) in _nodes.OrderByDescending(n => n.Value.Depth))
                    _ = node.Kind == CpioKind.Directory ? Posix.Rmdir(Host(path)) : Posix.Unlink(Host(path));
                _ = Posix.Rmdir(_rootBytes);
                if (Directory.Exists(Root))
                    Directory.Delete(Root, recursive: true); // only if something unrecorded got in
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                // The original failure is what matters; the leftover is named .NAME.tmp-XXXXXXXX so it is recognisable.
            }
        }

        private void Process(CpioReader cpio, CpioRecord record)
        {
            int index = _entries.Count;
            _offset = record.Offset;
            string where = $"{source}: entry {index} '{RamdiskFile.Display(record.Name)}' (header at offset {record.Offset})";
            CpioKind? kind = record.Kind;

            // A symlink's target is its data, read now (data comes in archive order); the kernel skips a target over
            // PATH_MAX (do_header), and symlink(2) refuses an empty one or one of PATH_MAX bytes.
            string? target = null;
            string? targetProblem = null;
            if (kind == CpioKind.Symlink)
            {
                if (record.Size >= PathMax)
                    targetProblem = $"its link target of {record.Size} bytes is longer than a symlink can hold ({PathMax - 1})";
                else if ((target = cpio.ReadText(PathMax)).Length == 0)
                    targetProblem = "its link target is empty, which symlink(2) refuses";
                else if (target.Contains('\0', StringComparison.Ordinal))
                    targetProblem = "its link target holds a NUL byte, which symlink(2) cannot store";
            }

            var file = new RamdiskFile(record.Name, kind, record.RawMode, record.Uid, record.Gid, record.Size, record.ModTime, target, null,
                record.Inode, record.LinkCount, record.RdevMajor, record.RdevMinor);
            string[] parts = Components(record.Name, where);
            string path = string.Join('/', parts);

            if (parts.Length == 0)
            {
                Skip(cpio, index, file, null, "the archive's root ('.'): the output folder itself");
                return;
            }

            if (parts.FirstOrDefault(p => Encoding.Latin1.GetByteCount(p) > NameMax) is { } longPart)
            {
                Skip(cpio, index, file, path, $"a name component of {longPart.Length} bytes is longer than NAME_MAX ({NameMax}): no Linux file system holds it");
                return;
            }

            long hostLength = _rootBytes.Length + 1L + Encoding.Latin1.GetByteCount(path);
            if (hostLength + 1 > PathMax)
            {
                throw new EnclaveBuildException(BuildError.TooLarge,
                    $"{where}: its path in the output folder would be {hostLength} bytes ('{Root}' is {_rootBytes.Length}), more than PATH_MAX ({PathMax} with its NUL) allows; use a shorter output folder");
            }

            if (kind is null)
            {
                int type = (int)(record.RawMode & 0xF000);
                if (type == SocketType)
                    Add(index, file, path, UnpackAction.Recorded, "a socket: not created (no process listens on it)");
                else
                    Skip(cpio, index, file, path, $"file type bits 0{Convert.ToString(type, 8)} of c_mode 0{Convert.ToString(record.RawMode, 8)} are no known type: the kernel's initramfs ignores the entry");
                return;
            }

            // do_header reads the name of a non-regular entry only when it has no data: the kernel ignores the entry.
            if (kind is not (CpioKind.File or CpioKind.Symlink) && record.Size > 0)
            {
                Skip(cpio, index, file, path, $"a {EifRamdisks.TypeName(kind)} with {record.Size} bytes of data: the kernel's initramfs ignores such an entry");
                return;
            }

            if (targetProblem is not null)
            {
                Skip(cpio, index, file, path, targetProblem);
                return;
            }

            if (CheckParents(parts, where) is { } parentProblem)
            {
                Skip(cpio, index, file, path, parentProblem);
                return;
            }

            if ((kind is CpioKind.CharDevice or CpioKind.BlockDevice or CpioKind.Fifo) && !CreateDevices)
            {
                Add(index, file, path, UnpackAction.Recorded, options.CreateDevices
                    ? "not created: device nodes and FIFOs are made only when running as root"
                    : "not created: device nodes and FIFOs are not made (createDevices is off)");
                return;
            }

            Group? group = record.LinkCount >= 2 && kind != CpioKind.Directory && kind != CpioKind.Symlink
                ? GroupOf(record)
                : null;
            string? replaced = null;
            if (_nodes.TryGetValue(path, out Node? existing))
            {
                if (existing.Kind == CpioKind.Directory)
                {
                    if (kind != CpioKind.Directory)
                    {
                        throw new EnclaveBuildException(BuildError.UnsafePath,
                            $"{where}: a {EifRamdisks.TypeName(kind)} would replace the folder '{RamdiskFile.Display(path)}' made by entry {existing.Entries[0]}; " +
                            "replacing a folder is refused (it would drop what was unpacked into it, and a symlink in its place would redirect later entries)");
                    }

                    existing.Entries.Add(index);
                    Add(index, file, path, UnpackAction.Updated, $"the folder already made by entry {existing.Entries[0]}: it takes this entry's owner, mode and mtime");
                    return;
                }

                if (kind == CpioKind.File && group is not null && existing.Group == group)
                {
                    // The same name again for the same hard-linked file: it is that file; new data replaces the old.
                    byte[] sha = record.Size > 0 ? WriteData(cpio, OpenExisting(path)) : SHA256.HashData(ReadOnlySpan<byte>.Empty);
                    existing.Entries.Add(index);
                    Add(index, file with { Sha256 = sha }, path, UnpackAction.Updated, $"the same hard-linked file as entry {existing.Entries[0]}");
                    return;
                }

                Unlink(path, existing);
                foreach (int earlier in existing.Entries)
                    _entries[earlier] = _entries[earlier] with { Action = UnpackAction.Replaced, Reason = $"replaced by entry {index} of the same name" };
                replaced = $"replaces the {EifRamdisks.TypeName(existing.Kind)} of entry {existing.Entries[^1]}";
            }

            string? linkedTo = group?.Names.FirstOrDefault();
            var node = new Node(kind.Value, parts.Length, group, target);
            byte[] host = Host(path);
            byte[]? data = null;
            if (linkedTo is not null)
            {
                if (Posix.Link(Host(linkedTo), host) != 0)
                    throw Failure("link", path, Marshal.GetLastPInvokeError());
                Register(path, node, index);
                if (kind == CpioKind.File)
                    data = record.Size > 0 ? WriteData(cpio, OpenExisting(path)) : SHA256.HashData(ReadOnlySpan<byte>.Empty);
            }
            else
            {
                switch (kind)
                {
                    case CpioKind.Directory:
                        if (Posix.Mkdir(host, 0x1C0) != 0) // 0700 until the end, so that a 0555 folder takes its children
                            throw Failure("mkdir", path, Marshal.GetLastPInvokeError());
                        Register(path, node, index);
                        break;
                    case CpioKind.File:
                        int fd = Posix.Open(host, Posix.O_WRONLY | Posix.O_CREAT | Posix.O_EXCL | Posix.O_CLOEXEC, 0x180); // 0600 until the end
                        if (fd < 0)
                            throw Failure("create", path, Marshal.GetLastPInvokeError());
                        var handle = new SafeFileHandle(fd, ownsHandle: true);
                        Register(path, node, index);
                        data = WriteData(cpio, handle);
                        break;
                    case CpioKind.Symlink:
                        if (Posix.Symlink(Encoding.Latin1.GetBytes(target + "\0"), host) != 0)
                            throw Failure("symlink", path, Marshal.GetLastPInvokeError());
                        Register(path, node, index);
                        break;
                    default:
                        if (Posix.Mknod(host, (uint)((int)kind.Value | 0x180), Posix.MakeDev(record.RdevMajor, record.RdevMinor)) != 0)
                            throw Failure("mknod", path, Marshal.GetLastPInvokeError());
                        Register(path, node, index);
                        break;
                }
            }

            group?.Names.Add(path);
            _entries.Add(new UnpackedEntry(index, data is null ? file : file with { Sha256 = data }, record.Offset, path, UnpackAction.Created,
                linkedTo is null ? replaced : $"a hard link of '{RamdiskFile.Display(linkedTo)}'{(replaced is null ? string.Empty : "; " + replaced)}", linkedTo));
        }

        // The name's components, relative to the root: '/' and '.' components dropped, '..' refused.
        private static string[] Components(string name, string where)
        {
            var parts = new List<string>();
            foreach (string part in name.Split('/'))
            {
                if (part is "" or ".")
                    continue;
                if (part == "..")
                    throw new EnclaveBuildException(BuildError.UnsafePath, $"{where}: the name has a '..' component, which could leave the output folder; refused");
                parts.Add(part);
            }

            return [.. parts];
        }

        // Each parent must be a folder this unpack made. Returns why the entry is skipped (a missing parent, a parent
        // that is not a folder: the kernel's open or mkdir fails the same way), or null; throws on a symlink parent.
        private string? CheckParents(string[] parts, string where)
        {
            for (int i = 1; i < parts.Length; i++)
            {
                string parent = string.Join('/', parts[..i]);
                if (!_nodes.TryGetValue(parent, out Node? node))
                    return $"its folder '{RamdiskFile.Display(parent)}' was not made (not in the archive before it, or skipped); the kernel does not make missing folders either";
                if (node.Kind == CpioKind.Symlink)
                {
                    throw new EnclaveBuildException(BuildError.UnsafePath,
                        $"{where}: its parent '{RamdiskFile.Display(parent)}' is a symlink (to '{RamdiskFile.Display(node.Target!)}', entry {node.Entries[^1]}); nothing is ever created through a symlink");
                }

                if (node.Kind != CpioKind.Directory)
                    return $"its parent '{RamdiskFile.Display(parent)}' is a {EifRamdisks.TypeName(node.Kind)} (entry {node.Entries[^1]}), not a folder";

                // The record above is the authority; the disk is asked too, with lstat semantics, in case anything
                // changed the tree behind this unpack's back.
                Posix.Status? status = Posix.Lstat(Host(parent), Shown(parent));
                if (status is not { IsDirectory: true })
                    throw new IOException($"{Shown(parent)}: no longer the folder this unpack made (it is {(status is null ? "gone" : $"of type 0{Convert.ToString(status.Value.Type, 8)}")}); something else changed the temporary folder");
            }

            return null;
        }

        private Group GroupOf(CpioRecord record)
        {
            var key = (record.Inode, record.DevMajor, record.DevMinor, (int)(record.RawMode & 0xF000));
            if (!_groups.TryGetValue(key, out Group? group))
                _groups[key] = group = new Group();
            return group;
        }

        private void Register(string path, Node node, int index)
        {
            node.Entries.Add(index);
            _nodes[path] = node;
        }

        private void Unlink(string path, Node node)
        {
            if (Posix.Unlink(Host(path)) != 0)
                throw Failure("unlink", path, Marshal.GetLastPInvokeError());
            _nodes.Remove(path);
            node.Group?.Names.Remove(path);
        }

        private SafeFileHandle OpenExisting(string path)
        {
            // A hard link this unpack just made (a regular file); O_NOFOLLOW all the same.
            int fd = Posix.Open(Host(path), Posix.O_WRONLY | Posix.O_TRUNC | Posix.O_NOFOLLOW | Posix.O_CLOEXEC, 0);
            if (fd < 0)
                throw Failure("open", path, Marshal.GetLastPInvokeError());
            return new SafeFileHandle(fd, ownsHandle: true);
        }

        // Streams the current entry's data into the file, 64 KiB at a time, and returns its SHA-256.
        private byte[] WriteData(CpioReader cpio, SafeFileHandle handle)
        {
            using (handle)
            {
                using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
                using Stream data = cpio.OpenData();
                long position = 0;
                int n;
                while ((n = data.Read(_buffer, 0, _buffer.Length)) > 0)
                {
                    hash.AppendData(_buffer, 0, n);
                    RandomAccess.Write(handle, _buffer.AsSpan(0, n), position);
                    position += n;
                }

                return hash.GetHashAndReset();
            }
        }

        private void Skip(CpioReader cpio, int index, RamdiskFile file, string? path, string reason)
        {
            // Regular files still get their SHA-256 in the manifest (the data is read past anyway).
            if (file.Kind == CpioKind.File)
            {
                using Stream data = cpio.OpenData();
                file = file with { Sha256 = SHA256.HashData(data) };
            }

            Add(index, file, path, UnpackAction.Skipped, reason);
        }

        private void Add(int index, RamdiskFile file, string? path, UnpackAction action, string? reason) =>
            _entries.Add(new UnpackedEntry(index, file, _offset, path, action, reason, null));

        // Owners, modes and times, once everything exists: non-folders in archive order (a hard-linked file takes the
        // last of its entries, as in the kernel), then folders deepest first (dir_utime), so that no folder's mode
        // shuts this process out of a child still to be done and no later change moves a folder's mtime.
        private void SetMetadata()
        {
            foreach (var (path, node) in _nodes.Where(n => n.Value.Kind != CpioKind.Directory).OrderBy(n => n.Value.Entries[^1]))
                Apply(path, node);
            foreach (var (path, node) in _nodes.Where(n => n.Value.Kind == CpioKind.Directory).OrderByDescending(n => n.Value.Depth))
                Apply(path, node);
        }

        private void Apply(string path, Node node)
        {
            RamdiskFile file = _entries[node.Entries[^1]].File;
            byte[] host = Host(path);
            if (PreserveOwnership && Posix.Lchown(host, file.Uid, file.Gid) != 0)
                throw Failure("lchown", path, Marshal.GetLastPInvokeError());

            // chown clears set-uid/set-gid, so the mode comes after it. A symlink has no mode of its own on Linux.
            int mask = PreserveOwnership ? 0xFFF : 0x3FF; // 07777, or 01777 without S_ISUID and S_ISGID
            if (node.Kind != CpioKind.Symlink && Posix.Chmod(host, (uint)(file.Permissions & mask)) != 0)
                throw Failure("chmod", path, Marshal.GetLastPInvokeError());

            Posix.Timespec time = new() { Seconds = file.ModTime };
            if (Posix.Utimensat(Posix.AT_FDCWD, host, [time, time], Posix.AT_SYMLINK_NOFOLLOW) != 0) // atime = mtime, as do_utime
                throw Failure("utimensat", path, Marshal.GetLastPInvokeError());
        }

        private byte[] Host(string path) => Posix.PathBytes(Root, path);

        private string Shown(string path) => $"{Root}/{RamdiskFile.Display(path)}";

        private IOException Failure(string operation, string path, int errno) => Posix.Failure(operation, Shown(path), errno);

        /// <summary>What this unpack made at one path.</summary>
        private sealed class Node(CpioKind kind, int depth, Group? group, string? target)
        {
            internal CpioKind Kind { get; } = kind;

            internal int Depth { get; } = depth;

            internal Group? Group { get; } = group;

            internal string? Target { get; } = target;

            /// <summary>The entries that made or updated it, in order.</summary>
            internal List<int> Entries { get; } = [];
        }

        /// <summary>The names made so far for one hard-linked file (c_ino, c_dev, type).</summary>
        private sealed class Group
        {
            internal List<string> Names { get; } = [];
        }
    }
}

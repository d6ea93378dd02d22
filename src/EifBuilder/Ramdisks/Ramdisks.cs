using System.Text;
using EifBuilder.Cpio;
using EifBuilder.Layers;
using EifBuilder.RootFs;
using EifBuilder.Tar;

namespace EifBuilder.Ramdisks;

/// <summary>What the enclave init runs: argv, environment, working directory and user, as written to the ramdisk.</summary>
/// <param name="Command">argv: written one element per line to <c>/cmd</c>.</param>
/// <param name="Environment">NAME=value entries: written one per line to <c>/env</c>.</param>
/// <param name="WorkingDir">WORKDIR, written to <c>/workdir</c> when set (the AWS init ignores the file; ours uses it).</param>
/// <param name="User">USER, written to <c>/user</c> when set (likewise).</param>
public sealed record RunSettings(IReadOnlyList<string> Command, IReadOnlyList<string> Environment, string WorkingDir, string User)
{
    /// <summary>
    /// The settings of an image config. Docker's rule (the default): ENTRYPOINT followed by CMD, as <c>docker run</c>
    /// runs them. nitro-cli's rule (<paramref name="nitroCliCommand"/>): CMD alone when set, else ENTRYPOINT
    /// (spec builder.md §4), which drops ENTRYPOINT from <c>ENTRYPOINT ["/app"] CMD ["--flag"]</c>.
    /// </summary>
    /// <exception cref="EnclaveBuildException"><see cref="BuildError.InvalidCommand"/>: no command, or an element holding a newline or NUL.</exception>
    public static RunSettings FromConfig(Images.ImageConfig config, bool nitroCliCommand)
    {
        IReadOnlyList<string> command = nitroCliCommand
            ? config.Cmd ?? config.Entrypoint ?? []
            : [.. config.Entrypoint ?? [], .. config.Cmd ?? []];
        if (command.Count == 0)
            throw new EnclaveBuildException(BuildError.InvalidCommand, "the image has neither ENTRYPOINT nor CMD: the enclave would have nothing to run");
        Check(command, "command (ENTRYPOINT/CMD)");
        Check(config.Env, "ENV");
        Check([config.WorkingDir, config.User], "WORKDIR/USER");
        return new RunSettings(command, config.Env, config.WorkingDir, config.User);
    }

    // The init reads these files line by line: an element with a newline would split silently, a NUL would cut it.
    private static void Check(IReadOnlyList<string> elements, string what)
    {
        for (int i = 0; i < elements.Count; i++)
        {
            if (elements[i].Contains('\n', StringComparison.Ordinal) || elements[i].Contains('\0', StringComparison.Ordinal))
            {
                throw new EnclaveBuildException(BuildError.InvalidCommand,
                    $"{what} element {i} ('{EifFormat.PrintableText.Of(elements[i], 60)}') holds a {(elements[i].Contains('\0', StringComparison.Ordinal) ? "NUL" : "newline")}, which the enclave init's one-per-line files cannot carry");
            }
        }
    }
}

/// <summary>The two ramdisks of an enclave image, as cpio newc entries (spec builder.md §2, §3).</summary>
public static class RamdiskLayout
{
    /// <summary>linuxkit's fixed mtime for entries it makes (<c>defaultModTime</c>, moby/build/dir.go): 2017-04-18T16:30:00Z.</summary>
    public const long BuilderModTime = 1492533000;

    /// <summary>The directories the init mounts on inside the root filesystem (spec launch.md §3; nitro-cli adds var too).</summary>
    public static readonly string[] MountPoints = ["dev", "proc", "run", "sys", "tmp"];

    /// <summary>
    /// linuxkit's /etc/hosts (moby/build/image.go), added when the image has none, so that "localhost" resolves in
    /// the enclave as it does in a nitro-cli image.
    /// </summary>
    public static readonly byte[] Hosts = Encoding.ASCII.GetBytes(
        "127.0.0.1       localhost\n::1     localhost ip6-localhost ip6-loopback\nfe00::0 ip6-localnet\nff00::0 ip6-mcastprefix\nff02::1 ip6-allnodes\nff02::2 ip6-allrouters\n");

    /// <summary>
    /// The bootstrap ramdisk exactly as nitro-cli's linuxkit writes it: <c>dev</c>, <c>init</c>, <c>nsm.ko</c> (when
    /// given), each root-owned at <see cref="BuilderModTime"/>, so that the same blobs give nitro-cli's PCR1. Extra
    /// files (the default runtime's <c>modules/order</c> and modules) follow, their folders before them.
    /// </summary>
    public static IEnumerable<CpioEntry> Bootstrap(string initPath, string? nsmPath, IReadOnlyList<(string Name, string Path)> extraFiles)
    {
        yield return new CpioEntry("dev", CpioKind.Directory, 0x1ED, 0, 0, BuilderModTime, 0);
        yield return FileEntry("init", initPath);
        if (nsmPath is not null)
            yield return FileEntry("nsm.ko", nsmPath);
        var directories = new HashSet<string>(StringComparer.Ordinal) { "dev" };
        foreach (var (name, path) in extraFiles)
        {
            // Parent folders first (e.g. "modules" for "modules/order"), each once.
            string[] parts = name.Split('/');
            for (int i = 1; i < parts.Length; i++)
            {
                string directory = string.Join('/', parts[..i]);
                if (directories.Add(directory))
                    yield return new CpioEntry(directory, CpioKind.Directory, 0x1ED, 0, 0, BuilderModTime, 0);
            }

            yield return FileEntry(name, path);
        }

        static CpioEntry FileEntry(string name, string path)
        {
            long size = new FileInfo(path).Length;
            return new CpioEntry(name, CpioKind.File, 0x1ED, 0, 0, BuilderModTime, size,
                OpenData: () => new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, bufferSize: 1, FileOptions.SequentialScan));
        }
    }

    /// <summary>
    /// The customer ramdisk: <c>rootfs</c>, the merged image under it in a canonical order (depth-first, each
    /// directory's children in byte order, so parents come first and the order does not depend on the source or the
    /// layer order), then <c>cmd</c>, <c>env</c>, <c>workdir</c> and <c>user</c>. Hard links stay hard links (one
    /// inode, the data on the last name as GNU cpio writes it; the kernel accepts either). With
    /// <paramref name="sourceDateEpoch"/>, every mtime later than it is clamped to it.
    /// </summary>
    public static IEnumerable<CpioEntry> Customer(RootFsTree tree, LayerStore layers, RunSettings run, long? sourceDateEpoch)
    {
        long Clamp(long t) => sourceDateEpoch is { } max && t > max ? max : t;
        long builderTime = Clamp(BuilderModTime);
        yield return new CpioEntry("rootfs", CpioKind.Directory, 0x1ED, 0, 0, builderTime, 0);

        // Two walks, so that no list of every path is held: one counts the names of hard-linked files, one emits.
        var names = new Dictionary<RootFsInode, int>(ReferenceEqualityComparer.Instance);
        foreach (var (_, node) in tree.Walk())
        {
            if (node.Inode.Kind == TarEntryKind.File)
                names[node.Inode] = names.GetValueOrDefault(node.Inode) + 1;
        }

        foreach (var inode in names.Where(n => n.Value == 1).Select(n => n.Key).ToList())
            names.Remove(inode); // only hard-linked files need remembering

        var emitted = new Dictionary<RootFsInode, int>(ReferenceEqualityComparer.Instance);
        foreach (var (path, node) in tree.Walk())
        {
            RootFsInode inode = node.Inode;
            string name = "rootfs/" + path;
            long mtime = Clamp(inode.ModTime);
            switch (inode.Kind)
            {
                case TarEntryKind.Directory:
                    yield return new CpioEntry(name, CpioKind.Directory, inode.Mode, inode.Uid, inode.Gid, mtime, 0);
                    break;
                case TarEntryKind.Symlink:
                    byte[] target = Encoding.Latin1.GetBytes(inode.LinkTarget);
                    yield return new CpioEntry(name, CpioKind.Symlink, inode.Mode, inode.Uid, inode.Gid, mtime, target.Length, Data: target);
                    break;
                case TarEntryKind.CharDevice or TarEntryKind.BlockDevice:
                    yield return new CpioEntry(name, inode.Kind == TarEntryKind.CharDevice ? CpioKind.CharDevice : CpioKind.BlockDevice,
                        inode.Mode, inode.Uid, inode.Gid, mtime, 0, RdevMajor: inode.DevMajor, RdevMinor: inode.DevMinor);
                    break;
                case TarEntryKind.Fifo:
                    yield return new CpioEntry(name, CpioKind.Fifo, inode.Mode, inode.Uid, inode.Gid, mtime, 0);
                    break;
                default:
                    int count = names.GetValueOrDefault(inode, 1);
                    int seen = count == 1 ? 1 : emitted[inode] = emitted.GetValueOrDefault(inode) + 1;
                    bool carriesData = seen == count;
                    long size = carriesData ? inode.Size : 0;
                    yield return new CpioEntry(name, CpioKind.File, inode.Mode, inode.Uid, inode.Gid, mtime, size,
                        Data: carriesData ? inode.InlineData : null,
                        OpenData: carriesData && inode.InlineData is null && size > 0 ? () => layers.OpenData(inode.Layer, inode.DataOffset, inode.Size) : null,
                        Inode: count > 1 ? inode : null,
                        LinkCount: count > 1 ? count : 0);
                    break;
            }
        }

        yield return Lines("cmd", run.Command, builderTime);
        yield return Lines("env", run.Environment, builderTime);
        if (run.WorkingDir.Length > 0)
            yield return Lines("workdir", [run.WorkingDir], builderTime);
        if (run.User.Length > 0)
            yield return Lines("user", [run.User], builderTime);
    }

    // One element per line, each followed by "\n" (the AWS init's format); an empty list gives an empty file.
    private static CpioEntry Lines(string name, IReadOnlyList<string> lines, long mtime)
    {
        byte[] data = Encoding.UTF8.GetBytes(string.Concat(lines.Select(l => l + "\n")));
        return new CpioEntry(name, CpioKind.File, 0x1A4, 0, 0, mtime, data.Length, Data: data);
    }
}

using EifTests.Shared;
using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using EifBuilder;
using EifBuilder.Cpio;
using EifBuilder.Inspect;

namespace EifBuilder.Tests;

/// <summary>
/// The careful ramdisk unpacker against a hostile corpus. Each archive is unpacked into <c>SANDBOX/out</c>, next to a
/// sentinel file and a sentinel folder; after every unpack, refused or not, the sandbox must hold only those (and
/// <c>out</c> when the unpack succeeded), unchanged, no temporary folder, and /tmp no entry named like the corpus'
/// targets. The tests run as root (tools/test, CI), so both settings of the root-only options are exercised.
/// </summary>
public sealed class RamdiskUnpackerTests : IDisposable
{
    private const long Time = 1_700_000_000;

    private readonly string _sandbox = Directory.CreateTempSubdirectory("eif-unpack").FullName;
    private readonly string _out;
    private readonly string _sentinelDir;
    private readonly string _marker = "eif-hostile-" + Guid.NewGuid().ToString("N")[..12];
    private readonly List<string> _before;

    public RamdiskUnpackerTests()
    {
        _out = Path.Combine(_sandbox, "out");
        _sentinelDir = Path.Combine(_sandbox, "sentinel-dir");
        File.WriteAllText(Path.Combine(_sandbox, "sentinel.txt"), "sentinel\n");
        Directory.CreateDirectory(_sentinelDir);
        File.WriteAllText(Path.Combine(_sentinelDir, "inside.txt"), "inside\n");
        _before = Snapshot();
    }

    public void Dispose()
    {
        // rm, not Directory.Delete: .NET cannot name a file whose name is not UTF-8 (rm never follows a symlink either).
        EifTests.Shared.TestImages.Run("rm", "-rf", "--one-file-system", _sandbox);
        foreach (string leaked in Directory.EnumerateFileSystemEntries("/tmp", _marker + "*"))
            EifTests.Shared.TestImages.Run("rm", "-rf", leaked); // only after a failed test
    }

    // ---- the corpus of refused archives --------------------------------------------------------------------------

    /// <summary>Archives that must be refused, with the error and the entry named; one comment each says what it tries.</summary>
    public static TheoryData<string, BuildError, int> Refused => new()
    {
        { "dotdot", BuildError.UnsafePath, 0 },                              // ../escape
        { "dotdot-below-a-folder", BuildError.UnsafePath, 1 },               // a/, a/../../escape
        { "dotdot-staying-inside", BuildError.UnsafePath, 1 },               // a/, a/../b: harmless, refused all the same
        { "absolute-dotdot", BuildError.UnsafePath, 0 },                     // /../escape
        { "symlink-to-tmp-then-child", BuildError.UnsafePath, 1 },           // a -> /tmp, a/MARKER
        { "symlink-to-sentinel-dir-then-child", BuildError.UnsafePath, 1 },  // a -> SANDBOX/sentinel-dir, a/evil
        { "symlink-dotdot-then-child", BuildError.UnsafePath, 1 },           // a -> .., a/evil (would land in SANDBOX)
        { "symlink-dot-then-child", BuildError.UnsafePath, 1 },              // a -> ., a/x: stays inside, refused all the same
        { "symlink-dot-chain-then-child", BuildError.UnsafePath, 2 },        // l1 -> ., l2 -> l1/l1/l1/.., l2/evil
        { "symlink-as-grandparent", BuildError.UnsafePath, 1 },              // a -> .., a/sentinel-dir/evil
        { "absolute-symlink-then-hardlink-through-it", BuildError.UnsafePath, 2 }, // s -> SANDBOX/sentinel-dir, f (nlink 2), s/inside.txt (nlink 2, data)
        { "hardlink-first-name-through-symlink", BuildError.UnsafePath, 1 }, // s -> sentinel-dir, s/x (nlink 2, first), y (nlink 2, data)
        { "dir-then-symlink-same-name-then-file", BuildError.UnsafePath, 1 }, // a/, a -> SANDBOX/sentinel-dir, a/evil
        { "dir-then-file-same-name", BuildError.UnsafePath, 2 },             // a/, a/kept, a (a file over a folder)
        { "hardlink-first-name-outside", BuildError.UnsafePath, 0 },         // ../x (nlink 2), y (nlink 2, data)
        { "hardlink-last-name-outside", BuildError.UnsafePath, 1 },          // x (nlink 2), ../y (nlink 2, data)
        { "deep-4095-byte-name", BuildError.TooLarge, 20 },                  // 20 folders of 192 bytes, then a file: a 4095-byte name
        { "truncated-inside-a-file", BuildError.InvalidRamdisk, -1 },        // a/, a/big (1 MiB declared, 1000 bytes present)
    };

    [Theory]
    [MemberData(nameof(Refused))]
    public void Unpack_HostileArchive_IsRefusedAndNothingIsLeft(string name, BuildError error, int entry)
    {
        byte[] archive = Hostile(name);

        var ex = Assert.Throws<EnclaveBuildException>(() => Unpack(archive));

        Assert.Equal(error, ex.Error);
        if (entry >= 0)
            Assert.Contains($"test archive: entry {entry} '", ex.Message);
        Assert.DoesNotContain('\n', ex.Message);
        AssertContained(unpacked: false);
    }

    [Theory]
    [MemberData(nameof(Refused))]
    public void Unpack_HostileArchive_NoDevicesNoOwnership_IsRefusedAlike(string name, BuildError error, int entry)
    {
        var ex = Assert.Throws<EnclaveBuildException>(() => Unpack(Hostile(name), new RamdiskUnpackOptions { CreateDevices = false, PreserveOwnership = false }));
        Assert.Equal(error, ex.Error);
        if (entry >= 0)
            Assert.Contains($"test archive: entry {entry} '", ex.Message);
        AssertContained(unpacked: false);
    }

    private byte[] Hostile(string name)
    {
        string sentinelDir = _sentinelDir;
        var shared = new object(); // one hard-linked file
        string deep = string.Join('/', Enumerable.Range(0, 20).Select(i => new string((char)('a' + i), 192)));
        return name switch
        {
            "dotdot" => NewcArchive.Write(Regular("../escape", "x")),
            "dotdot-below-a-folder" => NewcArchive.Write(Dir("a"), Regular("a/../../escape", "x")),
            "dotdot-staying-inside" => NewcArchive.Write(Dir("a"), Regular("a/../b", "x")),
            "absolute-dotdot" => NewcArchive.Write(Regular("/../escape", "x")),
            "symlink-to-tmp-then-child" => NewcArchive.Write(Symlink("a", "/tmp"), Regular("a/" + _marker, "x")),
            "symlink-to-sentinel-dir-then-child" => NewcArchive.Write(Symlink("a", sentinelDir), Regular("a/evil", "x")),
            "symlink-dotdot-then-child" => NewcArchive.Write(Symlink("a", ".."), Regular("a/evil", "x")),
            "symlink-dot-then-child" => NewcArchive.Write(Symlink("a", "."), Regular("a/x", "x")),
            "symlink-dot-chain-then-child" => NewcArchive.Write(Symlink("l1", "."), Symlink("l2", "l1/l1/l1/.."), Regular("l2/evil", "x")),
            "symlink-as-grandparent" => NewcArchive.Write(Symlink("a", ".."), Regular("a/sentinel-dir/evil", "x")),
            "absolute-symlink-then-hardlink-through-it" => NewcArchive.Write(
                Symlink("s", sentinelDir), Regular("f", string.Empty, inode: shared, links: 2), Regular("s/inside.txt", "owned\n", inode: shared, links: 2)),
            "hardlink-first-name-through-symlink" => NewcArchive.Write(
                Symlink("s", sentinelDir), Regular("s/x", string.Empty, inode: shared, links: 2), Regular("y", "data", inode: shared, links: 2)),
            "dir-then-symlink-same-name-then-file" => NewcArchive.Write(Dir("a"), Symlink("a", sentinelDir), Regular("a/evil", "x")),
            "dir-then-file-same-name" => NewcArchive.Write(Dir("a"), Regular("a/kept", "x"), Regular("a", "file")),
            "hardlink-first-name-outside" => NewcArchive.Write(Regular("../x", string.Empty, inode: shared, links: 2), Regular("y", "data", inode: shared, links: 2)),
            "hardlink-last-name-outside" => NewcArchive.Write(Regular("x", string.Empty, inode: shared, links: 2), Regular("../y", "data", inode: shared, links: 2)),
            "deep-4095-byte-name" => NewcArchive.Write([
                .. Enumerable.Range(1, 20).Select(n => Dir(string.Join('/', deep.Split('/')[..n]))),
                Regular(deep + "/" + new string('z', 4095 - deep.Length - 1), "x")]),
            "truncated-inside-a-file" => NewcArchive.Write(Dir("a"), Regular("a/big", new string('b', 1 << 20)))[..2000],
            _ => throw new ArgumentException(name),
        };
    }

    // ---- archives that unpack, each with the outcome pinned -------------------------------------------------------

    [Fact]
    public void Unpack_AbsoluteNames_LandInsideTheFolder()
    {
        var entries = Unpack(NewcArchive.Write(Dir("/abs"), Regular("/abs/file", "abs"), Regular("//twice", "2")));

        Assert.Equal("abs", ReadText("abs/file"));
        Assert.Equal("2", ReadText("twice"));
        Assert.Equal(["abs", "abs/file", "twice"], entries.Select(e => e.Path));
        Assert.All(entries, e => Assert.Equal(UnpackAction.Created, e.Action));
        AssertContained(unpacked: true);
    }

    [Fact]
    public void Unpack_AbsoluteNameWithoutItsFolder_IsSkippedAsTheKernelWould()
    {
        var entries = Unpack(NewcArchive.Write(Regular("/abs/file", "abs")));

        Assert.Equal(UnpackAction.Skipped, entries[0].Action);
        Assert.Contains("its folder 'abs' was not made", entries[0].Reason);
        Assert.Empty(Directory.EnumerateFileSystemEntries(_out));
        AssertContained(unpacked: true);
    }

    [Fact]
    public void Unpack_DotSlashAndDoubleSlashes_AreCollapsed()
    {
        var entries = Unpack(NewcArchive.Write(Dir("./d"), Regular("./x", "x"), Regular("d//y", "y"), Regular(".//d/.//z", "z")));

        Assert.Equal(["d", "x", "d/y", "d/z"], entries.Select(e => e.Path));
        Assert.Equal("x", ReadText("x"));
        Assert.Equal("y", ReadText("d/y"));
        Assert.Equal("z", ReadText("d/z"));
        AssertContained(unpacked: true);
    }

    [Fact]
    public void Unpack_RootEntries_AreSkippedAndTheRootStaysPrivate()
    {
        byte[] archive = RawArchive(("", 0x41ED, []), (".", 0x41FF, []), ("./", 0x41FF, []), ("/", 0x41FF, []));

        var entries = Unpack(archive);

        Assert.All(entries, e => Assert.Equal(UnpackAction.Skipped, e.Action));
        Assert.All(entries, e => Assert.Null(e.Path));
        Assert.Equal(0x1C0, Posix.Lstat(Posix.PathBytes(_out), _out)!.Value.Mode & 0xFFF); // 0700, not the archive's 0777
        AssertContained(unpacked: true);
    }

    [Fact]
    public void Unpack_Symlinks_AreStoredVerbatimNeverResolved()
    {
        string outside = Path.Combine(_sandbox, "sentinel.txt");
        var entries = Unpack(NewcArchive.Write(Symlink("abs", outside), Symlink("up", "../../.."), Symlink("l1", "."), Symlink("l2", "l1/l1/l1/.."), Symlink("dangling", "/nonexistent/" + _marker)));

        Assert.Equal(outside, new FileInfo(Host("abs")).LinkTarget);
        Assert.Equal("../../..", new FileInfo(Host("up")).LinkTarget);
        Assert.Equal(".", new FileInfo(Host("l1")).LinkTarget);
        Assert.Equal("l1/l1/l1/..", new FileInfo(Host("l2")).LinkTarget);
        Assert.Equal("/nonexistent/" + _marker, new FileInfo(Host("dangling")).LinkTarget);
        Assert.Equal(["abs", "up", "l1", "l2", "dangling"], entries.Select(e => e.Path));
        Assert.Equal(Time, Lstat("abs")!.Value.ModTime); // lutimes: the link's own time, not the sentinel's
        AssertContained(unpacked: true);
    }

    [Fact]
    public void Unpack_FileOverSymlink_ReplacesTheLinkNeverWritesThroughIt()
    {
        string sentinel = Path.Combine(_sandbox, "sentinel.txt");
        var entries = Unpack(NewcArchive.Write(Symlink("x", sentinel), Regular("x", "pwned")));

        Assert.Null(new FileInfo(Host("x")).LinkTarget);
        Assert.Equal("pwned", ReadText("x"));
        Assert.Equal(UnpackAction.Replaced, entries[0].Action);
        Assert.Equal("replaced by entry 1 of the same name", entries[0].Reason);
        Assert.Equal(UnpackAction.Created, entries[1].Action);
        Assert.Equal("replaces the symlink of entry 0", entries[1].Reason);
        AssertContained(unpacked: true); // the sentinel is unchanged
    }

    [Fact]
    public void Unpack_FileThenFolderOfTheSameName_TheFolderReplacesTheFile()
    {
        var entries = Unpack(NewcArchive.Write(Regular("x", "one"), Dir("x"), Regular("x/inner", "two")));

        Assert.True(Directory.Exists(Host("x")));
        Assert.Equal("two", ReadText("x/inner"));
        Assert.Equal([UnpackAction.Replaced, UnpackAction.Created, UnpackAction.Created], entries.Select(e => e.Action));
        AssertContained(unpacked: true);
    }

    [Fact]
    public void Unpack_DuplicateNames_LastOneWins()
    {
        var entries = Unpack(NewcArchive.Write(Regular("dup", "first"), Regular("dup", "second"), Dir("d", mode: 0x1C0), Dir("d", mode: 0x1ED), Symlink("s", "one"), Symlink("s", "two")));

        Assert.Equal("second", ReadText("dup"));
        Assert.Equal(0x1ED, Lstat("d")!.Value.Mode & 0xFFF);
        Assert.Equal("two", new FileInfo(Host("s")).LinkTarget);
        Assert.Equal(
            [UnpackAction.Replaced, UnpackAction.Created, UnpackAction.Created, UnpackAction.Updated, UnpackAction.Replaced, UnpackAction.Created],
            entries.Select(e => e.Action));
        AssertContained(unpacked: true);
    }

    [Fact]
    public void Unpack_DevicesWithCreateDevicesOff_AreRecordedNotCreated()
    {
        var entries = Unpack(Devices(), new RamdiskUnpackOptions { CreateDevices = false });

        Assert.Equal([UnpackAction.Created, UnpackAction.Recorded, UnpackAction.Recorded, UnpackAction.Recorded], entries.Select(e => e.Action));
        Assert.All(entries.Skip(1), e => Assert.Equal("not created: device nodes and FIFOs are not made (createDevices is off)", e.Reason));
        Assert.Null(Lstat("dev/null", mayBeMissing: true));
        Assert.Null(Lstat("dev/big", mayBeMissing: true));
        Assert.Null(Lstat("dev/fifo", mayBeMissing: true));
        AssertContained(unpacked: true);
    }

    [Fact]
    public void Unpack_DevicesWithCreateDevicesOnAsRoot_AreCreatedWithTheirNumbers()
    {
        Assert.SkipUnless(RamdiskUnpackOptions.IsRoot, "mknod needs root (tools/test and CI run the tests as root)");

        var entries = Unpack(Devices(), new RamdiskUnpackOptions { CreateDevices = true });

        Assert.All(entries, e => Assert.Equal(UnpackAction.Created, e.Action));
        var null_ = Lstat("dev/null")!.Value;
        Assert.Equal((0x2000, 1u, 3u, 0x1B6), (null_.Type, null_.RdevMajor, null_.RdevMinor, null_.Mode & 0xFFF));
        var big = Lstat("dev/big")!.Value; // numbers past glibc's old 8-bit split: makedev's high bits
        Assert.Equal((0x6000, 259u, 300000u), (big.Type, big.RdevMajor, big.RdevMinor));
        var fifo = Lstat("dev/fifo")!.Value;
        Assert.Equal((0x1000, 0x1A4), (fifo.Type, fifo.Mode & 0xFFF));
        AssertContained(unpacked: true);
    }

    [Fact]
    public void Unpack_SocketAndUnknownType_AreRecordedAndSkipped()
    {
        var entries = Unpack(NewcArchive.Write(new CpioEntry("sock", (CpioKind)0xC000, 0x1ED, 0, 0, Time, 0), new CpioEntry("weird", (CpioKind)0xE000, 0x1A4, 0, 0, Time, 0)));

        Assert.Equal([UnpackAction.Recorded, UnpackAction.Skipped], entries.Select(e => e.Action));
        Assert.Empty(Directory.EnumerateFileSystemEntries(_out));
        AssertContained(unpacked: true);
    }

    [Fact]
    public void Unpack_FolderOrDeviceWithData_IsSkippedAsTheKernelDoes()
    {
        var entries = Unpack(NewcArchive.Write(
            new CpioEntry("d", CpioKind.Directory, 0x1ED, 0, 0, Time, 3, Data: "abc"u8.ToArray()),
            new CpioEntry("c", CpioKind.CharDevice, 0x1B6, 0, 0, Time, 2, Data: "xy"u8.ToArray(), RdevMajor: 1, RdevMinor: 3),
            Regular("after", "still read")));

        Assert.Equal([UnpackAction.Skipped, UnpackAction.Skipped, UnpackAction.Created], entries.Select(e => e.Action));
        Assert.Equal("still read", ReadText("after"));
        AssertContained(unpacked: true);
    }

    [Fact]
    public void Unpack_SetUidFile_KeepsItsBitsAndOwnerOnlyWithOwnership()
    {
        Assert.SkipUnless(RamdiskUnpackOptions.IsRoot, "lchown needs root (tools/test and CI run the tests as root)");
        byte[] archive = NewcArchive.Write(Regular("suid", "#!", mode: 0xDED, uid: 1234, gid: 5678), Regular("sgid", "#!", mode: 0x5ED), Dir("sticky", mode: 0x3FF));

        Unpack(archive, new RamdiskUnpackOptions { PreserveOwnership = true });
        var kept = Lstat("suid")!.Value;
        Assert.Equal((0xDED, 1234u, 5678u), (kept.Mode & 0xFFF, kept.Uid, kept.Gid)); // 06755
        Assert.Equal(0x5ED, Lstat("sgid")!.Value.Mode & 0xFFF);                      // 02755
        Directory.Delete(_out, recursive: true);

        Unpack(archive, new RamdiskUnpackOptions { PreserveOwnership = false });
        var stripped = Lstat("suid")!.Value;
        Assert.Equal((0x1ED, 0u, 0u), (stripped.Mode & 0xFFF, stripped.Uid, stripped.Gid)); // 0755, owned by the unpacking user
        Assert.Equal(0x1ED, Lstat("sgid")!.Value.Mode & 0xFFF);
        Assert.Equal(0x3FF, Lstat("sticky")!.Value.Mode & 0xFFF); // the sticky bit is no hazard: kept
        AssertContained(unpacked: true);
    }

    [Fact]
    public void Unpack_ReadOnlyFolders_StillTakeTheirChildrenAndGetTheirModeAtTheEnd()
    {
        var entries = Unpack(NewcArchive.Write(Dir("ro", mode: 0x16D), Dir("ro/inner", mode: 0), Regular("ro/inner/f", "data", mode: 0x124), Regular("ro/g", "g", mode: 0)));

        Assert.All(entries, e => Assert.Equal(UnpackAction.Created, e.Action));
        Assert.Equal(0x16D, Lstat("ro")!.Value.Mode & 0xFFF);         // 0555
        Assert.Equal(0, Lstat("ro/inner")!.Value.Mode & 0xFFF);        // 0000
        Assert.Equal(0x124, Lstat("ro/inner/f")!.Value.Mode & 0xFFF);  // 0444
        Assert.Equal("data", ReadText("ro/inner/f"));
        AssertContained(unpacked: true);
        foreach (string dir in new[] { "ro", "ro/inner" })
            Assert.Equal(0, Posix.Chmod(Posix.PathBytes(Host(dir)), 0x1C0)); // so that Dispose can remove them as any user
    }

    [Fact]
    public void Unpack_Mtimes_AreSetLastOnFilesFoldersAndLinks()
    {
        Unpack(NewcArchive.Write(Dir("d", mtime: 1_000_000_000), Regular("d/f", "x", mtime: 1_100_000_000), Symlink("d/l", "f", mtime: 1_200_000_000), Dir("d/e", mtime: 1_300_000_000)));

        Assert.Equal(1_000_000_000, Lstat("d")!.Value.ModTime); // not moved by the children made after it
        Assert.Equal(1_100_000_000, Lstat("d/f")!.Value.ModTime);
        Assert.Equal(1_200_000_000, Lstat("d/l")!.Value.ModTime);
        Assert.Equal(1_300_000_000, Lstat("d/e")!.Value.ModTime);
        AssertContained(unpacked: true);
    }

    [Fact]
    public void Unpack_HardLinksWithDataOnTheLastName_ShareOneInodeHoldingIt()
    {
        var shared = new object();
        var entries = Unpack(NewcArchive.Write(Dir("d"), Regular("d/h1", string.Empty, inode: shared, links: 3), Regular("h2", string.Empty, inode: shared, links: 3), Regular("d/h3", "the data", inode: shared, links: 3)));

        var h1 = Lstat("d/h1")!.Value;
        Assert.Equal((h1.Inode, 3u), (Lstat("h2")!.Value.Inode, h1.LinkCount));
        Assert.Equal(h1.Inode, Lstat("d/h3")!.Value.Inode);
        Assert.Equal("the data", ReadText("d/h1"));
        Assert.Equal([null, null, "d/h1", "d/h1"], entries.Select(e => e.HardLinkTo));
        Assert.Equal(Hex(SHA256.HashData("the data"u8)), Hex(entries[3].File.Sha256!));
        AssertContained(unpacked: true);
    }

    [Fact]
    public void Unpack_HardLinksWithDataOnTheFirstName_KeepIt()
    {
        var shared = new object();
        Unpack(NewcArchive.Write(Regular("a", "first has it", inode: shared, links: 2), Regular("b", string.Empty, inode: shared, links: 2)));

        Assert.Equal(Lstat("a")!.Value.Inode, Lstat("b")!.Value.Inode);
        Assert.Equal("first has it", ReadText("b"));
        AssertContained(unpacked: true);
    }

    [Fact]
    public void Unpack_HardLinkWhoseFirstNameWasReplaced_LinksToAnotherName()
    {
        var shared = new object();
        var entries = Unpack(NewcArchive.Write(
            Regular("a", string.Empty, inode: shared, links: 3), Regular("b", string.Empty, inode: shared, links: 3),
            Regular("a", "unrelated"), Regular("c", "data", inode: shared, links: 3)));

        Assert.Equal(Lstat("b")!.Value.Inode, Lstat("c")!.Value.Inode);
        Assert.NotEqual(Lstat("a")!.Value.Inode, Lstat("c")!.Value.Inode);
        Assert.Equal("unrelated", ReadText("a"));
        Assert.Equal("data", ReadText("b"));
        Assert.Equal("b", entries[3].HardLinkTo);
        AssertContained(unpacked: true);
    }

    [Fact]
    public void Unpack_HardLinksInConcatenatedArchives_AreNotLinkedAcrossTheTrailer()
    {
        // The kernel forgets its links at each TRAILER!!! (free_hash): the same c_ino in the next archive is another file.
        var first = new object();
        var second = new object();
        byte[] archive = [.. NewcArchive.Write(Regular("a", "one", inode: first, links: 2)), .. NewcArchive.Write(Regular("b", "two", inode: second, links: 2))];

        Unpack(archive);

        Assert.NotEqual(Lstat("a")!.Value.Inode, Lstat("b")!.Value.Inode);
        Assert.Equal(("one", "two"), (ReadText("a"), ReadText("b")));
        AssertContained(unpacked: true);
    }

    [Fact]
    public void Unpack_MissingOrNonFolderParent_IsSkipped()
    {
        var entries = Unpack(NewcArchive.Write(Regular("f", "x"), Regular("f/child", "y"), Regular("nodir/child", "z")));

        Assert.Equal([UnpackAction.Created, UnpackAction.Skipped, UnpackAction.Skipped], entries.Select(e => e.Action));
        Assert.Equal("its parent 'f' is a file (entry 0), not a folder", entries[1].Reason);
        Assert.NotNull(entries[2].File.Sha256); // a skipped file's data is still hashed for the manifest
        AssertContained(unpacked: true);
    }

    [Fact]
    public void Unpack_LongNames_ComponentOverNameMaxIsSkippedDeepNameThatFitsIsCreated()
    {
        string deep = string.Join('/', Enumerable.Range(0, 14).Select(i => new string((char)('a' + i), 200)));
        var entries = Unpack(NewcArchive.Write([
            Regular(new string('n', 4095), "too long a component"),
            .. Enumerable.Range(1, 14).Select(n => Dir(string.Join('/', deep.Split('/')[..n]))),
            Regular(deep + "/leaf", "deep")]));

        Assert.Equal(UnpackAction.Skipped, entries[0].Action);
        Assert.Contains("longer than NAME_MAX (255)", entries[0].Reason);
        Assert.Equal(UnpackAction.Created, entries[^1].Action);
        Assert.Equal(deep.Length + 5, entries[^1].Path!.Length);
        Assert.Equal("deep", ReadText(deep + "/leaf"));
        AssertContained(unpacked: true);
    }

    [Fact]
    public void Unpack_NonUtf8Names_AreCreatedByteForByte()
    {
        string latin1 = "caf\u00e9"; // the byte 0xE9, as the reader holds it
        Unpack(NewcArchive.Write(Regular(latin1, "latin-1"), Regular("gr\u00c3\u00bc\u00c3\u009f", "utf-8"))); // "grüß" as UTF-8 bytes held as Latin-1

        string listing = EifTests.Shared.TestImages.Run(Encoding.Latin1, "find", _out, "-mindepth", "1", "-printf", "%P\\n");
        Assert.Equal(["caf\u00e9", "gr\u00c3\u00bc\u00c3\u009f"], listing.Split('\n', StringSplitOptions.RemoveEmptyEntries).Order(StringComparer.Ordinal));
        Assert.Equal("utf-8", ReadText("grüß")); // .NET writes the name as UTF-8: the same bytes
        AssertContained(unpacked: true);
    }

    [Fact]
    public void Unpack_ExistingDestination_IsRefusedAndLeftAlone()
    {
        Directory.CreateDirectory(_out);
        File.WriteAllText(Path.Combine(_out, "mine"), "mine");

        var ex = Assert.Throws<IOException>(() => Unpack(NewcArchive.Write(Regular("mine", "theirs"))));

        Assert.Contains("already exists", ex.Message);
        Assert.Equal("mine", File.ReadAllText(Path.Combine(_out, "mine")));
        AssertContained(unpacked: true);
    }

    [Fact]
    public void Commit_DestinationAppearedMeanwhile_IsNotReplacedAndDisposeRemovesTheTemporaryFolder()
    {
        using var cpio = new CpioReader(new MemoryStream(NewcArchive.Write(Regular("f", "x"))), "test archive");
        RamdiskUnpack staged = RamdiskUnpacker.Stage(cpio, "test archive", _out);
        Assert.True(Directory.Exists(staged.TemporaryPath));
        Assert.StartsWith(Path.Combine(_sandbox, ".out.tmp-"), staged.TemporaryPath);
        Directory.CreateDirectory(_out); // an empty folder: rename(2) alone would replace it

        Assert.Throws<IOException>(staged.Commit);
        staged.Dispose();

        Assert.False(Directory.Exists(staged.TemporaryPath));
        Assert.Empty(Directory.EnumerateFileSystemEntries(_out));
        AssertContained(unpacked: true);
    }

    [Fact]
    public void Unpack_Entries_CarryNameOffsetAndHash()
    {
        var entries = Unpack(NewcArchive.Write(Dir("d"), Regular("d/f", "hello")));

        Assert.Equal([0, 1], entries.Select(e => e.Index));
        Assert.Equal(0, entries[0].Offset);
        Assert.True(entries[1].Offset > 0);
        Assert.Equal(Hex(SHA256.HashData("hello"u8)), Hex(entries[1].File.Sha256!));
        Assert.Null(entries[0].File.Sha256);
        AssertContained(unpacked: true);
    }

    // ---- helpers -------------------------------------------------------------------------------------------------

    private IReadOnlyList<UnpackedEntry> Unpack(byte[] archive, RamdiskUnpackOptions? options = null)
    {
        using var cpio = new CpioReader(new MemoryStream(archive), "test archive");
        return RamdiskUnpacker.Unpack(cpio, "test archive", _out, options);
    }

    private static byte[] Devices() => NewcArchive.Write(
        Dir("dev"),
        new CpioEntry("dev/null", CpioKind.CharDevice, 0x1B6, 0, 0, Time, 0, RdevMajor: 1, RdevMinor: 3),
        new CpioEntry("dev/big", CpioKind.BlockDevice, 0x1A0, 0, 6, Time, 0, RdevMajor: 259, RdevMinor: 300000),
        new CpioEntry("dev/fifo", CpioKind.Fifo, 0x1A4, 0, 0, Time, 0));

    private static CpioEntry Dir(string name, int mode = 0x1ED, long mtime = Time) => new(name, CpioKind.Directory, mode, 0, 0, mtime, 0);

    private static CpioEntry Regular(string name, string text, int mode = 0x1A4, long uid = 0, long gid = 0, long mtime = Time, object? inode = null, int links = 0)
    {
        byte[] data = Encoding.Latin1.GetBytes(text);
        return new CpioEntry(name, CpioKind.File, mode, uid, gid, mtime, data.Length, Data: data, Inode: inode, LinkCount: links);
    }

    private static CpioEntry Symlink(string name, string target, long mtime = Time) =>
        new(name, CpioKind.Symlink, 0x1FF, 0, 0, mtime, Encoding.Latin1.GetByteCount(target), Data: Encoding.Latin1.GetBytes(target));


    // Hand-written newc for what the writer refuses (an empty name): header, name, NUL, padding, data, padding.
    private static byte[] RawArchive(params (string Name, int Mode, byte[] Data)[] entries)
    {
        var output = new MemoryStream();
        void Pad()
        {
            while (output.Length % 4 != 0)
                output.WriteByte(0);
        }

        uint inode = 1;
        foreach (var (name, mode, data) in entries.Append((CpioReader.TrailerName, 0, [])))
        {
            byte[] nameBytes = Encoding.Latin1.GetBytes(name);
            output.Write(CpioArchiveStream.EncodeHeader(inode++, mode, 0, 0, 1, Time, data.Length, 0, 0, nameBytes.Length + 1));
            output.Write(nameBytes);
            output.WriteByte(0);
            Pad();
            output.Write(data);
            Pad();
        }

        return output.ToArray();
    }

    private string Host(string relative) => Path.Combine(_out, relative);

    private string ReadText(string relative) => System.IO.File.ReadAllText(Host(relative));

    private Posix.Status? Lstat(string relative, bool mayBeMissing = false)
    {
        Posix.Status? status = Posix.Lstat(Posix.PathBytes(Host(relative)), relative);
        if (!mayBeMissing)
            Assert.NotNull(status);
        return status;
    }

    private static string Hex(byte[] bytes) => Convert.ToHexString(bytes).ToLowerInvariant();

    // The sandbox less 'out': every entry with its type, mode, size, mtime and content (or link target). Walked by
    // hand, never into a symlink.
    private List<string> Snapshot()
    {
        var lines = new List<string>();
        void Walk(string folder)
        {
            foreach (string path in Directory.EnumerateFileSystemEntries(folder).Order(StringComparer.Ordinal))
            {
                if (path == _out)
                    continue;
                var info = new FileInfo(path);
                Posix.Status status = Posix.Lstat(Posix.PathBytes(path), path)!.Value;
                string content = info.LinkTarget is { } target ? "-> " + target
                    : status.IsDirectory ? "dir"
                    : Hex(SHA256.HashData(System.IO.File.ReadAllBytes(path)));
                lines.Add(string.Create(CultureInfo.InvariantCulture, $"{Path.GetRelativePath(_sandbox, path)} {status.Mode:x} {status.Size} {status.ModTime} {status.LinkCount} {content}"));
                if (status.IsDirectory)
                    Walk(path);
            }
        }

        Walk(_sandbox);
        return lines;
    }

    // Nothing outside 'out' changed: the sandbox holds the sentinels, unchanged, and 'out' only if the unpack
    // succeeded (never a temporary folder), and /tmp holds nothing named like the corpus' targets.
    private void AssertContained(bool unpacked)
    {
        Assert.Equal(_before, Snapshot());
        string[] expected = unpacked ? ["out", "sentinel-dir", "sentinel.txt"] : ["sentinel-dir", "sentinel.txt"];
        Assert.Equal(expected, Directory.EnumerateFileSystemEntries(_sandbox).Select(Path.GetFileName).Order(StringComparer.Ordinal));
        Assert.Empty(Directory.EnumerateFileSystemEntries("/tmp", _marker + "*"));
        Assert.Empty(Directory.EnumerateFileSystemEntries("/", _marker + "*"));
    }
}

using System.Diagnostics;
using System.Runtime.Versioning;

namespace EnclaveInit.Tests;

/// <summary>
/// A fake enclave root in a temporary folder, laid out as the two ramdisks unpack (spec builder.md §2-§4): cmd, env,
/// workdir, user at the top and the image under rootfs/, here Debian's static busybox with a few applet links, an
/// /etc/passwd with the user <c>app</c> (uid 1000) and an /etc/group where <c>app</c> is also in <c>staff</c> (50).
/// The init runs on it in its test mode (EIF_INIT_TEST=1, EIF_INIT_ROOT): not PID 1, a plain chroot, no mounts.
/// </summary>
[SupportedOSPlatform("linux")]
internal sealed class FakeEnclave : IDisposable
{
    public const string Busybox = "/bin/busybox";
    private static readonly string[] Applets = ["sh", "echo", "env", "id", "pwd", "sleep", "cat", "stat", "ls"];

    public FakeEnclave()
    {
        Root = Directory.CreateTempSubdirectory("enclave-init-root").FullName;
        foreach (string dir in new[] { "bin", "etc", "dev", "app/work", "home/app", "root" })
            Directory.CreateDirectory(Path.Combine(RootFs, dir));
        string busybox = Path.Combine(RootFs, "bin", "busybox");
        File.Copy(Busybox, busybox);
        File.SetUnixFileMode(busybox, (UnixFileMode)0b111_101_101); // 0755
        foreach (string applet in Applets)
            File.CreateSymbolicLink(Path.Combine(RootFs, "bin", applet), "busybox");
        // A non-interactive shell gives background jobs /dev/null as stdin (POSIX "Asynchronous Lists"); without
        // mounts there is no devtmpfs, so the fake root brings its own node (char 1:3, devices.txt).
        Run(Busybox, "mknod", "-m", "666", Path.Combine(RootFs, "dev", "null"), "c", "1", "3");

        File.WriteAllText(Path.Combine(RootFs, "etc", "passwd"),
            "root:x:0:0:root:/root:/bin/sh\n" +
            "app:x:1000:1000:App:/home/app:/bin/sh\n");
        File.WriteAllText(Path.Combine(RootFs, "etc", "group"),
            "root:x:0:\n" +
            "staff:x:50:bob,app\n" +
            "app:x:1000:\n");
    }

    public string Root { get; }

    public string RootFs => Path.Combine(Root, "rootfs");

    /// <summary>Skips the test, with the reason, unless it runs as root with Debian's static busybox installed.</summary>
    public static void RequireRootAndBusybox()
    {
        if (!Environment.IsPrivilegedProcess)
            Assert.Skip("needs root: the init chroots into a fake root and switches to uid 1000 (CI runs as root)");
        if (!File.Exists(Busybox))
            Assert.Skip($"{Busybox} is missing: install busybox-static (tools/provision does)");
        if (ElfProgramHeaders.NeedsLoader(Busybox))
            Assert.Skip($"{Busybox} is dynamically linked (Debian's 'busybox'); the chroot needs busybox-static (tools/provision installs it)");
    }

    /// <summary>Writes a ramdisk file (cmd, env, workdir, user) as the builder does: every element followed by '\n'.</summary>
    public void WriteLines(string name, params string[] lines) =>
        File.WriteAllText(Path.Combine(Root, name), string.Concat(lines.Select(l => l + "\n")));

    /// <summary>Writes an executable shell script into the image.</summary>
    public void WriteScript(string pathInImage, string text)
    {
        string path = Path.Combine(RootFs, pathInImage.TrimStart('/'));
        File.WriteAllText(path, text);
        File.SetUnixFileMode(path, (UnixFileMode)0b111_101_101); // 0755
    }

    /// <summary>Runs the init in its test mode on this root, with a 30 s limit.</summary>
    public ProcessRun RunInit(string init, IReadOnlyDictionary<string, string?>? extraEnv = null, Action<Process, OutputLines>? whileRunning = null)
    {
        var env = new Dictionary<string, string?>
        {
            ["EIF_INIT_TEST"] = "1",
            ["EIF_INIT_ROOT"] = Root,
            ["EIF_INIT_HEARTBEAT"] = null,
            ["EIF_INIT_MOUNTS"] = null,
        };
        foreach (var (name, value) in extraEnv ?? new Dictionary<string, string?>())
            env[name] = value;
        return InitBuild.Run(init, [], env, TimeSpan.FromSeconds(30), whileRunning);
    }

    public void Dispose() => Directory.Delete(Root, recursive: true);

    private static void Run(string program, params string[] args)
    {
        var run = InitBuild.Run(program, args, new Dictionary<string, string?>(), TimeSpan.FromSeconds(30));
        Assert.True(run.ExitCode == 0, $"{program} {string.Join(' ', args)} failed:\n{run.Output}");
    }
}

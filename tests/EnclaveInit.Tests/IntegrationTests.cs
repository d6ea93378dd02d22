using System.Runtime.InteropServices;
using System.Runtime.Versioning;

namespace EnclaveInit.Tests;

/// <summary>
/// The built init run as a non-PID-1 process in its test mode on a fake root (issue 5 "Done when"): argv, env,
/// working directory, user and groups, orphan reaping, the exit status line, signal forwarding, and one clear
/// "enclave: " line for each failure. Needs root (chroot, setuid) and busybox-static; skips with the reason otherwise.
/// </summary>
[SupportedOSPlatform("linux")]
public class IntegrationTests
{
    private const string ExitLine3 = "enclave: command exited with status 3";

    // The image's command: prints what it received, leaves an orphan behind (the inner subshell, whose parent exits at
    // once, so the init inherits it as the subreaper), and outlives it.
    private const string RunScript = """
        #!/bin/sh
        echo "arg0=[$0]"
        for a in "$@"; do echo "arg=[$a]"; done
        echo "GREETING=[$GREETING]"
        echo "EQUALS=[$EQUALS]"
        echo "SPACES=[$SPACES]"
        echo "EMPTY=[$EMPTY]"
        echo "HOME=[$HOME]"
        echo "pwd=[$(pwd)]"
        echo "id=[$(id)]"
        ( (sleep 0.5; echo orphan-done) & )
        sleep 1
        exit 3
        """;

    private static readonly string[] Env =
    [
        "PATH=/app:/bin",
        "GREETING=Hello from the enclave side!",
        "EQUALS=a=b==c",
        "SPACES=  two  spaces  ",
        "EMPTY=",
    ];

    [Fact]
    public void Run_ImageCommand_GetsArgvEnvWorkdirUserAndReapsTheOrphan()
    {
        using var enclave = NewEnclave();
        enclave.WriteScript("app/run.sh", RunScript);
        // argv[0] without a '/': found through the image's PATH (/app), not a fixed one.
        enclave.WriteLines("cmd", "run.sh", "hello world", "", "x=y", "  padded  ");
        enclave.WriteLines("env", Env);
        enclave.WriteLines("workdir", "/app/work");
        enclave.WriteLines("user", "app");

        var run = enclave.RunInit(InitBuild.SharedInit);

        string output = run.Output;
        Assert.True(run.ExitCode == 3, $"exit code {run.ExitCode}, expected 3:\n{output}");
        Assert.Equal(ExitLine3, run.Lines[^1]);
        string[] expectedInOrder =
        [
            "arg0=[/app/run.sh]",
            "arg=[hello world]",
            "arg=[]",
            "arg=[x=y]",
            "arg=[  padded  ]",
            "GREETING=[Hello from the enclave side!]",
            "EQUALS=[a=b==c]",
            "SPACES=[  two  spaces  ]",
            "EMPTY=[]",
            "HOME=[/home/app]", // not in the image's env: from /etc/passwd
            "pwd=[/app/work]",
        ];
        Assert.Equal(expectedInOrder, run.Lines.Take(expectedInOrder.Length));

        string id = Assert.Single(run.Lines, l => l.StartsWith("id=[", StringComparison.Ordinal));
        Assert.Contains("uid=1000(app)", id, StringComparison.Ordinal);
        Assert.Contains("gid=1000(app)", id, StringComparison.Ordinal);
        Assert.Matches(@"groups=.*\b50\(staff\)", id); // the supplementary group from /etc/group

        Assert.Contains("orphan-done", run.Lines);
        Assert.Contains(run.Lines, l => System.Text.RegularExpressions.Regex.IsMatch(l, @"^enclave: reaped orphan PID \d+$"));
        Assert.Single(run.Lines, l => l.StartsWith("enclave: command ", StringComparison.Ordinal));
    }

    [Fact]
    public void Run_EnvCommand_SeesExactlyTheImageEnvPlusHome()
    {
        using var enclave = NewEnclave();
        enclave.WriteLines("cmd", "env");
        enclave.WriteLines("env", Env);
        enclave.WriteLines("user", "app");

        var run = enclave.RunInit(InitBuild.SharedInit);

        Assert.True(run.ExitCode == 0, run.Output);
        // busybox env prints its environ in order: the image's entries, then the HOME the init added.
        Assert.Equal([.. Env, "HOME=/home/app"], run.Lines.SkipLast(1));
        Assert.Equal("enclave: command exited with status 0", run.Lines[^1]);
    }

    [Fact]
    public void Run_NoUserNoWorkdirNoPath_RunsAsRootInSlashWithDockersDefaults()
    {
        using var enclave = NewEnclave();
        enclave.WriteLines("cmd", "sh", "-c", "echo \"$(id -u):$(id -g) $(pwd) HOME=$HOME PATH=$PATH\"");
        enclave.WriteLines("env", "A=1");

        var run = enclave.RunInit(InitBuild.SharedInit);

        Assert.True(run.ExitCode == 0, run.Output);
        Assert.Equal("0:0 / HOME=/root PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", run.Lines[0]);
    }

    [Fact]
    public void Run_MissingCmd_SaysSoAndEndsWithoutRunningAnything()
    {
        using var enclave = NewEnclave();
        enclave.WriteLines("env", Env);

        var run = enclave.RunInit(InitBuild.SharedInit);

        Assert.NotEqual(0, run.ExitCode);
        string line = Assert.Single(run.Lines);
        Assert.StartsWith($"enclave: cannot read {enclave.Root}/cmd: No such file or directory", line, StringComparison.Ordinal);
        Assert.EndsWith("; ending the enclave", line, StringComparison.Ordinal);
    }

    [Fact]
    public void Run_UnknownUserName_SaysSoAndEndsWithoutRunningTheCommand()
    {
        using var enclave = NewEnclave();
        enclave.WriteLines("cmd", "echo", "should not run");
        enclave.WriteLines("env", Env);
        enclave.WriteLines("user", "nosuch");

        var run = enclave.RunInit(InitBuild.SharedInit);

        Assert.NotEqual(0, run.ExitCode);
        Assert.Equal(["enclave: unknown user 'nosuch': no such name in the image's /etc/passwd; ending the enclave"], run.Lines);
    }

    [Fact]
    public void Run_CommandThatDoesNotExist_SaysCannotRunAndExits127()
    {
        using var enclave = NewEnclave();
        enclave.WriteLines("cmd", "no-such-program", "arg");
        enclave.WriteLines("env", Env);

        var run = enclave.RunInit(InitBuild.SharedInit);

        Assert.Equal(127, run.ExitCode);
        Assert.Equal(["enclave: cannot run 'no-such-program': No such file or directory", "enclave: command exited with status 127"], run.Lines);
    }

    [Fact]
    public void Run_CommandKilledBySignal_SaysWhichSignal()
    {
        using var enclave = NewEnclave();
        enclave.WriteLines("cmd", "/bin/sh", "-c", "kill -KILL $$");
        enclave.WriteLines("env", Env);

        var run = enclave.RunInit(InitBuild.SharedInit);

        Assert.Equal(128 + 9, run.ExitCode);
        Assert.Equal("enclave: command killed by signal 9 (SIGKILL)", run.Lines[^1]);
    }

    [Fact]
    public void Run_SigtermToTheInit_IsForwardedToTheCommand()
    {
        using var enclave = NewEnclave();
        enclave.WriteScript("app/trap.sh", """
            #!/bin/sh
            trap 'echo got SIGTERM; exit 0' TERM
            echo ready
            while true; do sleep 0.1; done
            """);
        enclave.WriteLines("cmd", "/app/trap.sh");
        enclave.WriteLines("env", Env);

        var run = enclave.RunInit(InitBuild.SharedInit, whileRunning: (process, lines) =>
        {
            lines.WaitFor("ready", TimeSpan.FromSeconds(20)); // the trap is set
            Assert.Equal(0, Kill(process.Id, SigTerm));
        });

        Assert.True(run.ExitCode == 0, run.Output);
        Assert.Contains("got SIGTERM", run.Lines);
        Assert.Equal("enclave: command exited with status 0", run.Lines[^1]);
    }

    [Fact]
    public void Run_WithMounts_MountsInsideTheRootAndLeavesNothingMountedOnTheHost()
    {
        using var enclave = NewEnclave();
        Directory.Delete(Path.Combine(enclave.RootFs, "dev"), recursive: true); // created by the init when missing
        enclave.WriteLines("cmd", "sh", "-c",
            "stat -c '%a %n' /tmp /run /dev/shm; [ -c /dev/null ] && echo dev-ok; [ -d /proc/self/fd ] && echo proc-ok; " +
            "[ -d /sys/kernel ] && echo sys-ok; [ -e /dev/pts/ptmx ] && echo pts-ok; [ -L /dev/stdout ] && echo links-ok");
        enclave.WriteLines("env", Env);

        var run = enclave.RunInit(InitBuild.SharedInit, new Dictionary<string, string?> { ["EIF_INIT_MOUNTS"] = "1" });

        Assert.True(run.ExitCode == 0, run.Output);
        Assert.Equal(["1777 /tmp", "755 /run", "1777 /dev/shm", "dev-ok", "proc-ok", "sys-ok", "pts-ok", "links-ok", "enclave: command exited with status 0"], run.Lines);
        // The mounts were made in a private mount namespace: none is visible here.
        Assert.DoesNotContain(enclave.Root, File.ReadAllText("/proc/self/mountinfo"), StringComparison.Ordinal);
    }

    [Fact]
    public void Run_HeartbeatWithNoParent_IsOneLineAndTheCommandStillRuns()
    {
        using var enclave = NewEnclave();
        enclave.WriteLines("cmd", "echo", "still running");
        enclave.WriteLines("env", Env);

        var run = enclave.RunInit(InitBuild.SharedInit, new Dictionary<string, string?> { ["EIF_INIT_HEARTBEAT"] = "1" });

        Assert.True(run.ExitCode == 0, run.Output);
        Assert.Equal(3, run.Lines.Count);
        Assert.StartsWith("enclave: heartbeat to the parent (vsock 3:9000) failed: ", run.Lines[0], StringComparison.Ordinal);
        Assert.EndsWith("; continuing", run.Lines[0], StringComparison.Ordinal);
        Assert.Equal(["still running", "enclave: command exited with status 0"], run.Lines.Skip(1));
    }

    [Fact]
    public void Run_NotPid1AndNotTestMode_RefusesToStart()
    {
        // Without the test mode the init would mount over /dev, chroot and reboot: it must refuse. Run without
        // privileges all the same (setpriv to nobody), so that a regression cannot reboot the machine running the tests.
        InitBuild.RequireCompiler();
        string init = InitBuild.SharedInit;
        string? setpriv = InitBuild.Which("setpriv");
        if (Environment.IsPrivilegedProcess && setpriv is null)
            Assert.Skip("needs setpriv (util-linux) to run the init without root");
        var env = new Dictionary<string, string?> { ["EIF_INIT_TEST"] = null, ["EIF_INIT_ROOT"] = null };
        var run = Environment.IsPrivilegedProcess
            ? InitBuild.Run(setpriv!, ["--reuid=65534", "--regid=65534", "--clear-groups", init], env, TimeSpan.FromSeconds(30))
            : InitBuild.Run(init, [], env, TimeSpan.FromSeconds(30));

        Assert.Equal(2, run.ExitCode);
        Assert.Equal(["enclave: this is the enclave's init: it runs as PID 1 (or with EIF_INIT_TEST=1 for tests); not starting"], run.Lines);
    }

    private const int SigTerm = 15; // signal(7), x86-64 and arm64

    [DllImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static extern int Kill(int pid, int sig);

    private static FakeEnclave NewEnclave()
    {
        InitBuild.RequireCompiler();
        FakeEnclave.RequireRootAndBusybox();
        return new FakeEnclave();
    }
}

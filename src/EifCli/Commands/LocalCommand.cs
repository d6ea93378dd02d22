using System.CommandLine;
using System.Diagnostics;
using EifBuilder.Runtime;
using EifFormat.Json;
using Launcher.Local;

namespace EifCli;

/// <summary>
/// <c>eif local</c>: what booting enclaves on this machine (run-enclave --local) needs. <c>doctor</c> reports the QEMU
/// found (and every candidate rejected), whether KVM works (a bounded probe) and the default runtime; <c>setup</c>
/// builds QEMU with the nitro-enclave machine (tools/qemu/build, embedded) and installs the runtime.
/// </summary>
internal sealed class LocalCommand : Command
{
    internal LocalCommand(TextWriter stdout, TextWriter stderr)
        : base("local", "Check (doctor) or prepare (setup) this machine for run-enclave --local: QEMU's nitro-enclave machine, KVM, the default runtime.")
    {
        Subcommands.Add(new DoctorCommand(stdout));
        Subcommands.Add(new SetupCommand(stdout, stderr));
    }

    private sealed class DoctorCommand : Command
    {
        internal DoctorCommand(TextWriter stdout)
            : base("doctor", "Report what run-enclave --local would use, as JSON; exit 0 when it can boot an enclave.")
        {
            SetAction(_ =>
            {
                QemuSearch search = QemuInstallation.Search();
                string? runtime = DefaultRuntime.Locate();
                string? kernel = runtime is null ? null : Path.Join(runtime, "bzImage");
                JValue kvm;
                if (!File.Exists("/dev/kvm"))
                {
                    kvm = JObject.Of(("Usable", JBool.False), ("Reason", new JString("/dev/kvm does not exist")));
                }
                else if (kernel is null || (search.Installation?.Path ?? search.Candidates.FirstOrDefault(c => c.Origin == QemuOrigin.Path)?.Path) is not { } qemu)
                {
                    kvm = JObject.Of(("Usable", JNull.Instance), ("Reason", new JString("not probed: the probe boots the default runtime's kernel (eif runtime install) with a QEMU")));
                }
                else
                {
                    KvmVerdict verdict = KvmProbe.Check(qemu, kernel);
                    kvm = JObject.Of(("Usable", JBool.From(verdict.Usable)), ("Reason", new JString(verdict.Reason)), ("Probed", JBool.From(!verdict.FromCache)));
                }

                JValue qemuReport = search.Installation is { } found
                    ? JObject.Of(("Path", new JString(found.Path)), ("Version", new JString(found.Version)), ("NitroEnclaveMachine", JBool.True))
                    : JObject.Of(("Path", JNull.Instance), ("NitroEnclaveMachine", JBool.False), ("Fix", new JString("tools/qemu/build, or eif local setup")));
                var candidates = new JArray(search.Candidates.Select(c => (JValue)JObject.Of(
                    ("Path", new JString(c.Path)), ("Origin", new JString(c.Origin.ToString())), ("Rejected", c.Rejection is null ? JNull.Instance : new JString(c.Rejection)))));
                bool ready = search.Installation is not null;
                Output.WriteJson(stdout, JObject.Of(
                    ("Ready", JBool.From(ready)),
                    ("Qemu", qemuReport),
                    ("QemuCandidates", candidates),
                    ("Kvm", kvm),
                    ("Runtime", runtime is null
                        ? JObject.Of(("Installed", JBool.False), ("Fix", new JString("eif runtime install")))
                        : JObject.Of(("Installed", JBool.True), ("Directory", new JString(runtime)))),
                    ("EnclavesDirectory", new JString(Launcher.Supervision.EnclaveDirectory.Default))));
                return ready ? ExitCode.Success : ExitCode.ImageUnavailable;
            });
        }
    }

    private sealed class SetupCommand : Command
    {
        private readonly Option<int?> _jobs = new("--jobs") { Description = "Parallel build jobs (default: the number of CPUs).", HelpName = "N" };

        internal SetupCommand(TextWriter stdout, TextWriter stderr)
            : base("setup", "Build QEMU with the nitro-enclave machine into ~/.cache/eif/qemu (once; needs root for its apt packages) and install the default runtime.")
        {
            Options.Add(_jobs);
            SetAction(result =>
            {
                using Stream? script = typeof(LocalCommand).Assembly.GetManifestResourceStream("qemu/build")
                    ?? throw new CliException(ExitCode.InternalError, "this eif has no QEMU build script embedded (tools/qemu/build)");
                string work = Directory.CreateTempSubdirectory("eif-qemu-setup-").FullName;
                try
                {
                    string path = Path.Join(work, "build");
                    using (var file = File.Create(path))
                        script.CopyTo(file);
                    var start = new ProcessStartInfo("bash") { UseShellExecute = false };
                    start.ArgumentList.Add(path);
                    if (result.GetValue(_jobs) is { } jobs)
                    {
                        start.ArgumentList.Add("--jobs");
                        start.ArgumentList.Add(jobs.ToString(System.Globalization.CultureInfo.InvariantCulture));
                    }

                    using Process build = Process.Start(start)!;
                    build.WaitForExit();
                    if (build.ExitCode != 0)
                        throw new CliException(ExitCode.ImageUnavailable, $"building QEMU failed (exit {build.ExitCode}); its last line above names the step");
                }
                finally
                {
                    Directory.Delete(work, recursive: true);
                }

                return Cli.Run(["runtime", "install"], stdout, stderr);
            });
        }
    }
}

namespace Launcher.Supervision;

/// <summary>Launch and supervise in one step: what run-enclave's enclave process does, for programs that launch enclaves themselves.</summary>
public static class EnclaveHost
{
    /// <summary>
    /// Launches <paramref name="request"/> and starts a supervisor for it in <paramref name="enclavesFolder"/>, so that
    /// <c>eif describe-enclaves</c>, <c>terminate-enclave</c> and <c>console</c> see it. The caller then calls
    /// <see cref="EnclaveSupervisor.Run"/> (or <see cref="EnclaveSupervisor.Stop"/>) from this same process.
    /// </summary>
    /// <exception cref="EnclaveException">The launch failed (nothing stays allocated).</exception>
    public static EnclaveSupervisor LaunchSupervised(NitroPlatform platform, LaunchRequest request, string enclavesFolder, Action<string>? log = null)
    {
        RunningEnclave running = new EnclaveLauncher(platform) { Log = log }.Launch(request);
        try
        {
            EnclaveDirectory.Ensure(enclavesFolder);
            string socket = EnclaveDirectory.SocketPath(enclavesFolder, running.SlotUid);
            string? consoleLog = request.DebugMode ? Path.ChangeExtension(socket, ".console.log") : null;
            var supervisor = new EnclaveSupervisor(running, socket, consoleLog, log);
            supervisor.Start();
            return supervisor;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            running.Dispose();
            throw ex as EnclaveException ?? new EnclaveException(LaunchError.SocketError, $"cannot set up the enclave process's socket in {enclavesFolder}: {ex.Message}", innerException: ex);
        }
    }

    /// <summary>
    /// Boots <paramref name="request"/> on QEMU's nitro-enclave machine (see <see cref="Local.LocalEnclave"/>) and starts a
    /// supervisor for it in <paramref name="enclavesFolder"/>, so the verbs list and stop it like a Nitro enclave.
    /// </summary>
    /// <exception cref="EnclaveException">The launch failed (QEMU is gone, nothing stays behind).</exception>
    public static EnclaveSupervisor LaunchLocalSupervised(Local.LocalLaunchRequest request, string enclavesFolder, Action<string>? log = null)
    {
        Local.QemuInstallation qemu = Local.LocalPlatform.RequireQemu();
        string accelerator = Local.LocalPlatform.ResolveAccelerator(request.Accelerator, qemu, request.EifPath, log);
        Local.LocalEnclave enclave = Local.LocalEnclave.Launch(request, qemu, accelerator, enclavesFolder, new Host.HostInfo().InstanceId(), log);
        try
        {
            string socket = EnclaveDirectory.SocketPathForId(enclavesFolder, enclave.Describe().EnclaveId)!;
            var supervisor = new EnclaveSupervisor(enclave, socket, consoleLogPath: null, log);
            supervisor.Start();
            return supervisor;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            enclave.Dispose();
            throw ex as EnclaveException ?? new EnclaveException(LaunchError.SocketError, $"cannot set up the enclave process's socket in {enclavesFolder}: {ex.Message}", innerException: ex);
        }
    }
}

namespace Launcher;

/// <summary>
/// nitro-cli's stable error codes (<c>src/common/mod.rs</c> <c>NitroCliErrorEnum</c>, numbered in
/// <c>src/common/document_errors.rs</c>): the value is the number in <c>[ Exx ]</c> and the process exit code.
/// Names as upstream.
/// </summary>
public enum LaunchError
{
    /// <summary>E00: catch-all.</summary>
    UnspecifiedError = 0,

    /// <summary>E01.</summary>
    MissingArgument = 1,

    /// <summary>E02.</summary>
    ConflictingArgument = 2,

    /// <summary>E03: an invalid argument (e.g. a CID the driver would refuse).</summary>
    InvalidArgument = 3,

    /// <summary>E04.</summary>
    SocketPairCreationFailure = 4,

    /// <summary>E05: the enclave process could not be started.</summary>
    ProcessSpawnFailure = 5,

    /// <summary>E06.</summary>
    DaemonizeProcessFailure = 6,

    /// <summary>E07: the enclave sockets folder cannot be read.</summary>
    ReadFromDiskFailure = 7,

    /// <summary>E08.</summary>
    UnusableConnectionError = 8,

    /// <summary>E09.</summary>
    SocketCloseError = 9,

    /// <summary>E10.</summary>
    SocketConnectTimeoutError = 10,

    /// <summary>E11: any other socket error.</summary>
    SocketError = 11,

    /// <summary>E12.</summary>
    EpollError = 12,

    /// <summary>E13.</summary>
    InotifyError = 13,

    /// <summary>E14: an unknown command reached an enclave process.</summary>
    InvalidCommand = 14,

    /// <summary>E15.</summary>
    LockAcquireFailure = 15,

    /// <summary>E16.</summary>
    ThreadJoinFailure = 16,

    /// <summary>E17.</summary>
    SerdeError = 17,

    /// <summary>E18.</summary>
    FilePermissionsError = 18,

    /// <summary>E19: a file operation failed (the EIF, the device, the CPU pool file).</summary>
    FileOperationFailure = 19,

    /// <summary>E20: the same CPU twice (and, here, a CPU set that is not made of whole cores).</summary>
    InvalidCpuConfiguration = 20,

    /// <summary>E21: a CPU not in the pool.</summary>
    NoSuchCpuAvailableInPool = 21,

    /// <summary>E22: more CPUs than the pool holds.</summary>
    InsufficientCpus = 22,

    /// <summary>E23.</summary>
    MalformedCpuId = 23,

    /// <summary>E24: a malformed CPU list interval.</summary>
    CpuError = 24,

    /// <summary>E25: an unknown hugepage size.</summary>
    NoSuchHugepageFlag = 25,

    /// <summary>E26: too little memory requested for the EIF.</summary>
    InsufficientMemoryRequested = 26,

    /// <summary>E27: not enough free hugepage memory.</summary>
    InsufficientMemoryAvailable = 27,

    /// <summary>E28.</summary>
    InvalidEnclaveFd = 28,

    /// <summary>E29: an ioctl failed (with the driver's reason).</summary>
    IoctlFailure = 29,

    /// <summary>E30.</summary>
    IoctlImageLoadInfoFailure = 30,

    /// <summary>E31.</summary>
    IoctlSetMemoryRegionFailure = 31,

    /// <summary>E32.</summary>
    IoctlAddVcpuFailure = 32,

    /// <summary>E33.</summary>
    IoctlEnclaveStartFailure = 33,

    /// <summary>E34: the EIF does not fit after the load offset.</summary>
    MemoryOverflow = 34,

    /// <summary>E35: the EIF could not be read into enclave memory (here also: the EIF is invalid).</summary>
    EifParsingError = 35,

    /// <summary>E36: no heartbeat from the enclave.</summary>
    EnclaveBootFailure = 36,

    /// <summary>E37.</summary>
    EnclaveEventWaitError = 37,

    /// <summary>E38.</summary>
    EnclaveProcessCommandNotExecuted = 38,

    /// <summary>E39: an enclave process could not be reached.</summary>
    EnclaveProcessConnectionFailure = 39,

    /// <summary>E40: no enclave with that ID or name.</summary>
    SocketPathNotFound = 40,

    /// <summary>E41.</summary>
    EnclaveProcessSendReplyFailure = 41,

    /// <summary>E42: mmap failed.</summary>
    EnclaveMmapError = 42,

    /// <summary>E43: munmap failed.</summary>
    EnclaveMunmapError = 43,

    /// <summary>E44: the console cannot be reached (or the enclave is not in debug mode).</summary>
    EnclaveConsoleConnectionFailure = 44,

    /// <summary>E45.</summary>
    EnclaveConsoleReadError = 45,

    /// <summary>E46.</summary>
    EnclaveConsoleWriteOutputError = 46,

    /// <summary>E47.</summary>
    IntegerParsingError = 47,

    /// <summary>E48.</summary>
    EifBuildingError = 48,

    /// <summary>E49.</summary>
    DockerImageBuildError = 49,

    /// <summary>E50.</summary>
    DockerImagePullError = 50,

    /// <summary>E51.</summary>
    ArtifactsPathNotSet = 51,

    /// <summary>E52.</summary>
    BlobsPathNotSet = 52,

    /// <summary>E53.</summary>
    ClockSkewError = 53,

    /// <summary>E54.</summary>
    SignalMaskingError = 54,

    /// <summary>E55.</summary>
    SignalUnmaskingError = 55,

    /// <summary>E56.</summary>
    LoggerError = 56,

    /// <summary>E57.</summary>
    HasherError = 57,

    /// <summary>E58: no enclave has that name, or the name is invalid.</summary>
    EnclaveNamingError = 58,

    /// <summary>E59: the EIF's signing certificate or signature does not check out.</summary>
    EifSignatureCheckerError = 59,
}

/// <summary>The titles nitro-cli gives each code (the first sentence of <c>document_errors.rs</c>).</summary>
public static class LaunchErrors
{
    /// <summary><c>E26</c> for <see cref="LaunchError.InsufficientMemoryRequested"/>.</summary>
    public static string Code(LaunchError error) => $"E{(int)error:D2}";

    /// <summary>The short title, e.g. "Insufficient memory requested".</summary>
    public static string Title(LaunchError error) => error switch
    {
        LaunchError.UnspecifiedError => "Unspecified error",
        LaunchError.MissingArgument => "Missing mandatory argument",
        LaunchError.ConflictingArgument => "Conflicting arguments",
        LaunchError.InvalidArgument => "Invalid argument provided",
        LaunchError.SocketPairCreationFailure => "Socket pair creation failure",
        LaunchError.ProcessSpawnFailure => "Process spawn failure",
        LaunchError.DaemonizeProcessFailure => "Daemonize process failure",
        LaunchError.ReadFromDiskFailure => "Read from disk failure",
        LaunchError.UnusableConnectionError => "Unusable connection error",
        LaunchError.SocketCloseError => "Socket close error",
        LaunchError.SocketConnectTimeoutError => "Socket connect set timeout error",
        LaunchError.SocketError => "Socket error",
        LaunchError.EpollError => "Epoll error",
        LaunchError.InotifyError => "Inotify error",
        LaunchError.InvalidCommand => "Invalid command",
        LaunchError.LockAcquireFailure => "Lock acquire failure",
        LaunchError.ThreadJoinFailure => "Thread join failure",
        LaunchError.SerdeError => "Serde error",
        LaunchError.FilePermissionsError => "File permissions error",
        LaunchError.FileOperationFailure => "File operation failure",
        LaunchError.InvalidCpuConfiguration => "Invalid CPU configuration",
        LaunchError.NoSuchCpuAvailableInPool => "No such CPU available in the pool",
        LaunchError.InsufficientCpus => "Insufficient CPUs available in the pool",
        LaunchError.MalformedCpuId => "Malformed CPU ID error",
        LaunchError.CpuError => "CPU error",
        LaunchError.NoSuchHugepageFlag => "No such hugepage flag error",
        LaunchError.InsufficientMemoryRequested => "Insufficient memory requested",
        LaunchError.InsufficientMemoryAvailable => "Insufficient memory available",
        LaunchError.InvalidEnclaveFd => "Invalid enclave descriptor",
        LaunchError.IoctlFailure => "Ioctl failure",
        LaunchError.IoctlImageLoadInfoFailure => "Ioctl image get load info failure",
        LaunchError.IoctlSetMemoryRegionFailure => "Ioctl set memory region failure",
        LaunchError.IoctlAddVcpuFailure => "Ioctl add vCPU failure",
        LaunchError.IoctlEnclaveStartFailure => "Ioctl start enclave failure",
        LaunchError.MemoryOverflow => "Memory overflow",
        LaunchError.EifParsingError => "EIF file parsing error",
        LaunchError.EnclaveBootFailure => "Enclave boot failure",
        LaunchError.EnclaveEventWaitError => "Enclave event wait error",
        LaunchError.EnclaveProcessCommandNotExecuted => "Enclave process command not executed error",
        LaunchError.EnclaveProcessConnectionFailure => "Enclave process connection failure",
        LaunchError.SocketPathNotFound => "Socket path not found",
        LaunchError.EnclaveProcessSendReplyFailure => "Enclave process send reply failure",
        LaunchError.EnclaveMmapError => "Enclave mmap error",
        LaunchError.EnclaveMunmapError => "Enclave munmap error",
        LaunchError.EnclaveConsoleConnectionFailure => "Enclave console connection failure",
        LaunchError.EnclaveConsoleReadError => "Enclave console read error",
        LaunchError.EnclaveConsoleWriteOutputError => "Enclave console write output error",
        LaunchError.IntegerParsingError => "Integer parsing error",
        LaunchError.EifBuildingError => "EIF building error",
        LaunchError.DockerImageBuildError => "Docker image build error",
        LaunchError.DockerImagePullError => "Docker image pull error",
        LaunchError.ArtifactsPathNotSet => "Artifacts path environment variable not set",
        LaunchError.BlobsPathNotSet => "Blobs path environment variable not set",
        LaunchError.ClockSkewError => "Clock skew error",
        LaunchError.SignalMaskingError => "Signal masking error",
        LaunchError.SignalUnmaskingError => "Signal unmasking error",
        LaunchError.LoggerError => "Logger error",
        LaunchError.HasherError => "Hasher error",
        LaunchError.EnclaveNamingError => "Naming error",
        LaunchError.EifSignatureCheckerError => "EIF signature checker error",
        _ => throw new ArgumentOutOfRangeException(nameof(error)),
    };
}

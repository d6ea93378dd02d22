namespace Launcher;

/// <summary>
/// The one exception type of the launcher: an operation on an enclave failed. <see cref="Error"/> is nitro-cli's
/// code (the CLI prints <c>[ Exx ] message</c> and exits with the number); <see cref="Errno"/> is the OS error when
/// a system call failed, and <see cref="DriverError"/> its <c>NE_ERR_*</c> meaning.
/// </summary>
/// <remarks>
/// Derives from <see cref="IOException"/> (STYLE.md rule 4): every failure here is a failure of the system around
/// the caller. Caller misuse raises <see cref="ArgumentException"/> or <see cref="InvalidOperationException"/>.
/// </remarks>
public sealed class EnclaveException : IOException
{
    /// <summary>Creates the exception.</summary>
    public EnclaveException(LaunchError error, string message, int errno = 0, Exception? innerException = null)
        : base(message, innerException)
    {
        Error = error;
        Errno = errno;
    }

    /// <summary>nitro-cli's error code; also the exit code of the verbs.</summary>
    public LaunchError Error { get; }

    /// <summary>The errno of the failed system call, or 0.</summary>
    public int Errno { get; }

    /// <summary>The driver's own error for errno 256–275, else null.</summary>
    public NeError? DriverError => NeErrors.FromErrno(Errno);

    /// <summary>nitro-cli's one-line form: <c>[ E26 ] Insufficient memory requested. …</c>.</summary>
    public string ToCliLine() => $"[ {LaunchErrors.Code(Error)} ] {LaunchErrors.Title(Error)}. {Message}";

    /// <summary>A failed ioctl (nitro-cli reports every ioctl failure as E29, with the driver's sentence).</summary>
    internal static EnclaveException Ioctl(string operation, int errno) =>
        new(LaunchError.IoctlFailure, $"{operation} failed: {NeErrors.Describe(errno)}", errno);
}

namespace EifCli;

/// <summary>
/// The exit codes of <c>eif</c>, in one place (README "Exit codes" lists the same table).
/// </summary>
internal static class ExitCode
{
    /// <summary>Success; for verify-eif: every check held.</summary>
    internal const int Success = 0;

    /// <summary>An unexpected internal error (a bug: please report it).</summary>
    internal const int InternalError = 1;

    /// <summary>The command line is wrong: unknown verb or option, missing or conflicting arguments, bad value.</summary>
    internal const int Usage = 2;

    /// <summary>An input is invalid: a malformed EIF, certificate, metadata file, kernel config, PCR list.</summary>
    internal const int InvalidInput = 3;

    /// <summary>A check failed on a well-formed file: CRC mismatch, PCR mismatch.</summary>
    internal const int VerificationFailed = 4;

    /// <summary>A file could not be read or written (missing, permissions, disk full).</summary>
    internal const int IoError = 5;

    /// <summary>An image cannot be had: the Docker daemon or registry is unreachable, refuses, or has no such image; a Dockerfile build failed.</summary>
    internal const int ImageUnavailable = 6;

    /// <summary>run-enclave --local --timeout: the enclave was still running when the time was up (as timeout(1) says).</summary>
    internal const int TimedOut = 124;

    /// <summary>Interrupted (SIGINT), as shells report 128 + 2.</summary>
    internal const int Interrupted = 130;
}

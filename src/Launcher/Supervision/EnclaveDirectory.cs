using System.Globalization;
using Launcher.Interop;

namespace Launcher.Supervision;

/// <summary>
/// Where supervisors listen: one Unix socket per enclave, <c>&lt;slot uid hex&gt;.sock</c>, in a folder only its owner
/// can enter (0700; sockets 0600). Root: <c>/run/eif/enclaves</c>; others: <c>$XDG_RUNTIME_DIR/eif/enclaves</c>, else
/// <c>/tmp/eif-&lt;uid&gt;/enclaves</c>; <see cref="Variable"/> overrides. Not nitro-cli's <c>/run/nitro_enclaves</c>:
/// its enclave processes speak another protocol, and both tools can run side by side.
/// </summary>
public static class EnclaveDirectory
{
    /// <summary>The environment variable that overrides the folder.</summary>
    public const string Variable = "EIF_ENCLAVES_DIR";

    /// <summary>The folder for this user.</summary>
    public static string Default
    {
        get
        {
            if (Environment.GetEnvironmentVariable(Variable) is { Length: > 0 } overridden)
                return overridden;
            uint uid = Libc.GetEuid();
            if (uid == 0)
                return "/run/eif/enclaves";
            if (Environment.GetEnvironmentVariable("XDG_RUNTIME_DIR") is { Length: > 0 } runtime)
                return Path.Join(runtime, "eif", "enclaves");
            return Path.Join(Path.GetTempPath(), $"eif-{uid.ToString(CultureInfo.InvariantCulture)}", "enclaves");
        }
    }

    /// <summary>Creates the folder (and its parents) with owner-only access.</summary>
    public static string Ensure(string folder)
    {
        Directory.CreateDirectory(folder, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        File.SetUnixFileMode(folder, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        return folder;
    }

    /// <summary>The socket of the enclave with slot uid <paramref name="slotUid"/>.</summary>
    public static string SocketPath(string folder, ulong slotUid) => Path.Join(folder, $"{slotUid:x}.sock");

    /// <summary>
    /// The socket named by an enclave ID: the part after the last <c>-enc</c> is the slot uid in hex (nitro-cli
    /// names its sockets the same way). Null when the ID does not have that form.
    /// </summary>
    public static string? SocketPathForId(string folder, string enclaveId)
    {
        int at = enclaveId.LastIndexOf("-enc", StringComparison.Ordinal);
        string hex = at < 0 ? string.Empty : enclaveId[(at + 4)..];
        return hex.Length is > 0 and <= 16 && ulong.TryParse(hex, NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out ulong slot)
            ? SocketPath(folder, slot)
            : null;
    }

    /// <summary>The sockets in the folder (none when it does not exist).</summary>
    /// <exception cref="EnclaveException">E07 when the folder cannot be read.</exception>
    public static IReadOnlyList<string> Sockets(string folder)
    {
        try
        {
            return Directory.Exists(folder) ? Directory.GetFiles(folder, "*.sock").Order(StringComparer.Ordinal).ToList() : [];
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            throw new EnclaveException(LaunchError.ReadFromDiskFailure, $"cannot read the enclaves folder {folder}: {ex.Message}", innerException: ex);
        }
    }
}

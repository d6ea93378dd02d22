namespace EifCli;

/// <summary>The project's own enclave runtime (kernel, init, modules), when installed; a later issue provides it.</summary>
internal static class DefaultRuntime
{
    /// <summary>The runtime's blobs folder for this machine, or null when none is installed.</summary>
    internal static string? Locate() => null;
}

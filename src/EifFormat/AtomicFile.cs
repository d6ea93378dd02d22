namespace EifFormat;

/// <summary>
/// Writes a file through a temporary file in the same folder that is renamed over the target on success, so a
/// failure never leaves a partial file behind and readers never see one.
/// </summary>
public static class AtomicFile
{
    /// <summary>
    /// Calls <paramref name="write"/> with a new, empty, seekable stream (see <see cref="WriteBehindStream"/>); on
    /// success flushes it to disk and renames it
    /// to <paramref name="path"/> (replacing any file there); on failure deletes it and rethrows.
    /// </summary>
    /// <exception cref="IOException">The temporary file cannot be created, written or renamed.</exception>
    public static T Write<T>(string path, Func<Stream, T> write)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        ArgumentNullException.ThrowIfNull(write);
        string full = Path.GetFullPath(path);
        string directory = Path.GetDirectoryName(full) ?? throw new IOException($"{path}: has no parent folder");
        if (!Directory.Exists(directory))
            throw new DirectoryNotFoundException($"{path}: folder '{directory}' does not exist");
        string temporary = Path.Combine(directory, $".{Path.GetFileName(full)}.{Environment.ProcessId}.{Guid.NewGuid():N}.tmp");
        try
        {
            T result;
            using (var file = new FileStream(temporary, FileMode.CreateNew, FileAccess.ReadWrite, FileShare.None, bufferSize: 1))
            {
                using var writeBehind = new WriteBehindStream(file);
                result = write(writeBehind);
                writeBehind.Complete();
                file.Flush(flushToDisk: true);
            }

            File.Move(temporary, full, overwrite: true);
            return result;
        }
        catch
        {
            TryDelete(temporary);
            throw;
        }
    }

    private static void TryDelete(string path)
    {
        try
        {
            File.Delete(path);
        }
        catch (IOException)
        {
            // The original failure is what matters; a leftover temporary file is named so it is recognisable.
        }
        catch (UnauthorizedAccessException)
        {
        }
    }
}

namespace EifFormat;

/// <summary>The one exception type of this library: the bytes of an EIF, or an input to build one, are invalid.</summary>
/// <remarks>
/// Caller misuse raises <see cref="ArgumentException"/> or <see cref="InvalidOperationException"/>;
/// I/O errors pass through as <see cref="IOException"/>.
/// InvalidDataException, the natural base (STYLE.md rule 4), is sealed; deriving from IOException instead would let
/// callers' I/O handlers swallow format errors, so the base is <see cref="Exception"/>.
/// </remarks>
public sealed class EifFormatException : Exception
{
    /// <summary>Creates the exception.</summary>
    public EifFormatException(EifFormatError error, string message, Exception? innerException = null)
        : base(message, innerException)
    {
        Error = error;
    }

    private EifFormatException(EifFormatError error, string message, string path, Exception? innerException)
        : base(message, innerException)
    {
        Error = error;
        Path = path;
    }

    /// <summary>What is wrong; stable across releases.</summary>
    public EifFormatError Error { get; }

    /// <summary>The file the error is about, when known.</summary>
    public string? Path { get; }

    /// <summary>The same error, its message prefixed with the file it is about.</summary>
    public EifFormatException WithPath(string path) =>
        Path is not null ? this : new EifFormatException(Error, $"{path}: {Message}", path, InnerException);
}

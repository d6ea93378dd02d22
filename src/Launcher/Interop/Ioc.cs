namespace Launcher.Interop;

/// <summary>
/// The kernel's ioctl number encoding, <c>include/uapi/asm-generic/ioctl.h</c> (x86_64 and arm64 both use the generic
/// layout): <c>_IOC(dir, type, nr, size) = dir &lt;&lt; 30 | size &lt;&lt; 16 | type &lt;&lt; 8 | nr</c>.
/// Numbers are derived from the mirror structs here, never typed as hex (STYLE.md rule 11).
/// </summary>
internal static class Ioc
{
    // _IOC_NRBITS, _IOC_TYPEBITS, _IOC_SIZEBITS (asm-generic/ioctl.h); _IOC_DIRBITS is the remaining 2.
    private const int NrBits = 8;
    private const int TypeBits = 8;
    private const int SizeBits = 14;

    private const int NrShift = 0;
    private const int TypeShift = NrShift + NrBits;
    private const int SizeShift = TypeShift + TypeBits;
    private const int DirShift = SizeShift + SizeBits;

    // _IOC_NONE, _IOC_WRITE, _IOC_READ.
    private const uint DirNone = 0;
    private const uint DirWrite = 1;
    private const uint DirRead = 2;

    /// <summary><c>_IO(type, nr)</c>.</summary>
    internal static uint None(byte type, byte nr) => Encode(DirNone, type, nr, 0);

    /// <summary><c>_IOR(type, nr, size)</c>: the kernel writes the argument.</summary>
    internal static uint Read(byte type, byte nr, int size) => Encode(DirRead, type, nr, size);

    /// <summary><c>_IOW(type, nr, size)</c>: the kernel reads the argument.</summary>
    internal static uint Write(byte type, byte nr, int size) => Encode(DirWrite, type, nr, size);

    /// <summary><c>_IOWR(type, nr, size)</c>: both.</summary>
    internal static uint ReadWrite(byte type, byte nr, int size) => Encode(DirRead | DirWrite, type, nr, size);

    private static uint Encode(uint direction, byte type, byte nr, int size)
    {
        // _IOC_TYPECHECK: the size must fit its 14 bits.
        ArgumentOutOfRangeException.ThrowIfNegative(size);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(size, 1 << SizeBits);
        return (direction << DirShift) | ((uint)size << SizeShift) | ((uint)type << TypeShift) | ((uint)nr << NrShift);
    }
}

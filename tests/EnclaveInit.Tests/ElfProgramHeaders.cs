using System.Buffers.Binary;

namespace EnclaveInit.Tests;

/// <summary>
/// The program header types of an ELF file, read by hand (elf(5), /usr/include/elf.h): what <c>file</c> looks at to say
/// "statically linked". A binary that needs a dynamic loader names it in a PT_INTERP header; the enclave has no
/// loader, so its /init must have none (aws/aws-nitro-enclaves-sdk-bootstrap#49).
/// </summary>
internal static class ElfProgramHeaders
{
    /// <summary>PT_INTERP (elf.h): the program interpreter, i.e. the dynamic loader.</summary>
    public const uint Interpreter = 3;

    // e_ident (elf.h): EI_CLASS at 4 (ELFCLASS32 = 1, ELFCLASS64 = 2), EI_DATA at 5 (ELFDATA2LSB = 1, ELFDATA2MSB = 2).
    private const int ClassOffset = 4;
    private const int DataOffset = 5;

    /// <summary>The p_type of every program header. Throws <see cref="InvalidDataException"/> for a file that is not ELF or is cut short.</summary>
    public static IReadOnlyList<uint> Types(string path)
    {
        byte[] file = File.ReadAllBytes(path);
        if (file.Length < 0x40 || file[0] != 0x7F || file[1] != (byte)'E' || file[2] != (byte)'L' || file[3] != (byte)'F')
            throw new InvalidDataException($"'{path}' is not an ELF file.");
        bool is64 = file[ClassOffset] switch
        {
            1 => false,
            2 => true,
            _ => throw new InvalidDataException($"'{path}' has an unknown ELF class {file[ClassOffset]}."),
        };
        bool little = file[DataOffset] switch
        {
            1 => true,
            2 => false,
            _ => throw new InvalidDataException($"'{path}' has an unknown ELF data encoding {file[DataOffset]}."),
        };

        // Elf64_Ehdr: e_phoff u64 at 0x20, e_phentsize u16 at 0x36, e_phnum u16 at 0x38.
        // Elf32_Ehdr: e_phoff u32 at 0x1C, e_phentsize u16 at 0x2A, e_phnum u16 at 0x2C.
        ulong phoff = is64 ? U64(file, 0x20, little) : U32(file, 0x1C, little);
        int phentsize = U16(file, is64 ? 0x36 : 0x2A, little);
        int phnum = U16(file, is64 ? 0x38 : 0x2C, little);
        if (phentsize < sizeof(uint) || phoff > (ulong)file.Length || (ulong)phnum * (ulong)phentsize > (ulong)file.Length - phoff)
            throw new InvalidDataException($"'{path}': the program header table (offset {phoff}, {phnum} × {phentsize} bytes) lies outside the file ({file.Length} bytes).");

        var types = new List<uint>(phnum);
        for (int i = 0; i < phnum; i++)
            types.Add(U32(file, (int)phoff + i * phentsize, little)); // p_type is the first field of both layouts
        return types;
    }

    /// <summary>Whether the file asks for a dynamic loader (has a PT_INTERP program header).</summary>
    public static bool NeedsLoader(string path) => Types(path).Contains(Interpreter);

    private static ushort U16(byte[] b, int at, bool little) =>
        little ? BinaryPrimitives.ReadUInt16LittleEndian(b.AsSpan(at)) : BinaryPrimitives.ReadUInt16BigEndian(b.AsSpan(at));

    private static uint U32(byte[] b, int at, bool little) =>
        little ? BinaryPrimitives.ReadUInt32LittleEndian(b.AsSpan(at)) : BinaryPrimitives.ReadUInt32BigEndian(b.AsSpan(at));

    private static ulong U64(byte[] b, int at, bool little) =>
        little ? BinaryPrimitives.ReadUInt64LittleEndian(b.AsSpan(at)) : BinaryPrimitives.ReadUInt64BigEndian(b.AsSpan(at));
}

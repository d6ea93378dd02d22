using System.Buffers.Binary;
using System.Text;

namespace EifBuilder.Runtime;

/// <summary>
/// Reads what a kernel module needs from its own ELF: the <c>.modinfo</c> section's <c>depends=</c> and <c>name=</c>
/// entries (NUL-separated <c>key=value</c> strings, include/linux/moduleparam.h MODULE_INFO), so the runtime can load
/// a module's dependencies first without depmod's modules.dep, which a kernel package does not ship.
/// </summary>
public static class KernelModules
{
    /// <summary>The module's name and the names of the modules it depends on.</summary>
    /// <exception cref="EnclaveBuildException"><see cref="BuildError.MissingBlob"/>: not an ELF64 little-endian module with a .modinfo section.</exception>
    public static (string Name, IReadOnlyList<string> Depends) Read(ReadOnlySpan<byte> elf, string what)
    {
        // ELF64 header (elf(5)): e_ident[16], then e_shoff at 0x28, e_shentsize 0x3A, e_shnum 0x3C, e_shstrndx 0x3E.
        if (elf.Length < 64 || !elf.StartsWith((ReadOnlySpan<byte>)[0x7F, (byte)'E', (byte)'L', (byte)'F']) || elf[4] != 2 || elf[5] != 1)
            throw Invalid(what, "is not a 64-bit little-endian ELF file");
        long shoff = (long)BinaryPrimitives.ReadUInt64LittleEndian(elf[0x28..]);
        int shentsize = BinaryPrimitives.ReadUInt16LittleEndian(elf[0x3A..]);
        int shnum = BinaryPrimitives.ReadUInt16LittleEndian(elf[0x3C..]);
        int shstrndx = BinaryPrimitives.ReadUInt16LittleEndian(elf[0x3E..]);
        if (shentsize < 64 || shnum == 0 || shstrndx >= shnum || shoff < 0 || shoff > elf.Length || (long)shnum * shentsize > elf.Length - shoff)
            throw Invalid(what, "has a section table outside the file");

        ReadOnlySpan<byte> Section(ReadOnlySpan<byte> file, int index)
        {
            var header = file.Slice((int)(shoff + (long)index * shentsize), 64);
            long offset = (long)BinaryPrimitives.ReadUInt64LittleEndian(header[0x18..]);
            long size = (long)BinaryPrimitives.ReadUInt64LittleEndian(header[0x20..]);
            if (offset < 0 || size < 0 || offset > file.Length || size > file.Length - offset)
                throw Invalid(what, $"has section {index} outside the file");
            return file.Slice((int)offset, (int)size);
        }

        var names = Section(elf, shstrndx);
        for (int i = 0; i < shnum; i++)
        {
            var header = elf.Slice((int)(shoff + (long)i * shentsize), 64);
            int nameOffset = (int)BinaryPrimitives.ReadUInt32LittleEndian(header);
            if (nameOffset >= names.Length)
                continue;
            var rest = names[nameOffset..];
            int end = rest.IndexOf((byte)0);
            if (end < 0 || !rest[..end].SequenceEqual(".modinfo"u8))
                continue;
            string name = string.Empty;
            var depends = new List<string>();
            foreach (string entry in Encoding.ASCII.GetString(Section(elf, i)).Split('\0'))
            {
                if (entry.StartsWith("depends=", StringComparison.Ordinal))
                    depends.AddRange(entry["depends=".Length..].Split(',', StringSplitOptions.RemoveEmptyEntries));
                else if (entry.StartsWith("name=", StringComparison.Ordinal))
                    name = entry["name=".Length..];
            }

            return (name, depends);
        }

        throw Invalid(what, "has no .modinfo section: not a kernel module");
    }

    /// <summary>
    /// The modules to load, dependencies before dependents, for <paramref name="wanted"/> (a module's file name is
    /// its name with '-' and '_' interchangeable, as modprobe treats them).
    /// </summary>
    /// <exception cref="EnclaveBuildException"><see cref="BuildError.MissingBlob"/>: a module or a dependency is missing, or the dependencies loop.</exception>
    public static IReadOnlyList<string> LoadOrder(IEnumerable<string> wanted, Func<string, IReadOnlyList<string>?> dependsOf)
    {
        var order = new List<string>();
        var state = new Dictionary<string, bool>(StringComparer.Ordinal); // false: visiting, true: done
        void Visit(string module, string neededBy)
        {
            string key = module.Replace('-', '_');
            if (state.TryGetValue(key, out bool done))
            {
                if (!done)
                    throw new EnclaveBuildException(BuildError.MissingBlob, $"kernel module dependencies loop through '{key}'");
                return;
            }

            state[key] = false;
            var depends = dependsOf(key) ?? throw new EnclaveBuildException(BuildError.MissingBlob, $"kernel module '{key}' (needed by {neededBy}) is not in the kernel package");
            foreach (string dependency in depends)
                Visit(dependency, key);
            state[key] = true;
            order.Add(key);
        }

        foreach (string module in wanted)
            Visit(module, "the runtime");
        return order;
    }

    private static EnclaveBuildException Invalid(string what, string detail) => new(BuildError.MissingBlob, $"{what}: {detail}");
}

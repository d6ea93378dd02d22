using System.IO.Compression;
using EifBuilder.Cpio;

namespace EifFuzz;

/// <summary>
/// Seeds with real newc ramdisks, made at start-up with the product's own writers (the golden files' ramdisks are raw
/// bytes, so mutations of them never reach the cpio reader): one EIF with a plain archive holding every entry type
/// (directory, file, symlink, devices, a FIFO, a hard-link pair), one with the same archive gzip-compressed and one
/// zstd-compressed. Built the same way on every machine, so a seed still picks the same inputs.
/// </summary>
internal static class SyntheticCorpus
{
    internal static IEnumerable<CorpusFile> Build()
    {
        string folder = Directory.CreateTempSubdirectory("eif-fuzz-corpus-").FullName;
        try
        {
            string kernel = Path.Combine(folder, "bzImage");
            File.WriteAllBytes(kernel, new byte[512]);
            byte[] plain = Archive();
            var files = new List<CorpusFile>();
            foreach (var (name, ramdisk) in new[] { ("plain", plain), ("gzip", Gzip(plain)), ("zstd", Zstd(plain)) })
            {
                string input = Path.Combine(folder, $"{name}.cpio");
                File.WriteAllBytes(input, ramdisk);
                string output = Path.Combine(folder, $"{name}.eif");
                int code = EifCli.Cli.Run(
                    ["build-eif", "--kernel", kernel, "--cmdline", "console=ttyS0", "--ramdisk", input, "--output", output, "--build-time", "2000-01-01T00:00:00Z"],
                    TextWriter.Null, TextWriter.Null);
                if (code != 0)
                    throw new InvalidOperationException($"build-eif of the synthetic {name} seed failed with exit code {code}");
                files.Add(new CorpusFile($"synthetic-{name}-cpio.eif", File.ReadAllBytes(output)));
            }

            return files;
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }

    private static byte[] Archive()
    {
        object inode = new();
        CpioEntry[] entries =
        [
            new("bin", CpioKind.Directory, 0x1ED, 0, 0, 946684800, 0),
            new("bin/busybox", CpioKind.File, 0x1ED, 0, 0, 946684800, 12, Data: "#!/bin/sh\n:\n"u8.ToArray()),
            new("bin/sh", CpioKind.Symlink, 0x1FF, 0, 0, 946684800, 7, Data: "busybox"u8.ToArray()),
            new("dev", CpioKind.Directory, 0x1ED, 0, 0, 946684800, 0),
            new("dev/console", CpioKind.CharDevice, 0x180, 0, 0, 0, 0, RdevMajor: 5, RdevMinor: 1),
            new("dev/sda", CpioKind.BlockDevice, 0x1B0, 0, 6, 0, 0, RdevMajor: 8, RdevMinor: 0),
            new("run/fifo", CpioKind.Fifo, 0x1A4, 0, 0, 0, 0),
            new("a", CpioKind.File, 0x1A4, 1000, 1000, 1, 5, Data: "hello"u8.ToArray(), Inode: inode, LinkCount: 2),
            new("b", CpioKind.File, 0x1A4, 1000, 1000, 1, 5, Data: "hello"u8.ToArray(), Inode: inode, LinkCount: 2),
        ];
        using var output = new MemoryStream();
        using (var archive = new CpioArchiveStream(entries))
            archive.CopyTo(output);
        return output.ToArray();
    }

    private static byte[] Gzip(byte[] data)
    {
        using var output = new MemoryStream();
        using (var gzip = new GZipStream(output, CompressionLevel.Optimal, leaveOpen: true))
            gzip.Write(data);
        return output.ToArray();
    }

    private static byte[] Zstd(byte[] data)
    {
        using var output = new MemoryStream();
        using (var zstd = new SharpCompress.Compressors.ZStandard.CompressionStream(output, 3, 1 << 17, true))
            zstd.Write(data);
        return output.ToArray();
    }
}

using System.Text;

namespace EifTests.Shared;

/// <summary>Ramdisks entry by entry, for the tests: the product's newc reader, and the writer's layout checked.</summary>
public static class NewcArchive
{
    public sealed record Entry(string Name, uint Ino, uint Mode, uint Uid, uint Gid, uint NLink, uint MTime, byte[] Data, uint DevMajor, uint DevMinor, uint RdevMajor, uint RdevMinor)
    {
        public uint Type => Mode & 0xF000;

        public uint Permissions => Mode & 0xFFF;

        public string Text => Encoding.Latin1.GetString(Data);
    }

    /// <summary>The entries of an uncompressed archive, read with the product's streaming reader (EifBuilder.Cpio.CpioReader), plus the checks the writer's layout promises: one archive, zero-padded to a multiple of 512.</summary>
    /// <summary>The newc archive the product's writer makes of <paramref name="entries"/>.</summary>
    public static byte[] Write(params IEnumerable<EifBuilder.Cpio.CpioEntry> entries)
    {
        using var output = new MemoryStream();
        using (var archive = new EifBuilder.Cpio.CpioArchiveStream(entries))
            archive.CopyTo(output);
        return output.ToArray();
    }

    /// <summary><paramref name="data"/> gzip-compressed (as a gzipped initramfs).</summary>
    public static byte[] Gzip(byte[] data)
    {
        using var output = new MemoryStream();
        using (var gzip = new System.IO.Compression.GZipStream(output, System.IO.Compression.CompressionLevel.Fastest, leaveOpen: true))
            gzip.Write(data);
        return output.ToArray();
    }

    /// <summary><paramref name="data"/> zstd-compressed (level 3).</summary>
    public static byte[] Zstd(byte[] data)
    {
        using var output = new MemoryStream();
        using (var zstd = new SharpCompress.Compressors.ZStandard.CompressionStream(output, 3, 1 << 17, true))
            zstd.Write(data);
        return output.ToArray();
    }

    public static List<Entry> Read(byte[] archive)
    {
        var entries = new List<Entry>();
        using var reader = new EifBuilder.Cpio.CpioReader(new MemoryStream(archive), "test archive");
        while (reader.Next() is { } record)
        {
            using var data = new MemoryStream();
            reader.OpenData().CopyTo(data);
            entries.Add(new Entry(record.Name, record.Inode, record.RawMode, record.Uid, record.Gid, record.LinkCount, record.ModTime, data.ToArray(),
                record.DevMajor, record.DevMinor, record.RdevMajor, record.RdevMinor));
        }

        Assert.Equal(1, reader.ArchivesRead);
        Assert.Equal(0, archive.Length % 512);
        return entries;
    }
}

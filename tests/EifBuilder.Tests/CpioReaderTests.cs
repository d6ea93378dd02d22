using EifTests.Shared;
using System.IO.Compression;
using System.Text;
using EifBuilder;
using EifBuilder.Cpio;

namespace EifBuilder.Tests;

/// <summary>
/// The streaming newc reader: what the writer writes reads back field for field, compressed and concatenated archives
/// read as the kernel reads them, and every malformed archive of the corpus is one clear error naming the field.
/// </summary>
public sealed class CpioReaderTests
{
    private static readonly CpioEntry[] Sample =
    [
        new("bin", CpioKind.Directory, 0x1ED, 0, 0, 946684800, 0),
        new("bin/busybox", CpioKind.File, 0x1ED, 0, 0, 946684800, 5, Data: "hello"u8.ToArray()),
        new("bin/sh", CpioKind.Symlink, 0x1FF, 0, 0, 946684800, 7, Data: "busybox"u8.ToArray()),
        new("dev/console", CpioKind.CharDevice, 0x180, 0, 5, 1, 0, RdevMajor: 5, RdevMinor: 1),
        new("home/user/data.txt", CpioKind.File, 0x1A4, 1000, 1000, 1700000000, 3, Data: "abc"u8.ToArray()),
    ];

    [Fact]
    public void Read_WhatTheWriterWrote_EveryField()
    {
        byte[] archive = NewcArchive.Write(Sample);
        using var reader = new CpioReader(new MemoryStream(archive), "test");
        var records = ReadAll(reader);

        Assert.Equal(RamdiskCompression.None, reader.Compression);
        Assert.Equal(Sample.Select(e => e.Name), records.Select(r => r.Record.Name));
        Assert.Equal(Sample.Select(e => (CpioKind?)e.Kind), records.Select(r => r.Record.Kind));
        Assert.Equal(Sample.Select(e => e.Mode), records.Select(r => r.Record.Permissions));
        Assert.Equal(Sample.Select(e => (uint)e.Uid), records.Select(r => r.Record.Uid));
        Assert.Equal(Sample.Select(e => (uint)e.ModTime), records.Select(r => r.Record.ModTime));
        Assert.Equal("hello", records[1].Text);
        Assert.Equal("busybox", records[2].Text);
        Assert.Equal((5u, 1u), (records[3].Record.RdevMajor, records[3].Record.RdevMinor));
        Assert.Equal(CpioArchiveStream.FirstInode, records[0].Record.Inode);
        Assert.Equal(1, reader.ArchivesRead);
    }

    [Fact]
    public void Read_SkippingData_StillFindsEveryEntry()
    {
        using var reader = new CpioReader(new MemoryStream(NewcArchive.Write(Sample)), "test");
        int count = 0;
        while (reader.Next() is not null)
            count++;
        Assert.Equal(Sample.Length, count);
    }

    [Theory]
    [InlineData("gzip")]
    [InlineData("zstd")]
    public void Read_Compressed_IsDetectedByItsMagic(string format)
    {
        byte[] plain = NewcArchive.Write(Sample);
        byte[] compressed = format == "gzip" ? NewcArchive.Gzip(plain) : NewcArchive.Zstd(plain);
        using var reader = new CpioReader(new MemoryStream(compressed), "test");
        var records = ReadAll(reader);
        Assert.Equal(format == "gzip" ? RamdiskCompression.Gzip : RamdiskCompression.Zstd, reader.Compression);
        Assert.Equal(Sample.Select(e => e.Name), records.Select(r => r.Record.Name));
        Assert.Equal("hello", records[1].Text);
    }

    [Fact]
    public void Read_ConcatenatedArchives_PlainThenGzip_ReadsBoth()
    {
        byte[] first = NewcArchive.Write(Sample[..2]);
        byte[] second = NewcArchive.Gzip(NewcArchive.Write([new CpioEntry("init", CpioKind.File, 0x1ED, 0, 0, 0, 2, Data: "#!"u8.ToArray())]));
        using var reader = new CpioReader(new MemoryStream([.. first, .. second]), "test");
        var records = ReadAll(reader);
        Assert.Equal(["bin", "bin/busybox", "init"], records.Select(r => r.Record.Name));
        Assert.Equal("#!", records[2].Text);
        Assert.Equal(2, reader.ArchivesRead);
    }

    [Fact]
    public void Read_Newc070702_ChecksTheChecksum()
    {
        byte[] archive = NewcArchive.Write(Sample);
        // Turn the regular file "bin/busybox" (second entry) into 070702 with its right checksum, then a wrong one.
        int at = Find(archive, "bin/busybox") - 110;
        Encoding.ASCII.GetBytes("070702").CopyTo(archive, at);
        uint sum = (uint)"hello"u8.ToArray().Sum(b => b);
        Encoding.ASCII.GetBytes(sum.ToString("x8")).CopyTo(archive, at + 6 + (8 * 12));
        Assert.Equal(Sample.Length, ReadAll(new CpioReader(new MemoryStream(archive), "test")).Count);

        Encoding.ASCII.GetBytes((sum + 1).ToString("x8")).CopyTo(archive, at + 6 + (8 * 12));
        var ex = Assert.Throws<EnclaveBuildException>(() => ReadAll(new CpioReader(new MemoryStream(archive), "test")));
        Assert.Contains($"the checksum of 'bin/busybox' is {sum:x8} (c_check says {sum + 1:x8}", ex.Message);
    }

    [Fact]
    public void Read_ZstdBomb_IsRefusedAfterABoundedAmount()
    {
        // 512 MiB of zeros in one file compress to a few KiB with zstd: far more than 1024 times.
        const long size = 512L << 20;
        using var compressed = new MemoryStream();
        using (var zstd = new SharpCompress.Compressors.ZStandard.CompressionStream(compressed, 3, 1 << 17, true))
        using (var archive = new CpioArchiveStream([new CpioEntry("zeros", CpioKind.File, 0x1A4, 0, 0, 0, size, OpenData: () => new ZeroStream(size))]))
            archive.CopyTo(zstd, 1 << 20);
        byte[] bomb = compressed.ToArray(); // (the compressor closes its output)
        Assert.True(bomb.Length < (1 << 20), $"{bomb.Length} bytes compressed");

        var ex = Assert.Throws<EnclaveBuildException>(() => ReadAll(new CpioReader(new MemoryStream(bomb), "bomb")));

        long limit = (CpioReader.MaxExpansion * bomb.Length) + CpioReader.ExpansionAllowance;
        Assert.Equal(BuildError.InvalidRamdisk, ex.Error);
        Assert.Contains($"bomb: the compressed archive expands to more than {limit} bytes", ex.Message);
    }

    // Reads as LENGTH zero bytes without holding them.
    private sealed class ZeroStream(long size) : Stream
    {
        private readonly long _size = size;
        private long _left = size;

        public override bool CanRead => true;

        public override bool CanSeek => false;

        public override bool CanWrite => false;

        public override long Length => _size;

        public override long Position
        {
            get => _size - _left;
            set => throw new NotSupportedException();
        }

        public override int Read(byte[] buffer, int offset, int count)
        {
            int n = (int)Math.Min(count, _left);
            Array.Clear(buffer, offset, n);
            _left -= n;
            return n;
        }

        public override void Flush()
        {
        }

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();

        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    }

    public static TheoryData<string, string> Corpus => new()
    {
        { "empty", "test: the archive ends inside an entry header (0 of 110 bytes; entry header at offset 0)" },
        { "bad magic", "test: not a newc cpio archive (magic 303730373037, expected 070701" },
        { "old binary cpio", "test: not a newc cpio archive (magic c771" },
        { "truncated header", "test: the archive ends inside an entry header (60 of 110 bytes; entry header at offset 0)" },
        { "non-hex mode", "test: c_mode is not 8 hex digits ('000041zz'; entry header at offset 0)" },
        { "non-hex filesize", "c_filesize is not 8 hex digits ('0000000-'" },
        { "namesize 0", "test: c_namesize is 0 (a name takes 1 to 4096 bytes with its NUL; entry header at offset 0)" },
        { "namesize huge", "test: c_namesize is 4294967295 (a name takes 1 to 4096 bytes with its NUL" },
        { "name without NUL", "test: the name does not end with a NUL (c_namesize 4, last byte 0x6e" },
        { "NUL inside the name", "test: the name has a NUL inside (at byte 1 of c_namesize 4" },
        { "name past the end", "test: the archive ends inside an entry name (3 of c_namesize 4096 bytes" },
        { "size past the end", "test: the archive ends inside the data of 'bin/busybox' (c_filesize 1000000, " },
        { "no trailer", "test: the archive ends inside an entry header (0 of 110 bytes; entry header at offset " },
        { "garbage after the trailer", "test: no entry header here (magic 474152424147" },
        { "corrupt gzip", "test: the compressed data is corrupt" },
        { "070701 with a checksum", "test: c_check is 00000001 in a 070701 entry (it must be 0 without a checksum" },
    };

    [Theory]
    [MemberData(nameof(Corpus))]
    public void Read_MalformedArchive_IsOneErrorNamingTheField(string name, string message)
    {
        byte[] archive = Malformed(name);
        var ex = Assert.Throws<EnclaveBuildException>(() => ReadAll(new CpioReader(new MemoryStream(archive), "test")));
        Assert.Equal(BuildError.InvalidRamdisk, ex.Error);
        Assert.Contains(message, ex.Message);
        Assert.DoesNotContain('\n', ex.Message);
    }

    private static byte[] Malformed(string name)
    {
        byte[] good = NewcArchive.Write(Sample);
        byte[] Patch(int offset, string text)
        {
            byte[] copy = (byte[])good.Clone();
            Encoding.ASCII.GetBytes(text).CopyTo(copy, offset);
            return copy;
        }

        int file = Find(good, "bin/busybox") - 110;
        int trailer = Find(good, CpioReader.TrailerName) - 110;
        return name switch
        {
            "empty" => [],
            "bad magic" => Patch(0, "070707"),
            "old binary cpio" => [0xc7, 0x71, .. good[2..]],
            "truncated header" => good[..60],
            "non-hex mode" => Patch(14, "000041zz"),
            "non-hex filesize" => Patch(6 + (8 * 6), "0000000-"),
            "namesize 0" => Patch(6 + (8 * 11), "00000000"),
            "namesize huge" => Patch(6 + (8 * 11), "ffffffff"),
            "name without NUL" => Patch(110, "bin\x01").Let(a => { Encoding.ASCII.GetBytes("00000004").CopyTo(a, 6 + (8 * 11)); a[113] = (byte)'n'; return a; }),
            "NUL inside the name" => Patch(110, "b\0n\0"),
            "name past the end" => Patch(6 + (8 * 11), "00001000")[..(110 + 3)],
            "size past the end" => Patch(file + 6 + (8 * 6), "000f4240"),
            "no trailer" => good[..trailer],
            "garbage after the trailer" => [.. good, .. "GARBAGE!"u8.ToArray()],
            "corrupt gzip" => NewcArchive.Gzip(good).Let(a => { for (int i = 20; i < 60; i++) a[i] ^= 0x5a; return a; }),
            "070701 with a checksum" => Patch(6 + (8 * 12), "00000001"),
            _ => throw new ArgumentException(name),
        };
    }

    private static int Find(byte[] archive, string name)
    {
        byte[] needle = Encoding.ASCII.GetBytes(name + "\0");
        return archive.AsSpan().IndexOf(needle);
    }




    private static List<(CpioRecord Record, string Text)> ReadAll(CpioReader reader)
    {
        using (reader)
        {
            var records = new List<(CpioRecord, string)>();
            while (reader.Next() is { } record)
            {
                using var data = new MemoryStream();
                reader.OpenData().CopyTo(data);
                records.Add((record, Encoding.Latin1.GetString(data.ToArray())));
            }

            return records;
        }
    }
}

internal static class TestExtensions
{
    internal static T Let<T>(this T value, Func<T, T> change) => change(value);
}

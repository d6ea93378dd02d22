using System.Globalization;
using System.Text;

namespace EifTests.Shared;

/// <summary>A test-side newc reader (independent of the builder's writer), for checking ramdisks entry by entry.</summary>
public static class NewcArchive
{
    public sealed record Entry(string Name, uint Ino, uint Mode, uint Uid, uint Gid, uint NLink, uint MTime, byte[] Data, uint DevMajor, uint DevMinor, uint RdevMajor, uint RdevMinor)
    {
        public uint Type => Mode & 0xF000;

        public uint Permissions => Mode & 0xFFF;

        public string Text => Encoding.Latin1.GetString(Data);
    }

    public static List<Entry> Read(byte[] archive)
    {
        var entries = new List<Entry>();
        int at = 0;
        while (true)
        {
            string magic = Encoding.ASCII.GetString(archive, at, 6);
            Assert.Equal("070701", magic);
            uint Field(int i) => uint.Parse(Encoding.ASCII.GetString(archive, at + 6 + 8 * i, 8), NumberStyles.HexNumber, CultureInfo.InvariantCulture);
            uint nameSize = Field(11), size = Field(6);
            string name = Encoding.Latin1.GetString(archive, at + 110, (int)nameSize - 1);
            Assert.Equal(0, archive[at + 110 + nameSize - 1]);
            int data = Align4(at + 110 + (int)nameSize);
            var entry = new Entry(name, Field(0), Field(1), Field(2), Field(3), Field(4), Field(5), archive[data..(data + (int)size)], Field(7), Field(8), Field(9), Field(10));
            at = Align4(data + (int)size);
            if (name == "TRAILER!!!")
            {
                Assert.Equal(0, archive.Length % 512);
                Assert.All(archive[at..], b => Assert.Equal(0, b));
                return entries;
            }

            entries.Add(entry);
        }
    }

    private static int Align4(int offset) => (offset + 3) & ~3;
}

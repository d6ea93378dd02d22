namespace EifFormat.Tests;

public class GoldenTests
{
    [Theory]
    [MemberData(nameof(Golden.AllCases), MemberType = typeof(Golden))]
    public void Read_GoldenFile_GivesPrintedPcrsAndCrcMatches(string name)
    {
        using var reader = EifReader.Open(Golden.PathOf(name + ".eif"));
        var digests = reader.ComputeDigests();
        var expected = Golden.Pcrs(name);

        Assert.True(digests.CrcMatches);
        foreach (var (key, value) in digests.Measurements.ToHexPairs())
            Assert.Equal(expected[key], value);
        Assert.Equal(expected.Count - 1, digests.Measurements.ToHexPairs().Count); // all but HashAlgorithm
    }

    [Theory]
    [MemberData(nameof(Golden.AllCases), MemberType = typeof(Golden))]
    public void ComputeDigests_WithSectionHashes_GivesEachSectionsSha256InTheSamePass(string name)
    {
        using var reader = EifReader.Open(Golden.PathOf(name + ".eif"));
        EifDigests plain = reader.ComputeDigests();
        EifDigests hashed = reader.ComputeDigests(hashSections: true);

        Assert.Null(plain.SectionSha256);
        Assert.Equal(plain.Measurements.Pcr0, hashed.Measurements.Pcr0);
        Assert.Equal(plain.Measurements.Pcr1, hashed.Measurements.Pcr1);
        Assert.Equal(plain.Measurements.Pcr2, hashed.Measurements.Pcr2);
        Assert.Equal(plain.ComputedCrc, hashed.ComputedCrc);
        Assert.Equal(reader.Sections.Count, hashed.SectionSha256!.Count);
        foreach (EifSection section in reader.Sections)
        {
            using Stream data = reader.OpenSection(section.Index);
            Assert.Equal(System.Security.Cryptography.SHA256.HashData(data), hashed.SectionSha256[section.Index]);
        }
    }

    [Theory]
    [MemberData(nameof(Golden.AllCases), MemberType = typeof(Golden))]
    public void WriteOfRead_GoldenFile_IsByteIdentical(string name)
    {
        byte[] original = Golden.Bytes(name + ".eif");
        using var reader = new EifReader(new MemoryStream(original, writable: false));
        var sections = reader.Sections
            .Select(s => new EifSectionInput(s.Type, EifSectionSource.FromStream(reader.OpenSection(s.Index), $"section {s.Index}", s.Size)))
            .ToList();
        var output = new MemoryStream();

        var result = EifWriter.Write(output, EifHeaderFields.From(reader.Header), sections);

        Assert.Equal(original, output.ToArray());
        Assert.Equal(reader.Header.Crc32, result.Crc32);
    }
}

using System.Text;
using EifFormat.Json;

namespace EifFormat.Tests;

public class MetadataTests
{
    private static EifMetadata Sample(JValue custom) => new(
        "img", "1.0", new EifBuildInfo("2024-01-01T00:00:00+00:00", "eif_build", "0.3.1", "OS", "kernel"), JNull.Instance, custom);

    [Fact]
    public void ToJsonBytes_GoldenMetadataSection_IsByteIdentical()
    {
        // The metadata section of synth_metadata.eif, as eif_build 0.3.1 wrote it.
        using var reader = EifReader.Open(Golden.PathOf("synth_metadata.eif"));
        byte[] stored = reader.MetadataBytes!.Value.ToArray();
        EifMetadata parsed = reader.Metadata!;

        Assert.Equal(stored, parsed.ToJsonBytes());
        Assert.Equal(
            """{"ImageName":"synthetic","ImageVersion":"synthetic","BuildMetadata":{"BuildTime":"2024-01-01T00:00:00+00:00","BuildTool":"eif_build","BuildToolVersion":"0.3.1","OperatingSystem":"OS","KernelVersion":"kernel"},"DockerInfo":null,"CustomMetadata":{"build":42,"owner":"golden","tags":["a","b"]}}""",
            Encoding.UTF8.GetString(stored));
    }

    [Fact]
    public void Parse_NullLiteral_MeansNoMetadata() => Assert.Null(EifMetadata.Parse("null"u8));

    [Fact]
    public void Parse_ExtraKeys_AreIgnored()
    {
        string json = Encoding.UTF8.GetString(Sample(JNull.Instance).ToJsonBytes()).Replace("{\"ImageName\"", "{\"Extra\":[1],\"ImageName\"");
        Assert.Equal("img", EifMetadata.Parse(Encoding.UTF8.GetBytes(json))!.ImageName);
    }

    [Theory]
    [InlineData("ImageName")]
    [InlineData("ImageVersion")]
    [InlineData("BuildMetadata")]
    [InlineData("DockerInfo")]
    [InlineData("CustomMetadata")]
    public void Parse_EachMissingTopLevelKey_IsReported(string key)
    {
        var obj = Sample(JNull.Instance).ToJson();
        var without = new JObject(obj.Properties.Where(p => p.Key != key));
        var ex = Assert.Throws<EifFormatException>(() => EifMetadata.Parse(without.ToCompactUtf8()));
        Assert.Equal(EifFormatError.MissingMetadataKey, ex.Error);
        Assert.Contains($"'{key}'", ex.Message);
    }

    [Fact]
    public void ReadCustomMetadataFile_Limits()
    {
        string dir = Directory.CreateTempSubdirectory("eif-meta").FullName;
        try
        {
            string ok = Path.Combine(dir, "ok.json");
            File.WriteAllText(ok, "[1, 2.50, \"x\"]");
            Assert.Equal("[1,2.5,\"x\"]", SerdeJsonParserRoundTrip(EifMetadata.ReadCustomMetadataFile(ok)));

            string exact = Path.Combine(dir, "exact.json");
            File.WriteAllText(exact, "\"" + new string('a', EifConstants.MaxCustomMetadataSize - 2) + "\"");
            Assert.IsType<JString>(EifMetadata.ReadCustomMetadataFile(exact));

            string big = Path.Combine(dir, "big.json");
            File.WriteAllText(big, "\"" + new string('a', EifConstants.MaxCustomMetadataSize - 1) + "\"");
            var tooBig = Assert.Throws<EifFormatException>(() => EifMetadata.ReadCustomMetadataFile(big));
            Assert.Equal(EifFormatError.InvalidCustomMetadata, tooBig.Error);
            Assert.Contains("4097 bytes", tooBig.Message);

            string bad = Path.Combine(dir, "bad.json");
            File.WriteAllText(bad, "{oops}");
            var invalid = Assert.Throws<EifFormatException>(() => EifMetadata.ReadCustomMetadataFile(bad));
            Assert.Equal(EifFormatError.InvalidCustomMetadata, invalid.Error);
            Assert.StartsWith(bad + ": custom metadata file is not valid JSON (line 1, column 2", invalid.Message);

            Assert.Equal(EifFormatError.InvalidCustomMetadata, Assert.Throws<EifFormatException>(() => EifMetadata.ReadCustomMetadataFile(dir)).Error);
            Assert.Throws<FileNotFoundException>(() => EifMetadata.ReadCustomMetadataFile(Path.Combine(dir, "missing.json")));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }

        static string SerdeJsonParserRoundTrip(JValue v) => Encoding.UTF8.GetString(v.ToCompactUtf8());
    }

    [Theory]
    // generate_build_info: line 3 split on ' ', '/', '-'; token 1 = OS, token 3 = version.
    [InlineData("# Linux/x86_64 4.14.256-209.484.amzn2.x86_64 Kernel Configuration", "Linux", "4.14.256")]
    [InlineData("# Linux/x86 6.12.48+deb12-amd64 Kernel Configuration", "Linux", "6.12.48+deb12")]
    [InlineData("# Linux/arm64 6.1.0 Kernel Configuration", "Linux", "6.1.0")]
    [InlineData("#", "Unknown", "Unknown")]
    [InlineData("# Linux", "Linux", "Unknown")]
    public void ReadKernelConfig_ThirdLine_GivesOsAndVersion(string line3, string os, string version)
    {
        string path = Path.GetTempFileName();
        try
        {
            File.WriteAllText(path, "#\n# Automatically generated file; DO NOT EDIT.\n" + line3 + "\n#\nCONFIG_X=y\n");
            Assert.Equal((os, version), EifMetadata.ReadKernelConfig(path));
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void ReadKernelConfig_FewerThanThreeLines_IsAClearError()
    {
        string path = Path.GetTempFileName();
        try
        {
            File.WriteAllText(path, "#\n#\n");
            Assert.Equal(EifFormatError.InvalidKernelConfig, Assert.Throws<EifFormatException>(() => EifMetadata.ReadKernelConfig(path)).Error);
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Theory]
    [InlineData(0L, "2024-07-09T17:16:38+00:00")]
    [InlineData(4_240_000L, "2024-07-09T17:16:38.424+00:00")]
    [InlineData(4_242_020L, "2024-07-09T17:16:38.424202+00:00")]
    [InlineData(4_242_024L, "2024-07-09T17:16:38.424202400+00:00")]
    public void FormatBuildTime_UsesChronoFractionDigits(long ticks, string expected)
    {
        var time = new DateTimeOffset(2024, 7, 9, 17, 16, 38, TimeSpan.Zero).AddTicks(ticks);
        Assert.Equal(expected, EifMetadata.FormatBuildTime(time));
    }

    [Fact]
    public void DefaultBuildTime_HonoursSourceDateEpoch()
    {
        Assert.Equal("2024-01-01T00:00:00+00:00", EifMetadata.DefaultBuildTime("1704067200", DateTimeOffset.UnixEpoch));
        Assert.Equal("1970-01-01T00:00:00+00:00", EifMetadata.DefaultBuildTime(null, DateTimeOffset.UnixEpoch));
        Assert.Equal(EifFormatError.InvalidBuildTime, Assert.Throws<EifFormatException>(() => EifMetadata.DefaultBuildTime("yesterday", DateTimeOffset.UnixEpoch)).Error);
    }

    [Theory]
    [InlineData("2024-01-01T00:00:00+00:00", true)]
    [InlineData("2024-01-01T00:00:00Z", true)]
    [InlineData("2024-02-29T23:59:60.123456789-05:30", true)]
    [InlineData("2023-02-29T00:00:00Z", false)]
    [InlineData("2024-13-01T00:00:00Z", false)]
    [InlineData("2024-01-01 00:00:00", false)]
    [InlineData("yesterday", false)]
    public void ValidateBuildTime_AcceptsRfc3339Only(string text, bool valid)
    {
        if (valid)
            Assert.Equal(text, EifMetadata.ValidateBuildTime(text));
        else
            Assert.Equal(EifFormatError.InvalidBuildTime, Assert.Throws<EifFormatException>(() => EifMetadata.ValidateBuildTime(text)).Error);
    }
}

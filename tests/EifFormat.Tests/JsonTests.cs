using System.Text;
using EifFormat.Json;

namespace EifFormat.Tests;

/// <summary>serde_json parity of the JSON model (spec §5.4): what the metadata section's bytes depend on.</summary>
public class JsonTests
{
    private static string Compact(string json) => Encoding.UTF8.GetString(SerdeJsonParser.Parse(Encoding.UTF8.GetBytes(json)).ToCompactUtf8());

    [Theory]
    // source: spec §14.5 synth_metadata (eif_build stored the custom file this way).
    [InlineData("""{"owner":"golden","build":42,"tags":["a","b"]}""", """{"build":42,"owner":"golden","tags":["a","b"]}""")]
    [InlineData(""" { "b" : 1 , "a" : [ ] , "c" : { } } """, """{"a":[],"b":1,"c":{}}""")]
    [InlineData("""{"a":1,"a":2}""", """{"a":2}""")]  // the last duplicate wins (serde_json Map insert)
    [InlineData("""{"é":1,"z":2,"Z":3}""", """{"Z":3,"z":2,"é":1}""")]  // byte-wise UTF-8 order
    [InlineData("""{"\uFFFD":1,"😀":2}""", """{"�":1,"😀":2}""")]  // U+FFFD sorts before U+1F600 (UTF-16 order would not)
    public void Parse_Objects_SortKeysLikeBTreeMap(string input, string expected) =>
        Assert.Equal(expected, Compact(input));

    [Theory]
    [InlineData("1.50", "1.5")]
    [InlineData("1E3", "1000.0")]
    [InlineData("1e15", "1000000000000000.0")]
    [InlineData("1e16", "1e16")]
    [InlineData("1.5e300", "1.5e300")]
    [InlineData("0.0001", "0.0001")]
    [InlineData("0.00001", "0.00001")]
    [InlineData("0.000001", "1e-6")]
    [InlineData("1.2345e-7", "1.2345e-7")]
    [InlineData("123.456", "123.456")]
    [InlineData("0.1", "0.1")]
    [InlineData("-2.5", "-2.5")]
    [InlineData("0.0", "0.0")]
    [InlineData("-0.0", "-0.0")]
    [InlineData("-0", "-0.0")]  // serde_json parses a negative zero integer as the float -0.0
    [InlineData("0", "0")]
    [InlineData("42", "42")]
    [InlineData("-42", "-42")]
    [InlineData("18446744073709551615", "18446744073709551615")]  // u64::MAX stays an integer
    [InlineData("18446744073709551616", "1.8446744073709552e19")]  // u64::MAX + 1 becomes an f64
    [InlineData("-9223372036854775808", "-9223372036854775808")]  // i64::MIN stays an integer
    [InlineData("-9223372036854775809", "-9.223372036854776e18")]
    [InlineData("5e-324", "5e-324")]
    [InlineData("1.7976931348623157e308", "1.7976931348623157e308")]
    public void Parse_Numbers_PrintAsSerdeJson(string input, string expected) =>
        Assert.Equal(expected, Compact(input));

    [Theory]
    [InlineData("\"a\\\"b\\\\c\"", "\"a\\\"b\\\\c\"")]
    [InlineData("\"\\b\\t\\n\\f\\r\"", "\"\\b\\t\\n\\f\\r\"")]
    [InlineData("\"\\u0001\\u001f\\u000B\"", "\"\\u0001\\u001f\\u000b\"")]  // other controls: \u00xx, lowercase
    [InlineData("\"\\/ \\u007f\"", "\"/ \u007f\"")]  // '/' and DEL are not escaped
    [InlineData("\"\\u00e9\\u4e2d\\ud83d\\ude00\"", "\"é中😀\"")]  // non-ASCII as raw UTF-8
    [InlineData("\"<>&'\"", "\"<>&'\"")]  // no HTML escaping (System.Text.Json's default would)
    public void Parse_Strings_EscapeAsSerdeJson(string input, string expected) =>
        Assert.Equal(expected, Compact(input));

    [Theory]
    [InlineData("", "empty")]
    [InlineData("{", "unterminated")]
    [InlineData("{\"a\":1,}", "trailing comma")]
    [InlineData("[1] [2]", "two values")]
    [InlineData("// c\n1", "comment")]
    [InlineData("1e400", "out of f64 range (serde_json: number out of range)")]
    [InlineData("\"\\ud800\"", "unpaired surrogate")]
    [InlineData("NaN", "not JSON")]
    [InlineData("\uFEFF{}", "byte order mark")]
    public void Parse_Invalid_ThrowsFormatException(string input, string reason)
    {
        var ex = Assert.Throws<FormatException>(() => SerdeJsonParser.Parse(Encoding.UTF8.GetBytes(input)));
        Assert.False(string.IsNullOrEmpty(ex.Message), reason);
    }

    [Fact]
    public void Parse_InvalidLiteralFullOfGarbage_GivesOneShortPrintableLine()
    {
        // Found by tools/fuzz: System.Text.Json quotes the rest of an invalid literal, here 4 KB of raw bytes with
        // newlines and escape sequences; the message must stay one safe line.
        byte[] garbage = new byte[4000];
        new Random(7).NextBytes(garbage);
        byte[] input = [.. "{\"a\":n"u8, .. garbage, .. "\n\u001b[2J}"u8];

        var ex = Assert.Throws<FormatException>(() => SerdeJsonParser.Parse(input));

        Assert.True(ex.Message.Length < 250, ex.Message);
        Assert.All(ex.Message, c => Assert.InRange(c, ' ', '~'));
    }

    [Fact]
    public void Parse_NestingDeeperThan128_IsRejected()
    {
        Assert.NotNull(SerdeJsonParser.Parse(Encoding.UTF8.GetBytes(new string('[', 127) + new string(']', 127))));
        Assert.Throws<FormatException>(() => SerdeJsonParser.Parse(Encoding.UTF8.GetBytes(new string('[', 129) + new string(']', 129))));
    }

    [Fact]
    public void Pretty_MatchesSerdeToStringPretty()
    {
        var value = JObject.Of(
            ("a", JNumber.From(1L)),
            ("b", new JArray([JBool.True, JNull.Instance])),
            ("c", new JObject()),
            ("d", new JArray([])),
            ("e", JObject.Of(("x", new JString("y")))));

        Assert.Equal(
            "{\n  \"a\": 1,\n  \"b\": [\n    true,\n    null\n  ],\n  \"c\": {},\n  \"d\": [],\n  \"e\": {\n    \"x\": \"y\"\n  }\n}",
            value.ToPrettyString());
    }

    [Fact]
    public void JObject_DuplicateKeysInCode_AreRejected() =>
        Assert.Throws<ArgumentException>(() => JObject.Of(("a", JNull.Instance), ("a", JNull.Instance)));
}

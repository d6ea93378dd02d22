using System.Text;
using System.Text.Json;

namespace EifFormat.Json;

/// <summary>Parses JSON into <see cref="JValue"/> with serde_json's rules (see <see cref="JValue"/>).</summary>
public static class SerdeJsonParser
{
    /// <summary>serde_json's default recursion limit.</summary>
    private const int MaxDepth = 128;

    /// <summary>Parses exactly one JSON value (surrounding whitespace allowed, nothing else).</summary>
    /// <exception cref="FormatException">The bytes are not one JSON value; the message says where and why.</exception>
    public static JValue Parse(ReadOnlySpan<byte> utf8)
    {
        // serde_json does not skip a byte order mark; neither do we (System.Text.Json would).
        if (utf8.StartsWith("\uFEFF"u8))
            throw new FormatException("a byte order mark at offset 0 is not JSON");
        var reader = new Utf8JsonReader(utf8, new JsonReaderOptions
        {
            MaxDepth = MaxDepth,
            CommentHandling = JsonCommentHandling.Disallow,
            AllowTrailingCommas = false,
        });
        try
        {
            if (!reader.Read())
                throw new FormatException("no JSON value (empty input)");
            JValue value = ReadValue(ref reader);
            if (reader.Read())
                throw new FormatException($"trailing characters after the JSON value at offset {reader.TokenStartIndex}");
            return value;
        }
        catch (JsonException ex)
        {
            throw new FormatException(Describe(ex), ex);
        }
        catch (InvalidOperationException ex)
        {
            // Utf8JsonReader.GetString rejects invalid UTF-8 and unpaired surrogate escapes, as serde_json does.
            throw new FormatException($"invalid string at offset {reader.TokenStartIndex}: {ex.Message}", ex);
        }
    }

    private static JValue ReadValue(ref Utf8JsonReader reader)
    {
        switch (reader.TokenType)
        {
            case JsonTokenType.Null:
                return JNull.Instance;
            case JsonTokenType.True:
                return JBool.True;
            case JsonTokenType.False:
                return JBool.False;
            case JsonTokenType.String:
                return new JString(reader.GetString()!);
            case JsonTokenType.Number:
                string literal = Encoding.ASCII.GetString(reader.ValueSpan);
                return JNumber.FromLiteral(literal)
                    ?? throw new FormatException($"number out of range at offset {reader.TokenStartIndex}");
            case JsonTokenType.StartArray:
                var items = new List<JValue>();
                while (reader.Read() && reader.TokenType != JsonTokenType.EndArray)
                    items.Add(ReadValue(ref reader));
                return new JArray(items);
            case JsonTokenType.StartObject:
                var map = new Dictionary<string, JValue>(StringComparer.Ordinal);
                while (reader.Read() && reader.TokenType != JsonTokenType.EndObject)
                {
                    string key = reader.GetString()!;
                    reader.Read();
                    map[key] = ReadValue(ref reader); // the last duplicate wins, as in serde_json's Map
                }

                return JObject.SortedFrom(map);
            default:
                throw new FormatException($"unexpected {reader.TokenType} at offset {reader.TokenStartIndex}");
        }
    }

    private static string Describe(JsonException ex)
    {
        // System.Text.Json messages end with "LineNumber: 0 | BytePositionInLine: 5."; keep its first sentence and
        // give the position 1-based, as editors do. Some messages quote the offending input: that text comes from
        // the file, so it is cut short and anything but printable ASCII is replaced, keeping the error one safe line.
        string message = ex.Message;
        int cut = message.IndexOf(" LineNumber:", StringComparison.Ordinal);
        if (cut > 0)
            message = message[..cut];
        return $"line {(ex.LineNumber ?? 0) + 1}, column {(ex.BytePositionInLine ?? 0) + 1}: {PrintableText.Of(message.TrimEnd(), 160)}";
    }
}

using System.Text;

namespace EifFormat.Json;

/// <summary>
/// A JSON value with serde_json's semantics, the model behind the metadata section and every JSON output.
/// </summary>
/// <remarks>
/// The reference stores metadata through <c>serde_json::Value</c> built without <c>preserve_order</c>, so parsed
/// objects keep their keys sorted by UTF-8 bytes with the last duplicate winning, numbers are re-printed in
/// serde_json's canonical form, and strings are escaped its way (spec §5.4). Objects built in code keep the
/// order they were built in, which is how struct fields (the top-level metadata keys) are written.
/// </remarks>
public abstract class JValue
{
    private protected JValue()
    {
    }

    /// <summary>Serialises compactly, byte for byte as serde_json's <c>to_vec</c>.</summary>
    public byte[] ToCompactUtf8() => SerdeJsonWriter.Write(this, pretty: false);

    /// <summary>Serialises as serde_json's <c>to_string_pretty</c> (2-space indent), without a final newline.</summary>
    public string ToPrettyString() => Encoding.UTF8.GetString(SerdeJsonWriter.Write(this, pretty: true));

    /// <inheritdoc/>
    public override string ToString() => Encoding.UTF8.GetString(ToCompactUtf8());
}

/// <summary>JSON <c>null</c>.</summary>
public sealed class JNull : JValue
{
    private JNull()
    {
    }

    /// <summary>The only instance.</summary>
    public static JNull Instance { get; } = new();
}

/// <summary>JSON <c>true</c> or <c>false</c>.</summary>
public sealed class JBool : JValue
{
    private JBool(bool value) => Value = value;

    /// <summary><c>true</c>.</summary>
    public static JBool True { get; } = new(true);

    /// <summary><c>false</c>.</summary>
    public static JBool False { get; } = new(false);

    /// <summary>The value.</summary>
    public bool Value { get; }

    /// <summary>The instance for <paramref name="value"/>.</summary>
    public static JBool From(bool value) => value ? True : False;
}

/// <summary>A JSON string.</summary>
public sealed class JString(string value) : JValue
{
    /// <summary>The decoded text.</summary>
    public string Value { get; } = value ?? throw new ArgumentNullException(nameof(value));
}

/// <summary>A JSON number, held as the text serde_json would print.</summary>
public sealed class JNumber : JValue
{
    private JNumber(string text) => Text = text;

    /// <summary>The canonical text: an integer, or a float in Rust's shortest round-trip form.</summary>
    public string Text { get; }

    /// <summary>An integer.</summary>
    public static JNumber From(long value) => new(value.ToString(System.Globalization.CultureInfo.InvariantCulture));

    /// <summary>An unsigned integer.</summary>
    public static JNumber From(ulong value) => new(value.ToString(System.Globalization.CultureInfo.InvariantCulture));

    /// <summary>A float, printed as serde_json prints an f64 (ryu), e.g. 1.5, 1000.0, 1e-7.</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="value"/> is NaN or infinite.</exception>
    public static JNumber From(double value) => new(RustFloat.Format(value));

    /// <summary>Parses a JSON number literal the way serde_json does (integers in u64/i64 stay integers).</summary>
    /// <returns>Null when the literal overflows an f64 (serde_json: "number out of range").</returns>
    internal static JNumber? FromLiteral(string literal)
    {
        bool isInteger = literal.AsSpan().IndexOfAny('.', 'e', 'E') < 0;
        if (isInteger)
        {
            if (literal[0] != '-' && ulong.TryParse(literal, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out ulong u))
                return From(u);

            // serde_json turns a negative integer whose magnitude is 0 into the float -0.0, and one below
            // i64::MIN into a float; the rest stay i64.
            if (literal[0] == '-' && long.TryParse(literal, System.Globalization.NumberStyles.AllowLeadingSign, System.Globalization.CultureInfo.InvariantCulture, out long l) && l != 0)
                return From(l);
        }

        double d = double.Parse(literal, System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture);
        if (double.IsInfinity(d))
            return null;
        return From(d);
    }
}

/// <summary>A JSON array.</summary>
public sealed class JArray : JValue
{
    /// <summary>Creates an array.</summary>
    public JArray(IEnumerable<JValue> items) => Items = items.ToList();

    /// <summary>The items.</summary>
    public IReadOnlyList<JValue> Items { get; }
}

/// <summary>A JSON object: properties in a fixed order (sorted when parsed, as built otherwise).</summary>
public sealed class JObject : JValue
{
    private readonly List<KeyValuePair<string, JValue>> _properties;

    /// <summary>Creates an object with the properties in the given order.</summary>
    /// <exception cref="ArgumentException">A key appears twice.</exception>
    public JObject(IEnumerable<KeyValuePair<string, JValue>> properties)
    {
        _properties = properties.ToList();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var p in _properties)
        {
            if (!seen.Add(p.Key))
                throw new ArgumentException($"Duplicate key \"{p.Key}\".", nameof(properties));
        }
    }

    /// <summary>An empty object.</summary>
    public JObject()
        : this([])
    {
    }

    /// <summary>The properties in order.</summary>
    public IReadOnlyList<KeyValuePair<string, JValue>> Properties => _properties;

    /// <summary>The value of <paramref name="key"/>, or null.</summary>
    public JValue? this[string key]
    {
        get
        {
            foreach (var p in _properties)
            {
                if (p.Key == key)
                    return p.Value;
            }

            return null;
        }
    }

    /// <summary>Builds an object from pairs in order (a convenience for outputs).</summary>
    public static JObject Of(params (string Key, JValue Value)[] properties) =>
        new(properties.Select(p => new KeyValuePair<string, JValue>(p.Key, p.Value)));

    /// <summary>A copy with the keys sorted by UTF-8 bytes, as a serde_json <c>Value</c> map holds them (one level).</summary>
    public JObject WithSortedKeys()
    {
        var keys = _properties.Select(p => p.Key).ToList();
        keys.Sort(Utf8Ordinal.Compare);
        return new JObject(keys.Select(k => new KeyValuePair<string, JValue>(k, this[k]!)));
    }

    /// <summary>A copy with the keys sorted by UTF-8 bytes, as serde_json's BTreeMap holds them.</summary>
    internal static JObject SortedFrom(Dictionary<string, JValue> map)
    {
        var keys = map.Keys.ToList();
        keys.Sort(Utf8Ordinal.Compare);
        return new JObject(keys.Select(k => new KeyValuePair<string, JValue>(k, map[k])));
    }
}

/// <summary>Byte-wise comparison of the UTF-8 encodings, which is Rust's <c>String</c> order (code point order).</summary>
internal static class Utf8Ordinal
{
    internal static int Compare(string? a, string? b)
    {
        if (ReferenceEquals(a, b))
            return 0;
        if (a is null)
            return -1;
        if (b is null)
            return 1;

        // Code point order differs from UTF-16 code unit order only where surrogates meet U+E000..U+FFFF.
        var ea = a.EnumerateRunes();
        var eb = b.EnumerateRunes();
        while (true)
        {
            bool ma = ea.MoveNext();
            bool mb = eb.MoveNext();
            if (!ma || !mb)
                return ma == mb ? 0 : (ma ? 1 : -1);
            int c = ea.Current.Value.CompareTo(eb.Current.Value);
            if (c != 0)
                return c;
        }
    }
}

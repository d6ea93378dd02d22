using System.Buffers;
using System.Text;

namespace EifFormat.Json;

/// <summary>Writes <see cref="JValue"/> byte for byte as serde_json's compact and pretty formatters do.</summary>
internal static class SerdeJsonWriter
{
    private static readonly byte[] HexDigits = "0123456789abcdef"u8.ToArray();

    internal static byte[] Write(JValue value, bool pretty)
    {
        var buffer = new ArrayBufferWriter<byte>(256);
        WriteValue(buffer, value, pretty, 0);
        return buffer.WrittenSpan.ToArray();
    }

    private static void WriteValue(ArrayBufferWriter<byte> w, JValue value, bool pretty, int depth)
    {
        switch (value)
        {
            case JNull:
                w.Write("null"u8);
                break;
            case JBool b:
                w.Write(b.Value ? "true"u8 : "false"u8);
                break;
            case JNumber n:
                w.Write(Encoding.ASCII.GetBytes(n.Text));
                break;
            case JString s:
                WriteString(w, s.Value);
                break;
            case JArray a:
                if (a.Items.Count == 0)
                {
                    w.Write("[]"u8);
                    break;
                }

                w.Write("["u8);
                for (int i = 0; i < a.Items.Count; i++)
                {
                    if (i > 0)
                        w.Write(","u8);
                    NewLine(w, pretty, depth + 1);
                    WriteValue(w, a.Items[i], pretty, depth + 1);
                }

                NewLine(w, pretty, depth);
                w.Write("]"u8);
                break;
            case JObject o:
                if (o.Properties.Count == 0)
                {
                    w.Write("{}"u8);
                    break;
                }

                w.Write("{"u8);
                for (int i = 0; i < o.Properties.Count; i++)
                {
                    if (i > 0)
                        w.Write(","u8);
                    NewLine(w, pretty, depth + 1);
                    WriteString(w, o.Properties[i].Key);
                    w.Write(pretty ? ": "u8 : ":"u8);
                    WriteValue(w, o.Properties[i].Value, pretty, depth + 1);
                }

                NewLine(w, pretty, depth);
                w.Write("}"u8);
                break;
            default:
                throw new ArgumentException($"Unknown JSON value type {value.GetType().Name}.", nameof(value));
        }
    }

    private static void NewLine(ArrayBufferWriter<byte> w, bool pretty, int depth)
    {
        if (!pretty)
            return;
        Span<byte> span = w.GetSpan(1 + 2 * depth);
        span[0] = (byte)'\n';
        span.Slice(1, 2 * depth).Fill((byte)' ');
        w.Advance(1 + 2 * depth);
    }

    // serde_json's escaping (ser.rs ESCAPE table): ", \ and the C0 controls only; \b \t \n \f \r get short forms,
    // other controls \u00xx in lowercase hex; '/', DEL and all non-ASCII are written as raw UTF-8.
    private static void WriteString(ArrayBufferWriter<byte> w, string s)
    {
        byte[] utf8 = Encoding.UTF8.GetBytes(s);
        w.Write("\""u8);
        int start = 0;
        for (int i = 0; i < utf8.Length; i++)
        {
            byte c = utf8[i];
            if (c >= 0x20 && c != (byte)'"' && c != (byte)'\\')
                continue;
            w.Write(utf8.AsSpan(start, i - start));
            switch (c)
            {
                case (byte)'"': w.Write("\\\""u8); break;
                case (byte)'\\': w.Write("\\\\"u8); break;
                case 0x08: w.Write("\\b"u8); break;
                case 0x09: w.Write("\\t"u8); break;
                case 0x0A: w.Write("\\n"u8); break;
                case 0x0C: w.Write("\\f"u8); break;
                case 0x0D: w.Write("\\r"u8); break;
                default:
                    w.Write([(byte)'\\', (byte)'u', (byte)'0', (byte)'0', HexDigits[c >> 4], HexDigits[c & 0xF]]);
                    break;
            }

            start = i + 1;
        }

        w.Write(utf8.AsSpan(start));
        w.Write("\""u8);
    }
}

using System.Formats.Cbor;

namespace EifFormat.Signing;

/// <summary>
/// The signed payload: <c>PcrInfo { register_index: i32, register_value: Vec&lt;u8&gt; }</c> (src/defs/mod.rs), as
/// serde_cbor writes it (spec §7.2): <c>A2 6E "register_index" 00 6E "register_value" 98 30 [48 × uint]</c>.
/// Only <c>(0, PCR0)</c> is ever signed. nitro-cli's describe-eif compares these bytes, not their meaning, so the
/// encoding must be exact.
/// </summary>
public static class PcrInfo
{
    private const string IndexKey = "register_index";
    private const string ValueKey = "register_value";

    /// <summary>The exact serde_cbor bytes of <c>PcrInfo{index, value}</c>.</summary>
    public static byte[] Encode(int index, ReadOnlySpan<byte> value)
    {
        var writer = new CborWriter(CborConformanceMode.Lax, convertIndefiniteLengthEncodings: false);
        writer.WriteStartMap(2);
        writer.WriteTextString(IndexKey);
        writer.WriteInt32(index);
        writer.WriteTextString(ValueKey);
        writer.WriteStartArray(value.Length);
        foreach (byte b in value)
            writer.WriteUInt32(b);
        writer.WriteEndArray();
        writer.WriteEndMap();
        return writer.Encode();
    }

    /// <summary>Decodes a payload (for messages: which register it signs and the value it claims).</summary>
    /// <exception cref="EifFormatException"><see cref="EifFormatError.InvalidPcrInfo"/>.</exception>
    public static (int Index, byte[] Value) Decode(ReadOnlyMemory<byte> payload)
    {
        try
        {
            var reader = new CborReader(payload, CborConformanceMode.Lax);
            if (reader.ReadStartMap() != 2)
                throw Invalid("is not a map of 2 keys");
            if (reader.ReadTextString() != IndexKey)
                throw Invalid($"does not start with '{IndexKey}'");
            int index = reader.ReadInt32();
            if (reader.ReadTextString() != ValueKey)
                throw Invalid($"has no '{ValueKey}' second");
            int? length = reader.ReadStartArray();
            if (length is null or > 64)
                throw Invalid($"'{ValueKey}' is not an array of at most 64 bytes");
            byte[] value = new byte[length.Value];
            for (int i = 0; i < value.Length; i++)
                value[i] = checked((byte)reader.ReadUInt32());
            reader.ReadEndArray();
            reader.ReadEndMap();
            if (reader.BytesRemaining != 0)
                throw Invalid($"has {reader.BytesRemaining} bytes after the map");
            return (index, value);
        }
        catch (Exception ex) when (ex is CborContentException or InvalidOperationException or OverflowException)
        {
            throw Invalid($"is not valid CBOR ({ex.Message})", ex);
        }
    }

    private static EifFormatException Invalid(string detail, Exception? inner = null) =>
        new(EifFormatError.InvalidPcrInfo, $"the signed payload (PcrInfo) {detail}", inner);
}

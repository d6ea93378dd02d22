using System.Formats.Cbor;

namespace EifFormat.Signing;

/// <summary>
/// COSE_Sign1 (RFC 9052 §4.2) as aws-nitro-enclaves-cose writes it (spec §7.3): untagged, protected header
/// <c>{1: alg}</c>, empty unprotected map, payload, raw r‖s signature. Built with CborWriter rather than
/// System.Security.Cryptography.Cose so that nothing else is emitted and the key can come from anywhere (BouncyCastle,
/// an HSM, KMS through the detached flow).
/// </summary>
/// <param name="Algorithm">The protected header's algorithm.</param>
/// <param name="ProtectedHeader">The protected header's bytes, as signed (a bstr-wrapped map).</param>
/// <param name="Payload">The payload bytes.</param>
/// <param name="Signature">The raw r‖s signature.</param>
public sealed record CoseSign1(CoseAlgorithm Algorithm, byte[] ProtectedHeader, byte[] Payload, byte[] Signature)
{
    /// <summary>CBOR tag of a tagged COSE_Sign1 (RFC 9052 §2); the reference reads it and never writes it.</summary>
    public const ulong Tag = 18;

    /// <summary>The protected header the reference writes: the CBOR map <c>{1: alg}</c>, e.g. <c>A1 01 38 22</c>.</summary>
    public static byte[] ProtectedHeaderFor(CoseAlgorithm algorithm)
    {
        var writer = new CborWriter(CborConformanceMode.Lax);
        writer.WriteStartMap(1);
        writer.WriteInt32(1); // label 1: alg (RFC 9052 §3.1)
        writer.WriteInt32((int)algorithm);
        writer.WriteEndMap();
        return writer.Encode();
    }

    /// <summary>
    /// The Sig_structure (RFC 9052 §4.4) whose digest is signed:
    /// <c>["Signature1", protected, h'' (external_aad), payload]</c>.
    /// </summary>
    public static byte[] ToBeSigned(ReadOnlySpan<byte> protectedHeader, ReadOnlySpan<byte> payload)
    {
        var writer = new CborWriter(CborConformanceMode.Lax);
        writer.WriteStartArray(4);
        writer.WriteTextString("Signature1");
        writer.WriteByteString(protectedHeader);
        writer.WriteByteString([]);
        writer.WriteByteString(payload);
        writer.WriteEndArray();
        return writer.Encode();
    }

    /// <summary>The Sig_structure of this message.</summary>
    public byte[] ToBeSigned() => ToBeSigned(ProtectedHeader, Payload);

    /// <summary>The untagged encoding: <c>84 [protected] A0 [payload] [signature]</c>.</summary>
    public byte[] Encode()
    {
        var writer = new CborWriter(CborConformanceMode.Lax);
        writer.WriteStartArray(4);
        writer.WriteByteString(ProtectedHeader);
        writer.WriteStartMap(0);
        writer.WriteEndMap();
        writer.WriteByteString(Payload);
        writer.WriteByteString(Signature);
        writer.WriteEndArray();
        return writer.Encode();
    }

    /// <summary>
    /// Decodes as the reference's <c>CoseSign1::from_bytes</c> accepts: untagged or tag 18, an array of exactly four,
    /// a protected header that is a map holding an integer algorithm (one of ES256/ES384/ES512), a map of
    /// unprotected headers, byte-string payload and signature, nothing after.
    /// </summary>
    /// <exception cref="EifFormatException"><see cref="EifFormatError.InvalidCose"/>.</exception>
    public static CoseSign1 Decode(ReadOnlyMemory<byte> bytes)
    {
        try
        {
            var reader = new CborReader(bytes, CborConformanceMode.Lax);
            if (reader.PeekState() == CborReaderState.Tag)
            {
                ulong tag = (ulong)reader.ReadTag();
                if (tag != Tag)
                    throw Invalid($"has CBOR tag {tag}; only tag {Tag} (COSE_Sign1) or none is accepted");
            }

            int? count = reader.ReadStartArray();
            if (count != 4)
                throw Invalid($"is an array of {(count is null ? "indefinite length" : count.ToString())}; COSE_Sign1 has 4 items");
            byte[] protectedHeader = reader.ReadByteString();
            CoseAlgorithm algorithm = ReadAlgorithm(protectedHeader);
            if (reader.PeekState() != CborReaderState.StartMap)
                throw Invalid("unprotected headers are not a map");
            reader.SkipValue();
            if (reader.PeekState() != CborReaderState.ByteString)
                throw Invalid("payload is not a byte string (a detached payload is not used for EIFs)");
            byte[] payload = reader.ReadByteString();
            byte[] signature = reader.ReadByteString();
            reader.ReadEndArray();
            if (reader.BytesRemaining != 0)
                throw Invalid($"has {reader.BytesRemaining} bytes after it");
            return new CoseSign1(algorithm, protectedHeader, payload, signature);
        }
        catch (Exception ex) when (ex is CborContentException or InvalidOperationException or OverflowException)
        {
            throw Invalid($"is not valid CBOR ({ex.Message})", ex);
        }
    }

    private static CoseAlgorithm ReadAlgorithm(byte[] protectedHeader)
    {
        var reader = new CborReader(protectedHeader, CborConformanceMode.Lax);
        int? entries = reader.ReadStartMap();
        long? alg = null;
        for (int i = 0; entries is null ? reader.PeekState() != CborReaderState.EndMap : i < entries; i++)
        {
            // Labels are integers or text (RFC 9052 §3); only label 1 (alg) matters here.
            long? label = reader.PeekState() is CborReaderState.UnsignedInteger or CborReaderState.NegativeInteger
                ? reader.ReadInt64()
                : null;
            if (label is null)
                reader.SkipValue();
            if (label != 1)
            {
                reader.SkipValue();
                continue;
            }

            if (reader.PeekState() is not (CborReaderState.NegativeInteger or CborReaderState.UnsignedInteger))
                throw Invalid("protected header 'alg' (1) is not an integer");
            alg = reader.ReadInt64();
        }

        reader.ReadEndMap();
        if (reader.BytesRemaining != 0)
            throw Invalid("protected header has bytes after its map");
        if (alg is null)
            throw Invalid("protected header has no 'alg' (label 1)");
        if (!CoseAlgorithms.TryFromValue(alg.Value, out CoseAlgorithm algorithm))
            throw Invalid($"protected header 'alg' is {alg}; ES256 (-7), ES384 (-35) and ES512 (-36) are supported");
        return algorithm;
    }

    private static EifFormatException Invalid(string detail) =>
        new(EifFormatError.InvalidCose, $"signature section: the COSE_Sign1 {detail}");

    private static EifFormatException Invalid(string detail, Exception inner) =>
        new(EifFormatError.InvalidCose, $"signature section: the COSE_Sign1 {detail}", inner);
}

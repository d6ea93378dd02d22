using System.Formats.Cbor;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace EifFormat;

/// <summary>One entry of the signature section (<c>PcrSignature</c>, src/defs/mod.rs).</summary>
/// <param name="SigningCertificate">The PEM file's bytes, verbatim (not DER).</param>
/// <param name="Signature">An untagged COSE_Sign1 over the CBOR of <c>PcrInfo{0, PCR0}</c>.</param>
public sealed record EifPcrSignature(byte[] SigningCertificate, byte[] Signature);

/// <summary>
/// The signature section (type 4) as the reference writes it with serde_cbor (spec §7.1): a CBOR array of maps
/// <c>{"signing_certificate": [u8…], "signature": [u8…]}</c>, byte vectors encoded as arrays of minimally encoded
/// unsigned integers, keys in that order (QEMU checks the first key), definite lengths.
/// </summary>
public static class EifSignatureSection
{
    private const string CertificateKey = "signing_certificate";
    private const string SignatureKey = "signature";

    /// <summary>Encodes entries exactly as serde_cbor 0.11 does.</summary>
    public static byte[] Encode(IReadOnlyList<EifPcrSignature> entries)
    {
        ArgumentNullException.ThrowIfNull(entries);

        // Lax mode: the canonical modes would sort "signature" (the shorter key) first and break byte parity.
        var writer = new CborWriter(CborConformanceMode.Lax, convertIndefiniteLengthEncodings: false);
        writer.WriteStartArray(entries.Count);
        foreach (var entry in entries)
        {
            writer.WriteStartMap(2);
            writer.WriteTextString(CertificateKey);
            WriteByteVector(writer, entry.SigningCertificate);
            writer.WriteTextString(SignatureKey);
            WriteByteVector(writer, entry.Signature);
            writer.WriteEndMap();
        }

        writer.WriteEndArray();
        return writer.Encode();
    }

    /// <summary>
    /// Decodes a signature section strictly: at most 32768 bytes, an array of at least one entry, each a map of
    /// exactly the two keys in the reference's order, byte vectors of 1-byte-wide unsigned integers, nothing after
    /// the array.
    /// </summary>
    /// <exception cref="EifFormatException"><see cref="EifFormatError.InvalidSignature"/> or <see cref="EifFormatError.SignatureTooLarge"/>.</exception>
    public static IReadOnlyList<EifPcrSignature> Decode(ReadOnlyMemory<byte> data)
    {
        if (data.Length > EifConstants.MaxSignatureSize)
            Throw.SignatureTooLarge(data.Length);
        try
        {
            var reader = new CborReader(data, CborConformanceMode.Strict);
            int? count = reader.ReadStartArray();
            if (count is null)
                throw Throw.InvalidSignature("the outer array has an indefinite length");
            if (count == 0)
                throw Throw.InvalidSignature("the outer array is empty");
            var entries = new List<EifPcrSignature>(Math.Min(count.Value, 16));
            for (int i = 0; i < count; i++)
            {
                int? fields = reader.ReadStartMap();
                if (fields != 2)
                    throw Throw.InvalidSignature($"entry {i} is a map of {(fields is null ? "indefinite length" : fields + " keys")}; 2 keys are expected");
                ExpectKey(reader, i, CertificateKey, 0);
                byte[] certificate = ReadByteVector(reader, $"entry {i} '{CertificateKey}'");
                ExpectKey(reader, i, SignatureKey, 1);
                byte[] signature = ReadByteVector(reader, $"entry {i} '{SignatureKey}'");
                reader.ReadEndMap();
                entries.Add(new EifPcrSignature(certificate, signature));
            }

            reader.ReadEndArray();
            if (reader.BytesRemaining != 0)
                throw Throw.InvalidSignature($"{reader.BytesRemaining} bytes follow the CBOR array");
            return entries;
        }
        catch (CborContentException ex)
        {
            throw Throw.InvalidSignature($"not valid CBOR ({ex.Message})", ex);
        }
        catch (InvalidOperationException ex)
        {
            // CborReader reports an item of another major type than the one asked for this way.
            throw Throw.InvalidSignature($"unexpected CBOR item ({ex.Message})", ex);
        }
    }

    /// <summary>
    /// The DER of the first X.509 certificate in PEM text, as OpenSSL's <c>PEM_read_bio_X509</c> finds it: the
    /// first block labelled CERTIFICATE (or the old X509 CERTIFICATE), other blocks skipped.
    /// </summary>
    /// <exception cref="EifFormatException"><see cref="EifFormatError.InvalidCertificate"/>.</exception>
    public static byte[] FirstCertificateDer(ReadOnlySpan<byte> pem, string what)
    {
        ReadOnlySpan<char> text = System.Text.Encoding.UTF8.GetString(pem);
        while (PemEncoding.TryFind(text, out PemFields fields))
        {
            ReadOnlySpan<char> label = text[fields.Label];
            if (label.SequenceEqual("CERTIFICATE") || label.SequenceEqual("X509 CERTIFICATE"))
            {
                byte[] der = new byte[fields.DecodedDataLength];
                if (!Convert.TryFromBase64Chars(text[fields.Base64Data], der, out int written) || written != der.Length)
                    throw Throw.InvalidCertificate(what, "the CERTIFICATE block is not valid base64");
                try
                {
                    using X509Certificate2 parsed = X509CertificateLoader.LoadCertificate(der);
                }
                catch (CryptographicException ex)
                {
                    throw Throw.InvalidCertificate(what, $"the first CERTIFICATE block is not an X.509 certificate ({ex.Message})", ex);
                }

                return der;
            }

            text = text[fields.Location.End..];
        }

        throw Throw.InvalidCertificate(what, "no PEM 'CERTIFICATE' block found");
    }

    private static void ExpectKey(CborReader reader, int entry, string expected, int position)
    {
        string key = reader.ReadTextString();
        if (key != expected)
            throw Throw.InvalidSignature($"entry {entry} key {position} is \"{key}\"; \"{expected}\" is expected there");
    }

    private static void WriteByteVector(CborWriter writer, byte[] bytes)
    {
        writer.WriteStartArray(bytes.Length);
        foreach (byte b in bytes)
            writer.WriteUInt32(b);
        writer.WriteEndArray();
    }

    // A serde Vec<u8>: an array whose items are minimal 1-byte-wide uints (QEMU requires CBOR_INT_8 width).
    private static byte[] ReadByteVector(CborReader reader, string what)
    {
        int? length = reader.ReadStartArray();
        if (length is null)
            throw Throw.InvalidSignature($"{what} has an indefinite length");
        if (length > reader.BytesRemaining)
            throw Throw.InvalidSignature($"{what} declares {length} items but only {reader.BytesRemaining} bytes remain");
        byte[] bytes = new byte[length.Value];
        for (int i = 0; i < bytes.Length; i++)
        {
            ReadOnlySpan<byte> item = reader.ReadEncodedValue().Span;
            if (item.Length == 1 && item[0] < 24)
                bytes[i] = item[0];
            else if (item.Length == 2 && item[0] == 0x18 && item[1] >= 24)
                bytes[i] = item[1];
            else
                throw Throw.InvalidSignature($"{what} item {i} is not a minimally encoded integer 0..255 (first byte 0x{item[0]:X2})");
        }

        reader.ReadEndArray();
        return bytes;
    }
}

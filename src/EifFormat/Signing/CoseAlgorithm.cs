namespace EifFormat.Signing;

/// <summary>
/// The COSE algorithms the reference signs with, one per curve (aws-nitro-enclaves-cose
/// <c>src/crypto/openssl_pkey.rs</c> <c>ec_curve_to_parameters</c>; RFC 9053 §2.1 for the identifiers).
/// </summary>
public enum CoseAlgorithm
{
    /// <summary>ECDSA with SHA-256 on P-256 (COSE −7).</summary>
    ES256 = -7,

    /// <summary>ECDSA with SHA-384 on P-384 (COSE −35): what Nitro enclaves use.</summary>
    ES384 = -35,

    /// <summary>ECDSA with SHA-512 on P-521 (COSE −36).</summary>
    ES512 = -36,
}

/// <summary>Facts about each <see cref="CoseAlgorithm"/>.</summary>
public static class CoseAlgorithms
{
    /// <summary>The curve's name as OpenSSL and NIST spell it.</summary>
    public static string CurveName(CoseAlgorithm algorithm) => algorithm switch
    {
        CoseAlgorithm.ES256 => "P-256",
        CoseAlgorithm.ES384 => "P-384",
        _ => "P-521",
    };

    /// <summary>The digest the algorithm signs: SHA-256, SHA-384 or SHA-512.</summary>
    public static string DigestName(CoseAlgorithm algorithm) => algorithm switch
    {
        CoseAlgorithm.ES256 => "SHA-256",
        CoseAlgorithm.ES384 => "SHA-384",
        _ => "SHA-512",
    };

    /// <summary>Bytes of r and of s in a raw signature: the curve's order size (32, 48, 66).</summary>
    public static int ScalarSize(CoseAlgorithm algorithm) => algorithm switch
    {
        CoseAlgorithm.ES256 => 32,
        CoseAlgorithm.ES384 => 48,
        _ => 66,
    };

    /// <summary>The digest of <paramref name="data"/> under the algorithm's hash.</summary>
    public static byte[] Digest(CoseAlgorithm algorithm, ReadOnlySpan<byte> data) => algorithm switch
    {
        CoseAlgorithm.ES256 => System.Security.Cryptography.SHA256.HashData(data),
        CoseAlgorithm.ES384 => System.Security.Cryptography.SHA384.HashData(data),
        _ => System.Security.Cryptography.SHA512.HashData(data),
    };

    internal static bool TryFromValue(long value, out CoseAlgorithm algorithm)
    {
        algorithm = (CoseAlgorithm)value;
        return value is (long)CoseAlgorithm.ES256 or (long)CoseAlgorithm.ES384 or (long)CoseAlgorithm.ES512;
    }
}

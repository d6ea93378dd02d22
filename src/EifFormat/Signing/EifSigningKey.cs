using System.Text;
using System.Text.RegularExpressions;
using Org.BouncyCastle.Crypto;
using Org.BouncyCastle.Crypto.Digests;
using Org.BouncyCastle.Crypto.Parameters;
using Org.BouncyCastle.Crypto.Signers;
using Org.BouncyCastle.Math;
using Org.BouncyCastle.OpenSsl;
using Org.BouncyCastle.Security;

namespace EifFormat.Signing;

/// <summary>
/// A local EC private key for signing EIFs: PEM in SEC1 (<c>EC PRIVATE KEY</c>), PKCS#8 (<c>PRIVATE KEY</c>) or
/// encrypted PKCS#8 (<c>ENCRYPTED PRIVATE KEY</c>, with a passphrase given by the caller: from an environment variable
/// or a file, never the command line). Signs with deterministic ECDSA (RFC 6979), so the same image and key give the
/// same signature: signed builds stay reproducible (the reference's OpenSSL signatures are random).
/// </summary>
public sealed partial class EifSigningKey
{
    private readonly ECPrivateKeyParameters _key;

    private EifSigningKey(ECPrivateKeyParameters key, CoseAlgorithm algorithm)
    {
        _key = key;
        Algorithm = algorithm;
    }

    /// <summary>The COSE algorithm of the key's curve.</summary>
    public CoseAlgorithm Algorithm { get; }

    /// <summary>Reads a PEM private key file.</summary>
    /// <param name="path">The PEM file.</param>
    /// <param name="passphrase">Called only when the key is encrypted; returns null when no passphrase was given.</param>
    /// <exception cref="EifFormatException"><see cref="EifFormatError.InvalidPrivateKey"/> or <see cref="EifFormatError.UnsupportedKey"/>.</exception>
    /// <exception cref="IOException">The file cannot be read.</exception>
    public static EifSigningKey Load(string path, Func<string?> passphrase)
    {
        // A KMS key ARN (the reference's other --private-key form) needs the network; say how to use it instead.
        if (KmsArn().IsMatch(path))
        {
            throw new EifFormatException(EifFormatError.InvalidPrivateKey,
                $"{path}: KMS keys are used through detached signing: 'eif sign-eif --export-to-be-signed', then 'aws kms sign --message-type DIGEST', then 'eif sign-eif --signature'");
        }

        string text = File.ReadAllText(path, Encoding.UTF8);
        bool encrypted = text.Contains("-----BEGIN ENCRYPTED PRIVATE KEY-----", StringComparison.Ordinal)
            || text.Contains("Proc-Type: 4,ENCRYPTED", StringComparison.Ordinal);
        string? secret = encrypted ? passphrase() : null;
        if (encrypted && secret is null)
            throw new EifFormatException(EifFormatError.InvalidPrivateKey, $"{path}: the private key is encrypted; give its passphrase with --private-key-passphrase-env VAR or --private-key-passphrase-file FILE");

        object? parsed;
        try
        {
            using var reader = new StringReader(text);
            var pem = new PemReader(reader, secret is null ? null : new Passphrase(secret));
            parsed = pem.ReadObject();
            while (parsed is not null and not AsymmetricCipherKeyPair and not AsymmetricKeyParameter)
                parsed = pem.ReadObject(); // skip EC PARAMETERS and other blocks before the key
        }
        catch (Exception ex) when (ex is PemException or InvalidCipherTextException or IOException or ArgumentException or InvalidOperationException or CryptoException)
        {
            string why = encrypted ? "wrong passphrase or damaged key" : ex.Message;
            throw new EifFormatException(EifFormatError.InvalidPrivateKey, $"{path}: the private key cannot be read ({why})", ex);
        }

        AsymmetricKeyParameter? key = parsed switch
        {
            AsymmetricCipherKeyPair pair => pair.Private,
            AsymmetricKeyParameter p => p,
            _ => null,
        };
        if (key is null)
            throw new EifFormatException(EifFormatError.InvalidPrivateKey, $"{path}: no PEM private key found (expected EC PRIVATE KEY, PRIVATE KEY or ENCRYPTED PRIVATE KEY)");
        if (!key.IsPrivate)
            throw new EifFormatException(EifFormatError.InvalidPrivateKey, $"{path}: holds a public key, not a private key");
        if (key is not ECPrivateKeyParameters ec)
        {
            string kind = key switch
            {
                RsaKeyParameters => "RSA",
                DsaPrivateKeyParameters => "DSA",
                Ed25519PrivateKeyParameters => "Ed25519",
                Ed448PrivateKeyParameters => "Ed448",
                _ => "of another kind",
            };
            throw new EifFormatException(EifFormatError.UnsupportedKey, $"{path}: the private key is {kind}, not EC; Nitro signatures are ECDSA on P-256, P-384 or P-521");
        }
        return new EifSigningKey(ec, EifCertificate.AlgorithmOf(ec.Parameters, ec.PublicKeyParamSet, path));
    }

    /// <summary>True when <paramref name="certificate"/> holds this key's public key.</summary>
    public bool Matches(EifCertificate certificate)
    {
        var q = _key.Parameters.G.Multiply(_key.D).Normalize();
        return certificate.PublicKey.Q.Normalize().Equals(q);
    }

    /// <summary>Signs a digest; returns the raw r‖s, each left-padded to the curve's size.</summary>
    public byte[] SignDigest(ReadOnlySpan<byte> digest)
    {
        var signer = new ECDsaSigner(new HMacDsaKCalculator(DigestFor(Algorithm)));
        signer.Init(true, _key);
        BigInteger[] rs = signer.GenerateSignature(digest.ToArray());
        return EcdsaSignatures.ToRaw(rs[0], rs[1], CoseAlgorithms.ScalarSize(Algorithm));
    }

    internal static IDigest DigestFor(CoseAlgorithm algorithm) => algorithm switch
    {
        CoseAlgorithm.ES256 => new Sha256Digest(),
        CoseAlgorithm.ES384 => new Sha384Digest(),
        _ => new Sha512Digest(),
    };

    // The reference's KMS key form (signer parse_kms_arn): arn:PARTITION:kms:REGION:ACCOUNT:key/ID.
    [GeneratedRegex(@"^arn:(aws|aws-cn|aws-us-gov):kms:[a-z0-9-]+:\d{12}:key[:/][A-Za-z0-9-]+$")]
    private static partial Regex KmsArn();

    private sealed class Passphrase(string secret) : IPasswordFinder
    {
        public char[] GetPassword() => secret.ToCharArray();
    }
}

/// <summary>ECDSA signature encodings: raw r‖s (COSE, RFC 9053 §2.1) and DER ECDSA-Sig-Value (X9.62, OpenSSL, KMS).</summary>
public static class EcdsaSignatures
{
    /// <summary>r‖s, each big-endian and left-padded to <paramref name="size"/> bytes.</summary>
    public static byte[] ToRaw(BigInteger r, BigInteger s, int size)
    {
        byte[] raw = new byte[2 * size];
        r.ToByteArrayUnsigned().CopyTo(raw.AsSpan(size - r.ToByteArrayUnsigned().Length));
        s.ToByteArrayUnsigned().CopyTo(raw.AsSpan(2 * size - s.ToByteArrayUnsigned().Length));
        return raw;
    }

    /// <summary>
    /// Reads a DER <c>SEQUENCE { r INTEGER, s INTEGER }</c> as <c>openssl dgst -sign</c> and cloud KMS return it;
    /// null unless the bytes are exactly that (strict DER, nothing after it) and each value fits <paramref name="size"/>.
    /// </summary>
    public static byte[]? FromDer(ReadOnlySpan<byte> der, int size)
    {
        try
        {
            var sequence = Org.BouncyCastle.Asn1.Asn1Sequence.GetInstance(Org.BouncyCastle.Asn1.Asn1Object.FromByteArray(der.ToArray()));
            if (sequence.Count != 2 || !sequence.GetEncoded(Org.BouncyCastle.Asn1.Asn1Encodable.Der).AsSpan().SequenceEqual(der))
                return null;
            var r = Org.BouncyCastle.Asn1.DerInteger.GetInstance(sequence[0]).PositiveValue;
            var s = Org.BouncyCastle.Asn1.DerInteger.GetInstance(sequence[1]).PositiveValue;
            if (r.SignValue <= 0 || s.SignValue <= 0 || r.BitLength > 8 * size || s.BitLength > 8 * size)
                return null;
            return ToRaw(r, s, size);
        }
        catch (Exception ex) when (ex is ArgumentException or IOException or InvalidCastException or InvalidOperationException)
        {
            return null;
        }
    }

    /// <summary>Verifies a raw r‖s signature of <paramref name="digest"/> with a certificate's key.</summary>
    public static bool Verify(EifCertificate certificate, CoseAlgorithm algorithm, ReadOnlySpan<byte> digest, ReadOnlySpan<byte> raw)
    {
        int size = CoseAlgorithms.ScalarSize(algorithm);
        if (raw.Length != 2 * size)
            return false;
        var verifier = new ECDsaSigner();
        verifier.Init(false, certificate.PublicKey);
        return verifier.VerifySignature(
            digest.ToArray(),
            new BigInteger(1, raw[..size].ToArray()),
            new BigInteger(1, raw[size..].ToArray()));
    }
}

using System.Text;
using Org.BouncyCastle.Asn1.Sec;
using Org.BouncyCastle.Asn1.X509;
using Org.BouncyCastle.Asn1.X9;
using Org.BouncyCastle.Crypto;
using Org.BouncyCastle.Crypto.Generators;
using Org.BouncyCastle.Crypto.Operators;
using Org.BouncyCastle.Crypto.Parameters;
using Org.BouncyCastle.Math;
using Org.BouncyCastle.OpenSsl;
using Org.BouncyCastle.Pkcs;
using Org.BouncyCastle.Security;
using Org.BouncyCastle.X509;

namespace EifTests.Shared;

/// <summary>
/// Test keys and certificates made at run time with BouncyCastle (shared by the test projects as a linked file):
/// EC keys on any named curve, RSA keys, self-signed and CA-issued certificates with chosen validity, and PEM in the
/// encodings users have (SEC1, PKCS#8, encrypted PKCS#8). Test material only.
/// </summary>
public static class TestPki
{
    private static readonly SecureRandom Random = new();

    public sealed record Identity(AsymmetricCipherKeyPair Keys, X509Certificate Certificate)
    {
        internal byte[] CertificatePem => Encoding.ASCII.GetBytes(ToPem(Certificate));

        internal string KeyPem(KeyFormat format = KeyFormat.Sec1, string? passphrase = null) => ToPem(Keys, format, passphrase);
    }

    public enum KeyFormat
    {
        Sec1,
        Pkcs8,
        EncryptedPkcs8,
    }

    /// <summary>An EC key pair on a named curve: "P-256", "P-384", "P-521" or any SEC name such as "secp256k1".</summary>
    internal static AsymmetricCipherKeyPair EcKeys(string curve)
    {
        string secName = curve switch { "P-256" => "secp256r1", "P-384" => "secp384r1", "P-521" => "secp521r1", _ => curve };
        var oid = SecNamedCurves.GetOid(secName);
        var generator = new ECKeyPairGenerator("EC");
        generator.Init(new ECKeyGenerationParameters(oid, Random));
        return generator.GenerateKeyPair();
    }

    internal static AsymmetricCipherKeyPair RsaKeys()
    {
        var generator = new RsaKeyPairGenerator();
        generator.Init(new KeyGenerationParameters(Random, 2048));
        return generator.GenerateKeyPair();
    }

    /// <summary>A certificate for <paramref name="keys"/>, self-signed unless an issuer is given.</summary>
    internal static Identity Certificate(
        AsymmetricCipherKeyPair keys, string commonName, DateTime? notBefore = null, DateTime? notAfter = null, Identity? issuer = null, bool ca = false)
    {
        var generator = new X509V3CertificateGenerator();
        // Built from (OID, value) pairs so that any characters survive, quotes and backslashes included.
        var subject = new X509Name(
            new List<Org.BouncyCastle.Asn1.DerObjectIdentifier> { X509Name.CN, X509Name.O },
            new List<string> { commonName, "EIF Toolchain Tests" });
        generator.SetSerialNumber(BigInteger.ProbablePrime(64, Random));
        generator.SetSubjectDN(subject);
        generator.SetIssuerDN(issuer?.Certificate.SubjectDN ?? subject);
        generator.SetNotBefore(notBefore ?? DateTime.UtcNow.AddDays(-1));
        generator.SetNotAfter(notAfter ?? DateTime.UtcNow.AddYears(1));
        generator.SetPublicKey(keys.Public);
        if (ca)
            generator.AddExtension(X509Extensions.BasicConstraints, true, new BasicConstraints(true));
        AsymmetricKeyParameter signingKey = issuer?.Keys.Private ?? keys.Private;
        string algorithm = signingKey is RsaKeyParameters ? "SHA256WITHRSA" : "SHA384WITHECDSA";
        return new Identity(keys, generator.Generate(new Asn1SignatureFactory(algorithm, signingKey, Random)));
    }

    /// <summary>A self-signed EC identity on <paramref name="curve"/>.</summary>
    internal static Identity EcIdentity(string curve = "P-384", string commonName = "eif-test-signer", DateTime? notBefore = null, DateTime? notAfter = null) =>
        Certificate(EcKeys(curve), commonName, notBefore, notAfter);

    internal static string ToPem(object value)
    {
        using var text = new StringWriter();
        var writer = new PemWriter(text);
        writer.WriteObject(value);
        writer.Writer.Flush();
        return text.ToString().Replace("\r\n", "\n", StringComparison.Ordinal);
    }

    internal static string ToPem(AsymmetricCipherKeyPair keys, KeyFormat format, string? passphrase)
    {
        switch (format)
        {
            case KeyFormat.Sec1:
                return ToPem(keys); // BouncyCastle writes an EC key pair as "EC PRIVATE KEY" (SEC1)
            case KeyFormat.Pkcs8:
                return ToPem(new Pkcs8Generator(keys.Private).Generate());
            default:
                var generator = new Pkcs8Generator(keys.Private, Pkcs8Generator.PbeWithShaAnd3KeyTripleDesCbc) // PKCS#12 PBE; the CLI tests cover openssl's PBES2
                {
                    Password = (passphrase ?? throw new ArgumentNullException(nameof(passphrase))).ToCharArray(),
                    SecureRandom = Random,
                };
                return ToPem(generator.Generate());
        }
    }
}

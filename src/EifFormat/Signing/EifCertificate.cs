using System.Globalization;
using System.Text;
using Org.BouncyCastle.Asn1;
using Org.BouncyCastle.Asn1.Sec;
using Org.BouncyCastle.Asn1.X509;
using Org.BouncyCastle.Asn1.X9;
using Org.BouncyCastle.Crypto.Parameters;
using Org.BouncyCastle.X509;

namespace EifFormat.Signing;

/// <summary>
/// A signing certificate: the first X.509 certificate of a PEM file (as OpenSSL's <c>PEM_read_bio_X509</c> finds it),
/// parsed with BouncyCastle. Knows its COSE algorithm (from its EC curve), its validity, and how nitro-cli prints it.
/// </summary>
public sealed class EifCertificate
{
    private readonly X509Certificate _certificate;

    private readonly Org.BouncyCastle.Crypto.AsymmetricKeyParameter _publicKey;

    private EifCertificate(byte[] der, X509Certificate certificate, Org.BouncyCastle.Crypto.AsymmetricKeyParameter publicKey, string what)
    {
        Der = der;
        _certificate = certificate;
        _publicKey = publicKey;
        What = what;
    }

    /// <summary>The DER encoding (what PCR8 measures).</summary>
    public byte[] Der { get; }

    /// <summary>Where it came from, for messages.</summary>
    public string What { get; }

    /// <summary>Start of validity.</summary>
    public DateTime NotBefore => _certificate.NotBefore.ToUniversalTime();

    /// <summary>End of validity.</summary>
    public DateTime NotAfter => _certificate.NotAfter.ToUniversalTime();

    /// <summary>The subject, RFC 4514-like (for messages).</summary>
    public string Subject => _certificate.SubjectDN.ToString();

    /// <summary>The issuer, RFC 4514-like (for messages).</summary>
    public string Issuer => _certificate.IssuerDN.ToString();

    internal X509Certificate Certificate => _certificate;

    /// <summary>Parses the first certificate of PEM text.</summary>
    /// <exception cref="EifFormatException"><see cref="EifFormatError.InvalidCertificate"/>.</exception>
    public static EifCertificate FromPem(ReadOnlySpan<byte> pem, string what)
    {
        byte[] der = EifSignatureSection.FirstCertificateDer(pem, what);
        return FromDer(der, what);
    }

    /// <summary>Parses a DER certificate.</summary>
    /// <exception cref="EifFormatException"><see cref="EifFormatError.InvalidCertificate"/>.</exception>
    public static EifCertificate FromDer(byte[] der, string what)
    {
        try
        {
            X509Certificate? parsed = new X509CertificateParser().ReadCertificate(der);
            if (parsed is null)
                throw Throw.InvalidCertificate(what, "holds no certificate");

            // Decoded now, so that a key BouncyCastle rejects (a point not on its curve, found by tools/fuzz) is a
            // certificate error here rather than a foreign exception later.
            var publicKey = parsed.GetPublicKey();
            _ = parsed.IssuerDN.GetOidList();
            return new EifCertificate(der, parsed, publicKey, what);
        }
        catch (Exception ex) when (ex is not EifFormatException)
        {
            throw Throw.InvalidCertificate(what, $"is not a usable X.509 certificate ({Printable(ex.Message)})", ex);
        }
    }

    /// <summary>The COSE algorithm of the certificate's key: ES256, ES384 or ES512 for P-256, P-384, P-521.</summary>
    /// <exception cref="EifFormatException"><see cref="EifFormatError.UnsupportedKey"/>: not EC, or another curve.</exception>
    public CoseAlgorithm Algorithm => AlgorithmOf(PublicKey, What);

    internal ECPublicKeyParameters PublicKey => _publicKey as ECPublicKeyParameters
        ?? throw new EifFormatException(EifFormatError.UnsupportedKey, $"{What}: the certificate's key is {KeyKind(_certificate)}, not EC; Nitro signatures are ECDSA on P-256, P-384 or P-521");

    /// <summary>Whether <paramref name="time"/> lies within the validity period.</summary>
    public bool IsValidAt(DateTimeOffset time) => time.UtcDateTime >= NotBefore && time.UtcDateTime <= NotAfter;

    /// <summary>Throws unless the certificate is valid at <paramref name="time"/>.</summary>
    /// <exception cref="EifFormatException"><see cref="EifFormatError.CertificateNotValid"/>.</exception>
    public void EnsureValidAt(DateTimeOffset time)
    {
        if (!IsValidAt(time))
        {
            string state = time.UtcDateTime < NotBefore ? "is not valid yet" : "has expired";
            throw new EifFormatException(
                EifFormatError.CertificateNotValid,
                $"{What}: the certificate {state}: valid from {NotBefore:yyyy-MM-ddTHH:mm:ssZ} to {NotAfter:yyyy-MM-ddTHH:mm:ssZ}, now is {time.UtcDateTime:yyyy-MM-ddTHH:mm:ssZ}");
        }
    }

    /// <summary>True when this certificate is a CA certificate (basicConstraints cA, and keyCertSign where keyUsage is present).</summary>
    public bool IsCertificateAuthority =>
        _certificate.GetBasicConstraints() >= 0 && (_certificate.GetKeyUsage() is not { } usage || usage[5]);

    /// <summary>
    /// True when this certificate is <paramref name="trusted"/> itself, or was issued by it: <paramref name="trusted"/>
    /// is a CA certificate valid at <paramref name="time"/>, this certificate names it as issuer and its signature
    /// verifies with the CA's key (as <c>openssl verify -CAfile</c> would accept one level).
    /// </summary>
    public bool IsSignedBy(EifCertificate trusted, DateTimeOffset time)
    {
        if (Der.AsSpan().SequenceEqual(trusted.Der))
            return true;
        if (!trusted.IsCertificateAuthority || !trusted.IsValidAt(time))
            return false;
        if (!_certificate.IssuerDN.Equivalent(trusted._certificate.SubjectDN))
            return false;
        try
        {
            _certificate.Verify(trusted._publicKey);
            return true;
        }
        catch (Exception ex) when (ex is Org.BouncyCastle.Security.Certificates.CertificateException or Org.BouncyCastle.Security.InvalidKeyException or Org.BouncyCastle.Crypto.CryptoException or ArgumentException)
        {
            return false;
        }
    }

    /// <summary>
    /// nitro-cli's <c>IssuerName</c> (reader <c>get_certificate_info</c>): the issuer's attributes keyed by OpenSSL
    /// long name, sorted, a repeated attribute keeping one value, each value rendered as Rust's Debug form of the
    /// string with the quote characters removed. An attribute OpenSSL has no name for is keyed by its dotted OID.
    /// </summary>
    public IReadOnlyList<KeyValuePair<string, string>> IssuerName()
    {
        var oids = _certificate.IssuerDN.GetOidList();
        var values = _certificate.IssuerDN.GetValueList();
        var map = new SortedDictionary<string, string>(StringComparer.Ordinal);
        for (int i = 0; i < oids.Count; i++)
            map[OpenSslNames.LongName(oids[i])] = RustDebugWithoutQuotes(values[i]);
        return map.ToList();
    }

    /// <summary>The signature algorithm's OpenSSL long name, e.g. <c>ecdsa-with-SHA384</c> (nitro-cli's <c>Algorithm</c>).</summary>
    public string SignatureAlgorithmName => OpenSslNames.LongName(new DerObjectIdentifier(_certificate.SigAlgOid));

    /// <summary>The certificate's own signature bytes as uppercase hex joined by ':' (nitro-cli's <c>Signature</c>).</summary>
    public string SignatureText => string.Join(':', _certificate.GetSignature().Select(b => b.ToString("X2", CultureInfo.InvariantCulture)));

    /// <summary>A time as OpenSSL's <c>ASN1_TIME_print</c> prints it, e.g. <c>Jan  5 12:00:00 2025 GMT</c>.</summary>
    public static string FormatAsn1Time(DateTime utc) =>
        string.Create(CultureInfo.InvariantCulture, $"{utc.ToString("MMM", CultureInfo.InvariantCulture)} {utc.Day,2} {utc:HH:mm:ss} {utc.Year} GMT");

    internal static CoseAlgorithm AlgorithmOf(ECPublicKeyParameters key, string what) => AlgorithmOf(key.Parameters, key.PublicKeyParamSet, what);

    internal static CoseAlgorithm AlgorithmOf(ECDomainParameters parameters, DerObjectIdentifier? namedCurve, string what)
    {
        foreach (var (oid, algorithm) in SupportedCurves)
        {
            if (namedCurve is not null ? namedCurve.Equals(oid) : SameCurve(parameters, ECNamedCurveTable.GetByOid(oid)))
                return algorithm;
        }

        string name = namedCurve is not null ? (ECNamedCurveTable.GetName(namedCurve) ?? namedCurve.Id) : $"an explicit {parameters.Curve.FieldSize}-bit curve";
        throw new EifFormatException(EifFormatError.UnsupportedKey, $"{what}: the EC key is on {name}; COSE signatures for Nitro use P-256 (ES256), P-384 (ES384) or P-521 (ES512)");
    }

    private static readonly (DerObjectIdentifier Oid, CoseAlgorithm Algorithm)[] SupportedCurves =
    [
        (SecObjectIdentifiers.SecP256r1, CoseAlgorithm.ES256),
        (SecObjectIdentifiers.SecP384r1, CoseAlgorithm.ES384),
        (SecObjectIdentifiers.SecP521r1, CoseAlgorithm.ES512),
    ];

    private static string Printable(string message) => PrintableText.Of(message, 160);

    private static bool SameCurve(ECDomainParameters parameters, X9ECParameters named) =>
        parameters.Curve.Equals(named.Curve) && parameters.G.Equals(named.G) && parameters.N.Equals(named.N);

    private static string KeyKind(X509Certificate certificate)
    {
        var algorithm = certificate.SubjectPublicKeyInfo.Algorithm.Algorithm;
        return OpenSslNames.LongName(algorithm);
    }

    // Rust's <str as Debug> escapes \\, \", \n, \r, \t, \0 and other controls as \u{..}; nitro-cli then deletes every '"'.
    private static string RustDebugWithoutQuotes(string value)
    {
        var sb = new StringBuilder(value.Length);
        foreach (Rune rune in value.EnumerateRunes())
        {
            switch (rune.Value)
            {
                case '\\': sb.Append("\\\\"); break;
                case '"': sb.Append('\\'); break; // "\"" with the quote removed
                case '\n': sb.Append("\\n"); break;
                case '\r': sb.Append("\\r"); break;
                case '\t': sb.Append("\\t"); break;
                case '\0': sb.Append("\\0"); break;
                default:
                    if (Rune.IsControl(rune))
                        sb.Append(CultureInfo.InvariantCulture, $"\\u{{{rune.Value:x}}}");
                    else
                        sb.Append(rune.ToString());
                    break;
            }
        }

        return sb.ToString();
    }
}

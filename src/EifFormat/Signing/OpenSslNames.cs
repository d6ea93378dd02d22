using Org.BouncyCastle.Asn1;

namespace EifFormat.Signing;

/// <summary>
/// OpenSSL's long names (<c>OBJ_nid2ln</c>, crypto/objects/objects.txt) for the OIDs that appear in certificate
/// names and signature algorithms, so that describe-eif prints what nitro-cli (rust-openssl) prints.
/// </summary>
internal static class OpenSslNames
{
    private static readonly Dictionary<string, string> LongNames = new(StringComparer.Ordinal)
    {
        // X.520 attribute types (2.5.4.x) and friends seen in distinguished names.
        ["2.5.4.3"] = "commonName",
        ["2.5.4.4"] = "surname",
        ["2.5.4.5"] = "serialNumber",
        ["2.5.4.6"] = "countryName",
        ["2.5.4.7"] = "localityName",
        ["2.5.4.8"] = "stateOrProvinceName",
        ["2.5.4.9"] = "streetAddress",
        ["2.5.4.10"] = "organizationName",
        ["2.5.4.11"] = "organizationalUnitName",
        ["2.5.4.12"] = "title",
        ["2.5.4.13"] = "description",
        ["2.5.4.15"] = "businessCategory",
        ["2.5.4.17"] = "postalCode",
        ["2.5.4.41"] = "name",
        ["2.5.4.42"] = "givenName",
        ["2.5.4.43"] = "initials",
        ["2.5.4.44"] = "generationQualifier",
        ["2.5.4.46"] = "dnQualifier",
        ["2.5.4.65"] = "pseudonym",
        ["2.5.4.97"] = "organizationIdentifier",
        ["1.2.840.113549.1.9.1"] = "emailAddress",
        ["0.9.2342.19200300.100.1.1"] = "userId",
        ["0.9.2342.19200300.100.1.25"] = "domainComponent",
        ["1.3.6.1.4.1.311.60.2.1.3"] = "jurisdictionCountryName",

        // Signature algorithms (RFC 5758, RFC 4055, RFC 8410).
        ["1.2.840.10045.4.1"] = "ecdsa-with-SHA1",
        ["1.2.840.10045.4.3.1"] = "ecdsa-with-SHA224",
        ["1.2.840.10045.4.3.2"] = "ecdsa-with-SHA256",
        ["1.2.840.10045.4.3.3"] = "ecdsa-with-SHA384",
        ["1.2.840.10045.4.3.4"] = "ecdsa-with-SHA512",
        ["1.2.840.113549.1.1.5"] = "sha1WithRSAEncryption",
        ["1.2.840.113549.1.1.10"] = "rsassaPss",
        ["1.2.840.113549.1.1.11"] = "sha256WithRSAEncryption",
        ["1.2.840.113549.1.1.12"] = "sha384WithRSAEncryption",
        ["1.2.840.113549.1.1.13"] = "sha512WithRSAEncryption",
        ["1.3.101.112"] = "ED25519",
        ["1.3.101.113"] = "ED448",

        // Public key algorithms.
        ["1.2.840.10045.2.1"] = "id-ecPublicKey",
        ["1.2.840.113549.1.1.1"] = "rsaEncryption",
        ["1.2.840.10040.4.1"] = "dsaEncryption",
    };

    /// <summary>OpenSSL's long name of <paramref name="oid"/>, or the dotted OID when OpenSSL has none listed here.</summary>
    internal static string LongName(DerObjectIdentifier oid) => LongNames.GetValueOrDefault(oid.Id, oid.Id);
}

using System.Buffers.Binary;
using System.Formats.Cbor;
using System.Security.Cryptography;
using System.Text;
using EifFormat.Json;
using EifFormat.Signing;
using EifTests.Shared;
using Org.BouncyCastle.Asn1.Sec;
using Org.BouncyCastle.Crypto.Parameters;
using Org.BouncyCastle.Crypto.Signers;
using IoCrc32 = System.IO.Hashing.Crc32;

namespace EifFormat.Tests;

public class SigningTests : IDisposable
{
    private static readonly byte[] SignedGolden = Golden.Bytes("synth_signed.eif");
    private readonly string _dir = Directory.CreateTempSubdirectory("eif-signing").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    // source: spec §14.1 (aws/aws-nitro-enclaves-image-format src/utils/cbor.rs, serde_cbor 0.11 bytes).
    [Fact]
    public void PcrInfo_SerdeCborVector_IsByteIdentical()
    {
        byte[] value = Enumerable.Range(0, 48).Select(i => (byte)i).ToArray();
        Assert.Equal(
            "a26e72656769737465725f696e646578006e72656769737465725f76616c75659830000102030405060708090a0b0c0d0e0f101112131415161718181819181a181b181c181d181e181f1820182118221823182418251826182718281829182a182b182c182d182e182f",
            Convert.ToHexStringLower(PcrInfo.Encode(0, value)));
        Assert.Equal(106, PcrInfo.Encode(0, value).Length);
        (int index, byte[] decoded) = PcrInfo.Decode(PcrInfo.Encode(0, value));
        Assert.Equal(0, index);
        Assert.Equal(value, decoded);
    }

    // source: spec §14.2 (aws-nitro-enclaves-cose header-map bytes).
    [Theory]
    [InlineData(CoseAlgorithm.ES256, "a10126")]
    [InlineData(CoseAlgorithm.ES384, "a1013822")]
    [InlineData(CoseAlgorithm.ES512, "a1013823")]
    public void ProtectedHeader_MatchesTheReference(CoseAlgorithm algorithm, string hex) =>
        Assert.Equal(hex, Convert.ToHexStringLower(CoseSign1.ProtectedHeaderFor(algorithm)));

    /// <summary>
    /// source: awslabs/aws-nitro-enclaves-cose src/sign.rs, cose_sign1_ec384_validate and get_ec384_test_key: a
    /// COSE_Sign1 "validated against COSE-C" with an unprotected header {4: '11'}. Decoding it and rebuilding its
    /// Sig_structure must give what the key signed.
    /// </summary>
    [Fact]
    public void Decode_AwsCoseInteropVector_SigStructureVerifiesWithItsKey()
    {
        byte[] text = "It is a truth universally acknowledged, that a single man in possession of a good fortune, must be in want of a wife."u8.ToArray();
        byte[] signature = Convert.FromHexString(
            "CD42D27632D5414E4B545C95FDE6E3505B93580F4B7731D14A86523175266CDEB24AFF2DE3364E9CEEE9F9F795A01515" +
            "5BC712AA2863E2AAF6078A819093FDFC7059A3F1467F64EC7E221FD163D80B3B552625CF379D1CBB9E5138CCD07A1931");
        byte[] cose = [0x84, 0x44, 0xA1, 0x01, 0x38, 0x22, 0xA1, 0x04, 0x42, 0x31, 0x31, 0x58, 0x75, .. text, 0x58, 0x60, .. signature];

        CoseSign1 decoded = CoseSign1.Decode(cose);

        Assert.Equal(CoseAlgorithm.ES384, decoded.Algorithm);
        Assert.Equal(text, decoded.Payload);
        var curve = SecNamedCurves.GetByName("secp384r1");
        var q = curve.Curve.CreatePoint(
            new Org.BouncyCastle.Math.BigInteger("5a829f62f2f4f095c0e922719285b4b981c677912870a413137a5d7319916fa8584a6036951d06ffeae99ca73ab1a2dc", 16),
            new Org.BouncyCastle.Math.BigInteger("e1b76e08cb20d6afcea7423f8b49ec841dde6f210a6174750bf8136a315494224df153184557a6c29a1d7994804f604c", 16));
        var verifier = new ECDsaSigner();
        verifier.Init(false, new ECPublicKeyParameters(q, new ECDomainParameters(curve)));
        byte[] digest = SHA384.HashData(decoded.ToBeSigned());
        Assert.True(verifier.VerifySignature(digest, new Org.BouncyCastle.Math.BigInteger(1, signature[..48]), new Org.BouncyCastle.Math.BigInteger(1, signature[48..])));
        digest[0] ^= 1;
        Assert.False(verifier.VerifySignature(digest, new Org.BouncyCastle.Math.BigInteger(1, signature[..48]), new Org.BouncyCastle.Math.BigInteger(1, signature[48..])));
    }

    [Fact]
    public void Check_GoldenSignature_PassesAndSignsItsPcr0()
    {
        using var reader = new EifReader(new MemoryStream(SignedGolden));
        byte[] pcr0 = reader.ComputeDigests().Measurements.Pcr0;

        EifSignatureCheck check = EifSigner.Check(reader.Signatures![0], pcr0);

        Assert.True(check.Passed);
        Assert.Equal(CoseAlgorithm.ES384, check.Algorithm);
        Assert.Equal(pcr0, check.SignedPcr0);
        var cose = CoseSign1.Decode(reader.Signatures[0].Signature);
        Assert.Equal(233, reader.Signatures[0].Signature.Length); // spec §14.5
        Assert.Equal(126, cose.Payload.Length);
        Assert.Equal("846a5369676e61747572653144a101382240587e", Convert.ToHexStringLower(cose.ToBeSigned().AsSpan(0, 20)));
    }

    /// <summary>
    /// Issue 3: flipping any single byte of the measured sections makes SignatureCheck false (the CRC repaired, so
    /// the signature is the only line of defence), or CheckCRC false (the CRC left alone); every position of a small
    /// signed image is tried.
    /// </summary>
    [Fact]
    public void Check_EveryMeasuredByteFlipped_FailsTheSignatureOrTheCrc()
    {
        var identity = TestPki.EcIdentity("P-384");
        byte[] image = BuildSigned(identity, kernel: RandomBytes(40, 1), cmdline: "console=ttyS0", ramdisks: [RandomBytes(24, 2), RandomBytes(20, 3)]);
        using (var clean = new EifReader(new MemoryStream(image)))
            Assert.True(EifSigner.Check(clean.Signatures![0], clean.ComputeDigests().Measurements.Pcr0).Passed);
        var measured = SectionsOf(image).Where(s => s.Type is EifSectionType.Kernel or EifSectionType.Cmdline or EifSectionType.Ramdisk).ToList();
        int positions = 0;

        foreach (var section in measured)
        {
            for (long offset = section.DataOffset; offset < section.End; offset++)
            {
                byte[] flipped = (byte[])image.Clone();
                flipped[offset] ^= 0x01;
                using (var reader = new EifReader(new MemoryStream(flipped)))
                    Assert.False(reader.ComputeDigests().CrcMatches, $"CRC still matches with byte {offset} flipped");

                byte[] repaired = RawEif.FixCrc(flipped);
                using (var reader = new EifReader(new MemoryStream(repaired)))
                {
                    var digests = reader.ComputeDigests();
                    Assert.True(digests.CrcMatches);
                    var check = EifSigner.Check(reader.Signatures![0], digests.Measurements.Pcr0);
                    Assert.True(check.SignatureVerified); // the signature itself is intact…
                    Assert.False(check.PayloadMatchesPcr0, $"byte {offset} flipped, the signature still matches PCR0"); // …but signs another PCR0
                    Assert.False(check.Passed);
                }

                positions++;
            }
        }

        Assert.Equal(40 + 13 + 24 + 20, positions);
    }

    [Theory]
    [InlineData("P-256", CoseAlgorithm.ES256, 64)]
    [InlineData("P-384", CoseAlgorithm.ES384, 96)]
    [InlineData("P-521", CoseAlgorithm.ES512, 132)]
    public void CreateSection_EachCurve_DecodesToTheReferenceStructureAndVerifies(string curve, CoseAlgorithm algorithm, int signatureLength)
    {
        var identity = TestPki.EcIdentity(curve);
        var key = LoadKey(identity);
        byte[] pcr0 = RandomBytes(48, 4);

        byte[] section = EifSigner.CreateSection(identity.CertificatePem, key, pcr0);
        var entry = Assert.Single(EifSignatureSection.Decode(section));
        var cose = CoseSign1.Decode(entry.Signature);

        Assert.Equal(identity.CertificatePem, entry.SigningCertificate);
        Assert.Equal(algorithm, key.Algorithm);
        Assert.Equal(CoseSign1.ProtectedHeaderFor(algorithm), cose.ProtectedHeader);
        Assert.Equal(PcrInfo.Encode(0, pcr0), cose.Payload);
        Assert.Equal(signatureLength, cose.Signature.Length);
        Assert.Equal(0x84, entry.Signature[0]); // untagged, as the reference writes
        Assert.Equal(cose.Encode(), entry.Signature);
        Assert.True(EifSigner.Check(entry, pcr0).Passed);
        Assert.Equal(section, EifSigner.CreateSection(identity.CertificatePem, key, pcr0)); // RFC 6979: deterministic
    }

    [Fact]
    public void Check_AlgorithmOfAnotherCurve_DoesNotVerify()
    {
        // The reference's verify_signature returns false when the protected alg is not the key curve's algorithm.
        var identity = TestPki.EcIdentity("P-384");
        byte[] pcr0 = RandomBytes(48, 5);
        var tbs = EifSigner.ToBeSigned(CoseAlgorithm.ES256, pcr0);
        var cose = new CoseSign1(CoseAlgorithm.ES256, CoseSign1.ProtectedHeaderFor(CoseAlgorithm.ES256), PcrInfo.Encode(0, pcr0), LoadKey(identity).SignDigest(tbs.Digest)[..64]);
        var entry = new EifPcrSignature(identity.CertificatePem, cose.Encode());

        Assert.False(EifSigner.Check(entry, pcr0).SignatureVerified);
    }

    public static TheoryData<string, EifFormatError> MalformedEntries() => new()
    {
        { "tag-17", EifFormatError.InvalidCose },
        { "array-of-3", EifFormatError.InvalidCose },
        { "no-alg", EifFormatError.InvalidCose },
        { "alg-eddsa", EifFormatError.InvalidCose },
        { "cose-trailing-byte", EifFormatError.InvalidCose },
        { "null-payload", EifFormatError.InvalidCose },
        { "not-cbor", EifFormatError.InvalidCose },
        { "payload-index-1", EifFormatError.InvalidPcrInfo },
        { "payload-not-pcrinfo", EifFormatError.InvalidPcrInfo },
        { "certificate-not-x509", EifFormatError.InvalidCertificate },
        { "certificate-rsa", EifFormatError.UnsupportedKey },
        { "certificate-secp256k1", EifFormatError.UnsupportedKey },
        { "certificate-invalid-point", EifFormatError.InvalidCertificate }, // found by tools/fuzz (seed 5)
    };

    /// <summary>Issue 3's bad inputs: each is an error code of ours, never an exception from a dependency.</summary>
    [Theory]
    [MemberData(nameof(MalformedEntries))]
    public void Check_MalformedEntry_FailsWithItsErrorCode(string name, EifFormatError error)
    {
        var identity = TestPki.EcIdentity("P-384");
        byte[] pcr0 = RandomBytes(48, 6);
        byte[] good = EifSigner.CreateSection(identity.CertificatePem, LoadKey(identity), pcr0);
        var entry = EifSignatureSection.Decode(good)[0];
        var cose = CoseSign1.Decode(entry.Signature);
        byte[] protectedHeader = cose.ProtectedHeader;

        EifPcrSignature bad = name switch
        {
            "tag-17" => entry with { Signature = [0xD1, .. entry.Signature] },
            "array-of-3" => entry with { Signature = [0x83, .. entry.Signature[1..^(cose.Signature.Length + 2)]] },
            "no-alg" => entry with { Signature = Rebuild(cose, [0xA1, 0x04, 0x41, 0x00]) },
            "alg-eddsa" => entry with { Signature = Rebuild(cose, [0xA1, 0x01, 0x27]) },
            "cose-trailing-byte" => entry with { Signature = [.. entry.Signature, 0x00] },
            "null-payload" => entry with { Signature = NullPayload(cose) },
            "not-cbor" => entry with { Signature = [0xFF] },
            "payload-index-1" => entry with { Signature = (cose with { Payload = PcrInfo.Encode(1, pcr0) }).Encode() },
            "payload-not-pcrinfo" => entry with { Signature = (cose with { Payload = "hello"u8.ToArray() }).Encode() },
            "certificate-not-x509" => entry with { SigningCertificate = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"u8.ToArray() },
            "certificate-rsa" => entry with { SigningCertificate = TestPki.Certificate(TestPki.RsaKeys(), "rsa").CertificatePem },
            "certificate-secp256k1" => entry with { SigningCertificate = TestPki.EcIdentity("secp256k1").CertificatePem },
            "certificate-invalid-point" => entry with { SigningCertificate = WithPointOffTheCurve(identity) },
            _ => throw new ArgumentOutOfRangeException(nameof(name)),
        };

        var ex = Assert.Throws<EifFormatException>(() => EifSigner.Check(bad, pcr0));
        Assert.Equal(error, ex.Error);
        Assert.DoesNotContain('\n', ex.Message);
        _ = protectedHeader;

        static byte[] Rebuild(CoseSign1 cose, byte[] protectedHeader)
        {
            var writer = new CborWriter(CborConformanceMode.Lax);
            writer.WriteStartArray(4);
            writer.WriteByteString(protectedHeader);
            writer.WriteStartMap(0);
            writer.WriteEndMap();
            writer.WriteByteString(cose.Payload);
            writer.WriteByteString(cose.Signature);
            writer.WriteEndArray();
            return writer.Encode();
        }

        static byte[] NullPayload(CoseSign1 cose)
        {
            var writer = new CborWriter(CborConformanceMode.Lax);
            writer.WriteStartArray(4);
            writer.WriteByteString(cose.ProtectedHeader);
            writer.WriteStartMap(0);
            writer.WriteEndMap();
            writer.WriteNull();
            writer.WriteByteString(cose.Signature);
            writer.WriteEndArray();
            return writer.Encode();
        }
    }

    [Fact]
    public void Decode_Tag18_IsAccepted()
    {
        var identity = TestPki.EcIdentity("P-256");
        byte[] pcr0 = RandomBytes(48, 7);
        var entry = EifSignatureSection.Decode(EifSigner.CreateSection(identity.CertificatePem, LoadKey(identity), pcr0))[0];

        Assert.True(EifSigner.Check(entry with { Signature = [0xD2, .. entry.Signature] }, pcr0).Passed);
    }

    [Theory]
    [InlineData(TestPki.KeyFormat.Sec1)]
    [InlineData(TestPki.KeyFormat.Pkcs8)]
    [InlineData(TestPki.KeyFormat.EncryptedPkcs8)]
    public void Load_EachPemFormat_SignsVerifiably(TestPki.KeyFormat format)
    {
        var identity = TestPki.EcIdentity("P-384");
        string path = Write("key.pem", identity.KeyPem(format, "correct horse"));

        var key = EifSigningKey.Load(path, () => "correct horse");

        Assert.True(key.Matches(EifCertificate.FromPem(identity.CertificatePem, "cert")));
        Assert.Equal(CoseAlgorithm.ES384, key.Algorithm);
    }

    [Theory]
    [InlineData("wrong passphrase", EifFormatError.InvalidPrivateKey)]
    [InlineData(null, EifFormatError.InvalidPrivateKey)]
    public void Load_EncryptedKeyWithoutTheRightPassphrase_IsAClearError(string? passphrase, EifFormatError error)
    {
        string path = Write("enc.pem", TestPki.EcIdentity("P-384").KeyPem(TestPki.KeyFormat.EncryptedPkcs8, "right"));
        var ex = Assert.Throws<EifFormatException>(() => EifSigningKey.Load(path, () => passphrase));
        Assert.Equal(error, ex.Error);
        Assert.Contains("passphrase", ex.Message);
    }

    [Fact]
    public void Load_UnusableKeys_AreRefusedWithCodes()
    {
        var rsa = Assert.Throws<EifFormatException>(() => EifSigningKey.Load(Write("rsa.pem", TestPki.ToPem(TestPki.RsaKeys())), () => null));
        Assert.Equal(EifFormatError.UnsupportedKey, rsa.Error);
        Assert.Contains("the private key is RSA, not EC", rsa.Message);
        Assert.Equal(EifFormatError.UnsupportedKey, Assert.Throws<EifFormatException>(() => EifSigningKey.Load(Write("k1.pem", TestPki.EcIdentity("secp256k1").KeyPem()), () => null)).Error);
        Assert.Equal(EifFormatError.InvalidPrivateKey, Assert.Throws<EifFormatException>(() => EifSigningKey.Load(Write("cert.pem", Encoding.ASCII.GetString(TestPki.EcIdentity().CertificatePem)), () => null)).Error);
        Assert.Equal(EifFormatError.InvalidPrivateKey, Assert.Throws<EifFormatException>(() => EifSigningKey.Load(Write("junk.pem", "not pem at all"), () => null)).Error);
        var kms = Assert.Throws<EifFormatException>(() => EifSigningKey.Load("arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab", () => null));
        Assert.Equal(EifFormatError.InvalidPrivateKey, kms.Error);
        Assert.Contains("--export-to-be-signed", kms.Message);
    }

    [Fact]
    public void EnsureUsable_ChecksKeyMatchAndValidity()
    {
        var identity = TestPki.EcIdentity("P-384");
        var certificate = EifCertificate.FromPem(identity.CertificatePem, "cert");
        var now = DateTimeOffset.UtcNow;
        EifSigner.EnsureUsable(certificate, LoadKey(identity), now);

        Assert.Equal(EifFormatError.KeyMismatch, Assert.Throws<EifFormatException>(() => EifSigner.EnsureUsable(certificate, LoadKey(TestPki.EcIdentity("P-384")), now)).Error);
        Assert.Equal(EifFormatError.KeyMismatch, Assert.Throws<EifFormatException>(() => EifSigner.EnsureUsable(certificate, LoadKey(TestPki.EcIdentity("P-256")), now)).Error);
        var expired = EifCertificate.FromPem(TestPki.EcIdentity("P-384", notBefore: DateTime.UtcNow.AddYears(-2), notAfter: DateTime.UtcNow.AddYears(-1)).CertificatePem, "old");
        var ex = Assert.Throws<EifFormatException>(() => EifSigner.EnsureUsable(expired, null, now));
        Assert.Equal(EifFormatError.CertificateNotValid, ex.Error);
        Assert.Contains("has expired", ex.Message);
        var future = EifCertificate.FromPem(TestPki.EcIdentity("P-384", notBefore: DateTime.UtcNow.AddDays(1)).CertificatePem, "new");
        Assert.Contains("not valid yet", Assert.Throws<EifFormatException>(() => EifSigner.EnsureUsable(future, null, now)).Message);
    }

    [Fact]
    public void AcceptExternalSignature_DerRawAndBase64_AreAcceptedAndOthersRefused()
    {
        var identity = TestPki.EcIdentity("P-384");
        var certificate = EifCertificate.FromPem(identity.CertificatePem, "cert");
        var tbs = EifSigner.ToBeSigned(CoseAlgorithm.ES384, RandomBytes(48, 8));
        byte[] raw = LoadKey(identity).SignDigest(tbs.Digest);
        byte[] der = new Org.BouncyCastle.Asn1.DerSequence(
            new Org.BouncyCastle.Asn1.DerInteger(new Org.BouncyCastle.Math.BigInteger(1, raw[..48])),
            new Org.BouncyCastle.Asn1.DerInteger(new Org.BouncyCastle.Math.BigInteger(1, raw[48..]))).GetEncoded();

        Assert.Equal(raw, EifSigner.AcceptExternalSignature(certificate, tbs, der, "sig"));
        Assert.Equal(raw, EifSigner.AcceptExternalSignature(certificate, tbs, raw, "sig"));
        Assert.Equal(raw, EifSigner.AcceptExternalSignature(certificate, tbs, Encoding.ASCII.GetBytes(Convert.ToBase64String(der) + "\n"), "sig"));
        var otherImage = EifSigner.ToBeSigned(CoseAlgorithm.ES384, RandomBytes(48, 9));
        var ex = Assert.Throws<EifFormatException>(() => EifSigner.AcceptExternalSignature(certificate, otherImage, der, "sig"));
        Assert.Equal(EifFormatError.SignatureMismatch, ex.Error);
        Assert.Null(EcdsaSignatures.FromDer([.. der, 0x00], 48)); // trailing byte: not strict DER
    }

    [Fact]
    public void SignFile_UnsignedThenResignedWithAnotherCurve_KeepsTheTableConsistent()
    {
        string unsigned = Path.Combine(_dir, "u.eif");
        File.Copy(Golden.PathOf("synth_sha384_named.eif"), unsigned);
        var p384 = TestPki.EcIdentity("P-384");
        var p521 = TestPki.EcIdentity("P-521");
        string signed = Path.Combine(_dir, "s.eif");

        var first = EifSigner.SignFile(unsigned, signed, pcr0 => EifSigner.CreateSection(p384.CertificatePem, LoadKey(p384), pcr0));
        var second = EifSigner.SignFile(signed, signed, pcr0 => EifSigner.CreateSection(p521.CertificatePem, LoadKey(p521), pcr0));

        Assert.Equal(Golden.Bytes("synth_sha384_named.eif"), File.ReadAllBytes(unsigned));
        Assert.Equal(6, first.Sections.Count);
        Assert.Equal(6, second.Sections.Count);
        Assert.NotEqual(first.Sections[5].Size, second.Sections[5].Size); // P-521 signatures are longer
        using var reader = EifReader.Open(signed); // strict: table sizes checked against every section header
        var digests = reader.ComputeDigests();
        Assert.True(digests.CrcMatches);
        Assert.Equal((ulong)second.Sections[5].Size, reader.Header.Table.Sizes[5]);
        Assert.Equal(Golden.Pcrs("synth_sha384_named")["PCR0"], Pcr.ToHex(digests.Measurements.Pcr0));
        Assert.Equal(Pcr.Compute(EifCertificate.FromPem(p521.CertificatePem, "c").Der), digests.Measurements.Pcr8);
        var check = EifSigner.Check(reader.Signatures![0], digests.Measurements.Pcr0);
        Assert.True(check.Passed);
        Assert.Equal(CoseAlgorithm.ES512, check.Algorithm);
        Assert.Empty(Directory.GetFiles(_dir, "*.tmp"));
    }

    [Fact]
    public void SignFile_BadCrc_IsRefusedAndWritesNothing()
    {
        byte[] bytes = Golden.Bytes("synth_sha384_named.eif");
        bytes[700] ^= 1;
        string path = Path.Combine(_dir, "bad.eif");
        File.WriteAllBytes(path, bytes);
        var identity = TestPki.EcIdentity();

        var ex = Assert.Throws<EifFormatException>(() => EifSigner.SignFile(path, Path.Combine(_dir, "out.eif"), pcr0 => EifSigner.CreateSection(identity.CertificatePem, LoadKey(identity), pcr0)));

        Assert.Equal(EifFormatError.ChecksumMismatch, ex.Error);
        Assert.Equal([path], Directory.GetFiles(_dir));
    }

    [Fact]
    public void Writer_SignatureAfterMeasurement_SignsThePcr0ItJustComputed()
    {
        var identity = TestPki.EcIdentity("P-256");
        var key = LoadKey(identity);
        byte[] image = BuildSigned(identity, RandomBytes(100, 10), "x", [RandomBytes(9 << 20, 11)]); // parallel path
        using var reader = new EifReader(new MemoryStream(image));
        var digests = reader.ComputeDigests();
        Assert.True(EifSigner.Check(reader.Signatures![0], digests.Measurements.Pcr0).Passed);
        Assert.Equal(EifSectionType.Signature, reader.Sections[^1].Type);
        _ = key;
    }

    [Fact]
    public void EnsureSectionFits_HugeCertificate_IsTooLarge()
    {
        byte[] pem = [.. TestPki.EcIdentity().CertificatePem, .. Encoding.ASCII.GetBytes("# " + new string('x', 17000) + "\n")];
        Assert.Equal(EifFormatError.SignatureTooLarge, Assert.Throws<EifFormatException>(() => EifSigner.EnsureSectionFits(pem, CoseAlgorithm.ES384)).Error);
    }

    [Fact]
    public void CertificateInfo_FormatsLikeNitroCli()
    {
        var keys = TestPki.EcKeys("P-384");
        var issuer = TestPki.Certificate(keys, "Quote \" and back\\slash", new DateTime(2025, 1, 5, 12, 0, 0, DateTimeKind.Utc), new DateTime(2035, 11, 25, 8, 9, 10, DateTimeKind.Utc));
        var certificate = EifCertificate.FromPem(issuer.CertificatePem, "c");

        Assert.Equal([new("commonName", "Quote \\ and back\\\\slash"), new("organizationName", "EIF Toolchain Tests")], certificate.IssuerName());
        Assert.Equal("ecdsa-with-SHA384", certificate.SignatureAlgorithmName);
        Assert.Equal("Jan  5 12:00:00 2025 GMT", EifCertificate.FormatAsn1Time(certificate.NotBefore));
        Assert.Equal("Nov 25 08:09:10 2035 GMT", EifCertificate.FormatAsn1Time(certificate.NotAfter));
        Assert.Matches("^30:[0-9A-F]{2}(:[0-9A-F]{2})+$", certificate.SignatureText);
    }

    [Fact]
    public void IsSignedBy_SelfAndIssuer_AreTrustedOthersNot()
    {
        var ca = TestPki.Certificate(TestPki.EcKeys("P-384"), "test CA", ca: true);
        var leaf = TestPki.Certificate(TestPki.EcKeys("P-384"), "leaf", issuer: ca);
        var stranger = TestPki.EcIdentity("P-384", "stranger");
        var leafCert = EifCertificate.FromPem(leaf.CertificatePem, "leaf");

        var now = DateTimeOffset.UtcNow;

        Assert.True(leafCert.IsSignedBy(leafCert, now));
        Assert.True(leafCert.IsSignedBy(EifCertificate.FromPem(ca.CertificatePem, "ca"), now));
        Assert.False(leafCert.IsSignedBy(EifCertificate.FromPem(stranger.CertificatePem, "stranger"), now));
    }

    [Fact]
    public void IsSignedBy_IssuerThatIsNotACaOrNotValid_IsNotTrusted()
    {
        // As `openssl verify -CAfile` would: an issuer without basicConstraints cA, or outside its validity, is no CA.
        var notCa = TestPki.Certificate(TestPki.EcKeys("P-384"), "not a CA");
        var leaf = TestPki.Certificate(TestPki.EcKeys("P-384"), "leaf", issuer: notCa);
        var expiredCa = TestPki.Certificate(TestPki.EcKeys("P-384"), "old CA", DateTime.UtcNow.AddYears(-3), DateTime.UtcNow.AddYears(-1), ca: true);
        var leafOfExpired = TestPki.Certificate(TestPki.EcKeys("P-384"), "leaf2", issuer: expiredCa);
        var now = DateTimeOffset.UtcNow;

        Assert.False(EifCertificate.FromPem(leaf.CertificatePem, "leaf").IsSignedBy(EifCertificate.FromPem(notCa.CertificatePem, "issuer"), now));
        Assert.False(EifCertificate.FromPem(leafOfExpired.CertificatePem, "leaf2").IsSignedBy(EifCertificate.FromPem(expiredCa.CertificatePem, "old"), now));
        Assert.True(EifCertificate.FromPem(leafOfExpired.CertificatePem, "leaf2").IsSignedBy(EifCertificate.FromPem(expiredCa.CertificatePem, "old"), now.AddYears(-2)));
    }

    // The certificate with the last byte of its public point changed: still DER, no longer a point on P-384.
    private static byte[] WithPointOffTheCurve(TestPki.Identity identity)
    {
        byte[] der = identity.Certificate.GetEncoded();
        byte[] point = identity.Certificate.CertificateStructure.SubjectPublicKeyInfo.PublicKey.GetBytes();
        int at = der.AsSpan().IndexOf(point);
        der[at + point.Length - 1] ^= 0x01;
        return Encoding.ASCII.GetBytes("-----BEGIN CERTIFICATE-----\n" + Convert.ToBase64String(der, Base64FormattingOptions.InsertLineBreaks) + "\n-----END CERTIFICATE-----\n");
    }

    private static EifSigningKey LoadKey(TestPki.Identity identity)
    {
        string path = Path.Combine(Path.GetTempPath(), $"eif-key-{Guid.NewGuid():N}.pem");
        File.WriteAllText(path, identity.KeyPem());
        try
        {
            return EifSigningKey.Load(path, () => null);
        }
        finally
        {
            File.Delete(path);
        }
    }

    private static byte[] BuildSigned(TestPki.Identity identity, byte[] kernel, string cmdline, byte[][] ramdisks)
    {
        var key = LoadKey(identity);
        var spec = new EifImageSpec
        {
            Kernel = EifSectionSource.FromBytes(kernel, "kernel"),
            Cmdline = cmdline,
            Ramdisks = ramdisks.Select((r, i) => EifSectionSource.FromBytes(r, $"r{i}")).ToList(),
            Metadata = new EifMetadata("t", "1", new EifBuildInfo("2024-01-01T00:00:00+00:00", "eif", "0", "OS", "kernel"), JNull.Instance, JNull.Instance),
            Signature = EifSectionSource.AfterMeasurement(pcr0 => EifSigner.CreateSection(identity.CertificatePem, key, pcr0), "signature"),
        };
        var output = new MemoryStream();
        EifWriter.Write(output, spec.ToHeaderFields(), spec.ToSections());
        return output.ToArray();
    }

    private static IReadOnlyList<EifSection> SectionsOf(byte[] image)
    {
        using var reader = new EifReader(new MemoryStream(image));
        return reader.Sections;
    }

    private static byte[] RandomBytes(int length, int seed)
    {
        byte[] bytes = new byte[length];
        new Random(seed).NextBytes(bytes);
        return bytes;
    }

    private string Write(string name, string text)
    {
        string path = Path.Combine(_dir, name);
        File.WriteAllText(path, text);
        return path;
    }
}

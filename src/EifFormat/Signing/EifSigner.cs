using System.Text;

namespace EifFormat.Signing;

/// <summary>What checking an image's signature found (describe-eif's <c>SignatureCheck</c> and more).</summary>
/// <param name="Certificate">The signing certificate.</param>
/// <param name="Algorithm">The COSE algorithm of the signature.</param>
/// <param name="SignatureVerified">The COSE signature verifies with the certificate's key (and names its curve's algorithm).</param>
/// <param name="PayloadMatchesPcr0">The signed payload is, byte for byte, the CBOR of <c>PcrInfo{0, PCR0}</c> of this file.</param>
/// <param name="SignedPcr0">The PCR0 value the payload claims.</param>
public sealed record EifSignatureCheck(
    EifCertificate Certificate, CoseAlgorithm Algorithm, bool SignatureVerified, bool PayloadMatchesPcr0, byte[] SignedPcr0)
{
    /// <summary>Both hold: what nitro-cli's describe-eif reports as <c>SignatureCheck</c> (and what it errors on otherwise).</summary>
    public bool Passed => SignatureVerified && PayloadMatchesPcr0;

    /// <summary>Why the check failed, in one clause naming the algorithm, subject or both PCR0 values; null when it passed.</summary>
    /// <param name="pcr0">The image's PCR0.</param>
    public string? FailureReason(byte[] pcr0)
    {
        if (!SignatureVerified)
            return $"signature check failed: the {Algorithm} COSE signature does not verify with the signing certificate's key (subject {Certificate.Subject})";
        if (!PayloadMatchesPcr0)
            return $"signature check failed: the signature signs PCR0 {Pcr.ToHex(SignedPcr0)}, but the image's PCR0 is {Pcr.ToHex(pcr0)}";
        return null;
    }
}

/// <summary>What a detached signer must sign (spec §7.3; RFC 9052 §4.4).</summary>
/// <param name="Pcr0">The image's PCR0.</param>
/// <param name="Algorithm">The algorithm of the certificate's key.</param>
/// <param name="ToBeSigned">The COSE Sig_structure bytes: sign these with the algorithm's hash (e.g. <c>openssl dgst -sha384 -sign</c>).</param>
/// <param name="Digest">Their digest: sign this as a pre-computed digest (e.g. KMS <c>--message-type DIGEST</c>).</param>
public sealed record EifToBeSigned(byte[] Pcr0, CoseAlgorithm Algorithm, byte[] ToBeSigned, byte[] Digest);

/// <summary>
/// Signing and verifying EIFs the way the reference does (spec §7, §12), with its gaps closed: the key is checked
/// against the certificate before anything is written, re-signing updates the size table, a detached flow serves HSMs
/// and KMS, and verification checks the signature and that it signs this file's PCR0.
/// </summary>
public static class EifSigner
{
    /// <summary>
    /// Checks a certificate and a key before signing: the key is EC on a supported curve, the certificate holds its
    /// public key, and the certificate is valid at <paramref name="now"/>.
    /// </summary>
    /// <exception cref="EifFormatException"><see cref="EifFormatError.UnsupportedKey"/>, <see cref="EifFormatError.KeyMismatch"/> or <see cref="EifFormatError.CertificateNotValid"/>.</exception>
    public static void EnsureUsable(EifCertificate certificate, EifSigningKey? key, DateTimeOffset now)
    {
        CoseAlgorithm algorithm = certificate.Algorithm;
        if (key is not null && (key.Algorithm != algorithm || !key.Matches(certificate)))
        {
            throw new EifFormatException(EifFormatError.KeyMismatch,
                $"{certificate.What}: the private key ({CoseAlgorithms.CurveName(key.Algorithm)}) does not belong to this certificate ({CoseAlgorithms.CurveName(algorithm)}, subject {certificate.Subject})");
        }

        certificate.EnsureValidAt(now);
    }

    /// <summary>The Sig_structure and digest to sign for an image whose PCR0 is <paramref name="pcr0"/>.</summary>
    public static EifToBeSigned ToBeSigned(CoseAlgorithm algorithm, byte[] pcr0)
    {
        byte[] tbs = CoseSign1.ToBeSigned(CoseSign1.ProtectedHeaderFor(algorithm), PcrInfo.Encode(0, pcr0));
        return new EifToBeSigned(pcr0, algorithm, tbs, CoseAlgorithms.Digest(algorithm, tbs));
    }

    /// <summary>The signature section for <paramref name="pcr0"/>, signed with a local key.</summary>
    public static byte[] CreateSection(byte[] certificatePem, EifSigningKey key, byte[] pcr0)
    {
        EifToBeSigned tbs = ToBeSigned(key.Algorithm, pcr0);
        return CreateSection(certificatePem, tbs, key.SignDigest(tbs.Digest));
    }

    /// <summary>The signature section from a raw r‖s signature of <paramref name="tbs"/>'s digest.</summary>
    public static byte[] CreateSection(byte[] certificatePem, EifToBeSigned tbs, byte[] rawSignature)
    {
        var cose = new CoseSign1(tbs.Algorithm, CoseSign1.ProtectedHeaderFor(tbs.Algorithm), PcrInfo.Encode(0, tbs.Pcr0), rawSignature);
        byte[] section = EifSignatureSection.Encode([new EifPcrSignature(certificatePem, cose.Encode())]);
        if (section.Length > EifConstants.MaxSignatureSize)
            Throw.SignatureTooLarge(section.Length);
        return section;
    }

    /// <summary>
    /// The largest signature section a certificate can give (every PCR0 byte ≥ 0x18 costs two bytes), so that a
    /// certificate too large for the 32768-byte limit is refused before anything is written.
    /// </summary>
    /// <exception cref="EifFormatException"><see cref="EifFormatError.SignatureTooLarge"/>.</exception>
    public static void EnsureSectionFits(byte[] certificatePem, CoseAlgorithm algorithm)
    {
        byte[] worstPcr0 = Enumerable.Repeat((byte)0xFF, Pcr.Size).ToArray();
        byte[] worstSignature = Enumerable.Repeat((byte)0xFF, 2 * CoseAlgorithms.ScalarSize(algorithm)).ToArray();
        CreateSection(certificatePem, ToBeSigned(algorithm, worstPcr0), worstSignature);
    }

    /// <summary>
    /// Finds which encoding an externally made signature is in and returns it as raw r‖s, if it verifies: DER
    /// ECDSA-Sig-Value (openssl dgst -sign, AWS KMS), raw r‖s (PKCS#11 CKM_ECDSA), either one base64-encoded.
    /// </summary>
    /// <exception cref="EifFormatException"><see cref="EifFormatError.SignatureMismatch"/>: none of them verifies.</exception>
    public static byte[] AcceptExternalSignature(EifCertificate certificate, EifToBeSigned tbs, byte[] signature, string what)
    {
        int size = CoseAlgorithms.ScalarSize(tbs.Algorithm);
        foreach (byte[] candidate in Decodings(signature))
        {
            foreach (byte[]? raw in new[] { EcdsaSignatures.FromDer(candidate, size), candidate.Length == 2 * size ? candidate : null })
            {
                if (raw is not null && EcdsaSignatures.Verify(certificate, tbs.Algorithm, tbs.Digest, raw))
                    return raw;
            }
        }

        throw new EifFormatException(EifFormatError.SignatureMismatch,
            $"{what}: the signature ({signature.Length} bytes) does not verify with {certificate.What} over this image's {tbs.Algorithm} Sig_structure (PCR0 {Pcr.ToHex(tbs.Pcr0)}); was it made for another image, key or hash?");

        static IEnumerable<byte[]> Decodings(byte[] bytes)
        {
            yield return bytes;
            string text = Encoding.ASCII.GetString(bytes).Trim();
            if (text.Length > 0 && text.All(c => char.IsAsciiLetterOrDigit(c) || c is '+' or '/' or '=' or '\n' or '\r'))
            {
                byte[]? decoded = null;
                try
                {
                    decoded = Convert.FromBase64String(text);
                }
                catch (FormatException)
                {
                }

                if (decoded is not null)
                    yield return decoded;
            }
        }
    }

    /// <summary>
    /// Checks the first entry of a signature section against an image's PCR0 (spec §7.5): the COSE signature must
    /// verify with the certificate's key under the algorithm of its curve, and the payload must be the exact CBOR of
    /// <c>PcrInfo{0, PCR0}</c>.
    /// </summary>
    /// <exception cref="EifFormatException">The entry is malformed: <see cref="EifFormatError.InvalidCertificate"/>,
    /// <see cref="EifFormatError.InvalidCose"/>, <see cref="EifFormatError.InvalidPcrInfo"/> (another register than
    /// PCR0 included) or <see cref="EifFormatError.UnsupportedKey"/>.</exception>
    public static EifSignatureCheck Check(EifPcrSignature entry, byte[] pcr0)
    {
        var certificate = EifCertificate.FromPem(entry.SigningCertificate, "signature section 'signing_certificate'");
        CoseAlgorithm keyAlgorithm = certificate.Algorithm;
        var cose = CoseSign1.Decode(entry.Signature);
        (int index, byte[] signedValue) = PcrInfo.Decode(cose.Payload);
        if (index != 0)
            throw new EifFormatException(EifFormatError.InvalidPcrInfo, $"the signed payload is for PCR{index}; an EIF signature signs PCR0");
        bool verified = cose.Algorithm == keyAlgorithm
            && EcdsaSignatures.Verify(certificate, cose.Algorithm, CoseAlgorithms.Digest(cose.Algorithm, cose.ToBeSigned()), cose.Signature);
        bool payloadMatches = cose.Payload.AsSpan().SequenceEqual(PcrInfo.Encode(0, pcr0));
        return new EifSignatureCheck(certificate, cose.Algorithm, verified, payloadMatches, signedValue);
    }

    /// <summary>
    /// Signs the EIF at <paramref name="eifPath"/> into <paramref name="outputPath"/> (the same path is fine: the write
    /// is atomic): an unsigned image gets the signature section appended, a signed one has it replaced where it is,
    /// with offsets, sizes and the CRC rewritten (the reference's sign-eif leaves a stale size, image-format#54).
    /// The input must be a valid EIF with a matching CRC.
    /// </summary>
    /// <param name="eifPath">The image to sign.</param>
    /// <param name="outputPath">Where to write the signed image.</param>
    /// <param name="makeSection">Builds the signature section from PCR0.</param>
    /// <exception cref="EifFormatException">The input is invalid, or the section is.</exception>
    /// <exception cref="IOException">Reading or writing failed.</exception>
    public static EifWriteResult SignFile(string eifPath, string outputPath, Func<byte[], byte[]> makeSection)
    {
        using var reader = EifReader.Open(eifPath);
        EifDigests digests = reader.ComputeDigests();
        if (digests.ChecksumError is { } crcError)
            throw crcError.WithPath(eifPath);
        byte[] pcr0 = digests.Measurements.Pcr0;
        byte[] section = makeSection(pcr0);

        var inputs = new List<EifSectionInput>(reader.Sections.Count + 1);
        bool replaced = false;
        foreach (var s in reader.Sections)
        {
            if (s.Type == EifSectionType.Signature)
            {
                inputs.Add(new EifSectionInput(EifSectionType.Signature, EifSectionSource.FromBytes(section, "the new signature section")));
                replaced = true;
            }
            else
            {
                inputs.Add(new EifSectionInput(s.Type, EifSectionSource.FromStream(reader.OpenSection(s.Index), $"{eifPath} section {s.Index}", s.Size)));
            }
        }

        if (!replaced)
            inputs.Add(new EifSectionInput(EifSectionType.Signature, EifSectionSource.FromBytes(section, "the new signature section")));
        return AtomicFile.Write(outputPath, stream =>
        {
            EifWriteResult result = EifWriter.Write(stream, EifHeaderFields.From(reader.Header), inputs);

            // Measured again while copying: the copy must carry the bytes that were signed, or it is not kept.
            if (!result.Measurements.Pcr0.AsSpan().SequenceEqual(pcr0))
                throw new IOException($"{eifPath} changed while it was being signed (PCR0 differs); nothing was written");
            return result;
        });
    }
}

namespace EifFormat.Tests;

public class SignatureSectionTests
{
    // source: spec §14.1 (aws/aws-nitro-enclaves-image-format src/utils/cbor.rs, serde_cbor 0.11 bytes).
    private const string SectionVector =
        "81a2737369676e696e675f6365727469666963617465983b182d182d182d182d182d1842184518471849184e182018431845185218541849184618491843184118541845182d182d182d182d182d0a184d1849184918420a182d182d182d182d182d1845184e1844182018431845185218541849184618491843184118541845182d182d182d182d182d0a697369676e61747572658a18d21884184418a1011838182218a018401840";

    [Fact]
    public void Encode_SerdeCborVector_IsByteIdentical()
    {
        byte[] certificate = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"u8.ToArray();
        byte[] signature = Convert.FromHexString("d28444a1013822a04040");

        byte[] encoded = EifSignatureSection.Encode([new EifPcrSignature(certificate, signature)]);

        Assert.Equal(169, encoded.Length);
        Assert.Equal(SectionVector, Convert.ToHexStringLower(encoded));
    }

    [Fact]
    public void Decode_SerdeCborVector_RoundTrips()
    {
        var entries = EifSignatureSection.Decode(Convert.FromHexString(SectionVector));

        var entry = Assert.Single(entries);
        Assert.Equal(59, entry.SigningCertificate.Length);
        Assert.Equal("d28444a1013822a04040", Convert.ToHexStringLower(entry.Signature));
        Assert.Equal(SectionVector, Convert.ToHexStringLower(EifSignatureSection.Encode(entries)));
    }

    [Fact]
    public void Decode_TrailingBytes_AreRejected()
    {
        var ex = Assert.Throws<EifFormatException>(() => EifSignatureSection.Decode(Convert.FromHexString(SectionVector + "00")));
        Assert.Equal(EifFormatError.InvalidSignature, ex.Error);
    }

    [Fact]
    public void Decode_GoldenSignatureSection_ReEncodesByteForByte()
    {
        byte[] file = Golden.Bytes("synth_signed.eif");
        using var reader = new EifReader(new MemoryStream(file));
        var section = reader.FindSection(EifSectionType.Signature)!.Value;

        Assert.Equal(file.AsSpan((int)section.DataOffset, (int)section.Size).ToArray(), EifSignatureSection.Encode(reader.Signatures!));
        Assert.Equal(1989, section.Size);
    }

    [Fact]
    public void FirstCertificateDer_SkipsOtherBlocksAndTakesTheFirstCertificate()
    {
        byte[] pem = File.ReadAllBytes(Golden.Input("signing_cert.pem"));
        byte[] key = File.ReadAllBytes(Golden.Input("signing_key.pem"));
        byte[] der = EifSignatureSection.FirstCertificateDer(pem, "cert");

        // A key block first and a second certificate after change nothing: PCR8 depends on the first certificate only.
        Assert.Equal(der, EifSignatureSection.FirstCertificateDer([.. key, .. pem, .. pem], "bundle"));
        Assert.Equal(
            Golden.Pcrs("synth_signed")["PCR8"],
            Pcr.ToHex(Pcr.Compute(der)));
        Assert.Equal(EifFormatError.InvalidCertificate, Assert.Throws<EifFormatException>(() => EifSignatureSection.FirstCertificateDer(key, "key")).Error);
    }
}

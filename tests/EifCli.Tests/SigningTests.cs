using System.Buffers.Binary;
using System.Diagnostics;
using System.Formats.Asn1;
using System.Formats.Cbor;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using EifFormat;
using EifFormat.Signing;
using EifTests.Shared;
using Org.BouncyCastle.OpenSsl;
using Org.BouncyCastle.Pkcs;
using Org.BouncyCastle.Security;
using static EifCli.Tests.CliHarness;
using IoCrc32 = System.IO.Hashing.Crc32;

namespace EifCli.Tests;

/// <summary>
/// Signing through the CLI (spec §7, §12): build-eif and sign-eif with local keys in every PEM form, the checks made
/// before anything is written, re-signing, the detached flow with the real openssl CLI as the external signer, and
/// what describe-eif and verify-eif report on signed, tampered and expired images.
/// </summary>
public class SigningTests : IDisposable
{
    // EifHeader field locations (spec §2; src/defs/mod.rs), read raw so that the tests do not trust the reader.
    private const int SectionOffsetsAt = 0x01C;
    private const int SectionSizesAt = 0x11C;
    private const int CrcAt = 0x220;
    private const int HeaderSize = 548;
    private const int SectionHeaderSize = 12;
    private const int SectionSizeField = 4; // section_type (u16), flags (u16), then section_size (u64)

    // synth_signed.eif: kernel, cmdline, metadata, two ramdisks, then the signature section (golden README).
    private const int GoldenSignatureIndex = 5;

    private const string BuildTime = "2024-01-01T00:00:00+00:00";

    private static readonly string[] BuildRegisters = ["PCR0", "PCR1", "PCR2"];

    private readonly string _dir = Directory.CreateTempSubdirectory("eif-signing").FullName;

    // Inputs (keys, certificates, copies of images) and outputs live apart, so "nothing was written" is "_out is empty".
    private readonly string _in;
    private readonly string _out;

    public SigningTests()
    {
        _in = Directory.CreateDirectory(Path.Combine(_dir, "in")).FullName;
        _out = Directory.CreateDirectory(Path.Combine(_dir, "out")).FullName;
    }

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    // ---------------------------------------------------------------------------------------------------------------
    // 1. build-eif with a signing identity, against the golden signed file
    // ---------------------------------------------------------------------------------------------------------------

    [Fact]
    public void BuildEif_GoldenSignedCommandLine_PrintsTheGoldenPcrs()
    {
        var (code, stdout, stderr) = Run(GoldenSignedArgs(Out("synth_signed.eif")));

        Assert.True(code == 0, stderr);
        var printed = Json(stdout).GetProperty("Measurements");
        var expected = Json(File.ReadAllText(Golden("synth_signed.pcrs.json")));
        foreach (string register in new[] { "PCR0", "PCR1", "PCR2", "PCR8" })
            Assert.Equal(expected.GetProperty(register).GetString(), printed.GetProperty(register).GetString());
    }

    /// <summary>
    /// The golden signature is randomised (OpenSSL), ours is RFC 6979, so the r‖s bytes differ and, since each byte is
    /// a 1- or 2-byte CBOR integer, so may the section's size (and with it the size fields and the CRC). Everything
    /// else must be the golden bytes.
    /// </summary>
    [Fact]
    public void BuildEif_GoldenSignedCommandLine_MatchesGoldenOutsideTheSignatureSection()
    {
        string output = Out("synth_signed.eif");
        var (code, _, stderr) = Run(GoldenSignedArgs(output));
        Assert.True(code == 0, stderr);

        byte[] golden = File.ReadAllBytes(Golden("synth_signed.eif"));
        byte[] ours = File.ReadAllBytes(output);
        long signatureOffset = (long)ReadU64(golden, SectionOffsetsAt + (8 * GoldenSignatureIndex));
        Assert.Equal(signatureOffset, (long)ReadU64(ours, SectionOffsetsAt + (8 * GoldenSignatureIndex)));

        int sizeEntry = SectionSizesAt + (8 * GoldenSignatureIndex);
        AssertSameBytes(golden, ours, 0, sizeEntry);                              // magic … offsets, sizes before the signature's
        AssertSameBytes(golden, ours, sizeEntry + 8, CrcAt);                      // later (unused) size entries, unused
        AssertSameBytes(golden, ours, HeaderSize, signatureOffset + SectionSizeField); // every other section, the signature's type and flags

        // Our own size fields describe our own section, which ends the file.
        ulong size = ReadU64(ours, sizeEntry);
        Assert.Equal(size, ReadU64(ours, signatureOffset + SectionSizeField));
        Assert.Equal(ours.Length, signatureOffset + SectionHeaderSize + (long)size);
    }

    [Fact]
    public void BuildEif_GoldenSignedCommandLine_SignatureSectionDiffersFromGoldenOnlyInRAndS()
    {
        string output = Out("synth_signed.eif");
        Assert.Equal(0, Run(GoldenSignedArgs(output)).Code);

        EifPcrSignature ours = SingleSignature(output);
        EifPcrSignature golden = SingleSignature(Golden("synth_signed.eif"));

        Assert.Equal(File.ReadAllBytes(Golden("inputs/signing_cert.pem")), ours.SigningCertificate);
        Assert.Equal(golden.SigningCertificate, ours.SigningCertificate);
        Assert.Equal(golden.Signature.Length, ours.Signature.Length);
        Assert.Equal(golden.Signature[..^96], ours.Signature[..^96]);
        CoseSign1 oursCose = CoseSign1.Decode(ours.Signature);
        CoseSign1 goldenCose = CoseSign1.Decode(golden.Signature);
        Assert.Equal(goldenCose.ProtectedHeader, oursCose.ProtectedHeader);
        Assert.Equal(goldenCose.Payload, oursCose.Payload);
        Assert.Equal(96, goldenCose.Signature.Length);
        Assert.Equal(96, oursCose.Signature.Length);
    }

    [Fact]
    public void BuildEif_GoldenSignedCommandLine_DescribesWithSignatureCheckTrue()
    {
        string output = Out("synth_signed.eif");
        Assert.Equal(0, Run(GoldenSignedArgs(output)).Code);

        AssertSignatureChecks(output, Golden("inputs/signing_cert.pem"));
    }

    [Fact]
    public void BuildEif_SignedTwice_GivesByteIdenticalFiles()
    {
        // Deterministic ECDSA (RFC 6979): the same image and key give the same signature, so signed builds reproduce.
        string first = Out("first.eif");
        string second = Out("second.eif");

        Assert.Equal(0, Run(GoldenSignedArgs(first)).Code);
        Assert.Equal(0, Run(GoldenSignedArgs(second)).Code);

        Assert.Equal(File.ReadAllBytes(first), File.ReadAllBytes(second));
    }

    // ---------------------------------------------------------------------------------------------------------------
    // 2. Key formats and passphrases
    // ---------------------------------------------------------------------------------------------------------------

    [Theory]
    [InlineData("SEC1")]
    [InlineData("PKCS#8")]
    [InlineData("encrypted PKCS#8, --private-key-passphrase-env")]
    [InlineData("encrypted PKCS#8, --private-key-passphrase-file")]
    [InlineData("encrypted PKCS#8, EIF_PRIVATE_KEY_PASSPHRASE")]
    [InlineData("encrypted PKCS#8 (PKCS#12 3DES), --private-key-passphrase-file")]
    [InlineData("encrypted SEC1 (Proc-Type), --private-key-passphrase-file")]
    public void BuildEif_KeyForm_SignsExactlyAsTheSec1Key(string form)
    {
        const string Passphrase = "correct horse battery staple";
        var identity = TestPki.EcIdentity("P-384");
        var (certificate, sec1Key) = WriteIdentity(identity, "signer");
        string reference = Out("sec1.eif");
        Assert.Equal(0, Run(Build(reference, "--signing-certificate", certificate, "--private-key", sec1Key)).Code);

        string key = form switch
        {
            "SEC1" => sec1Key,
            "PKCS#8" => WriteInput("pkcs8.pem", identity.KeyPem(TestPki.KeyFormat.Pkcs8)),
            _ when form.StartsWith("encrypted PKCS#8 (PKCS#12 3DES)", StringComparison.Ordinal) => WriteInput("pkcs12pbe.pem", identity.KeyPem(TestPki.KeyFormat.EncryptedPkcs8, Passphrase)),
            _ when form.StartsWith("encrypted PKCS#8", StringComparison.Ordinal) => WriteInput("encrypted.pem", EncryptedPkcs8(identity, Passphrase)),
            _ => WriteInput("encrypted-sec1.pem", EncryptedSec1(identity, Passphrase)),
        };
        var passphraseOptions = new List<string>();
        string? variable = null;
        if (form.EndsWith("--private-key-passphrase-env", StringComparison.Ordinal))
        {
            variable = UniqueVariableName();
            passphraseOptions.AddRange(["--private-key-passphrase-env", variable]);
        }
        else if (form.EndsWith("--private-key-passphrase-file", StringComparison.Ordinal))
        {
            passphraseOptions.AddRange(["--private-key-passphrase-file", WriteInput("passphrase.txt", Passphrase + "\n")]);
        }
        else if (form.EndsWith(SigningOptions.DefaultPassphraseVariable, StringComparison.Ordinal))
        {
            variable = SigningOptions.DefaultPassphraseVariable;
        }

        string output = Out("variant.eif");
        (int Code, string Stdout, string Stderr) result;
        using (new EnvironmentVariable(variable, variable is null ? null : Passphrase))
            result = Run(Build(output, ["--signing-certificate", certificate, "--private-key", key, .. passphraseOptions]));

        Assert.True(result.Code == 0, result.Stderr);
        Assert.Equal(File.ReadAllBytes(reference), File.ReadAllBytes(output)); // the same key, whatever its encoding
        AssertSignatureChecks(output, certificate);
    }

    [Theory]
    [InlineData("wrong passphrase in --private-key-passphrase-file")]
    [InlineData("wrong passphrase in --private-key-passphrase-env")]
    [InlineData("wrong passphrase in EIF_PRIVATE_KEY_PASSPHRASE")]
    [InlineData("no passphrase at all")]
    [InlineData("--private-key-passphrase-env names an unset variable")]
    public void BuildEif_EncryptedKeyWithoutItsPassphrase_IsRefusedWithoutOutput(string situation)
    {
        var identity = TestPki.EcIdentity("P-384");
        string certificate = WriteInput("signer.crt.pem", identity.CertificatePem);
        string key = WriteInput("encrypted.pem", EncryptedPkcs8(identity, "the right one"));
        var options = new List<string> { "--signing-certificate", certificate, "--private-key", key };
        string? variable = null;
        string? value = null;
        switch (situation)
        {
            case "wrong passphrase in --private-key-passphrase-file":
                options.AddRange(["--private-key-passphrase-file", WriteInput("passphrase.txt", "the wrong one\n")]);
                break;
            case "wrong passphrase in --private-key-passphrase-env":
                (variable, value) = (UniqueVariableName(), "the wrong one");
                options.AddRange(["--private-key-passphrase-env", variable]);
                break;
            case "wrong passphrase in EIF_PRIVATE_KEY_PASSPHRASE":
                (variable, value) = (SigningOptions.DefaultPassphraseVariable, "the wrong one");
                break;
            case "no passphrase at all":
                variable = SigningOptions.DefaultPassphraseVariable; // unset for the run, whatever the environment holds
                break;
            default:
                options.AddRange(["--private-key-passphrase-env", UniqueVariableName()]);
                break;
        }

        (int Code, string Stdout, string Stderr) result;
        using (new EnvironmentVariable(variable, value))
            result = Run(Build(Out("refused.eif"), [.. options]));

        Assert.Equal(ExitCode.InvalidInput, result.Code);
        Assert.Empty(result.Stdout);
        AssertOneLine(result.Stderr, "passphrase");
        Assert.Empty(Directory.GetFileSystemEntries(_out));
    }

    // ---------------------------------------------------------------------------------------------------------------
    // 3. Refusals before anything is written
    // ---------------------------------------------------------------------------------------------------------------

    public static TheoryData<string, string, string> Refusals()
    {
        var data = new TheoryData<string, string, string>();
        foreach (string verb in new[] { "build-eif", "sign-eif" })
        {
            data.Add(verb, "key of another identity", "does not belong to this certificate");
            data.Add(verb, "expired certificate", "has expired");
            data.Add(verb, "certificate not valid yet", "is not valid yet");
            data.Add(verb, "RSA key and certificate", "not EC");
            data.Add(verb, "RSA certificate, P-384 key", "not EC");
            data.Add(verb, "secp256k1", "secp256k1");
            data.Add(verb, "certificate file without a certificate", "no PEM 'CERTIFICATE' block");
        }

        return data;
    }

    [Theory]
    [MemberData(nameof(Refusals))]
    public void Signing_UnusableIdentity_IsRefusedBeforeAnythingIsWritten(string verb, string problem, string mention)
    {
        DateTime now = DateTime.UtcNow;
        var (certificate, key) = problem switch
        {
            "key of another identity" => (WriteInput("c.pem", TestPki.EcIdentity("P-384").CertificatePem), WriteInput("k.pem", TestPki.EcIdentity("P-384").KeyPem())),
            "expired certificate" => WriteIdentity(TestPki.EcIdentity("P-384", notBefore: now.AddYears(-2), notAfter: now.AddDays(-1)), "expired"),
            "certificate not valid yet" => WriteIdentity(TestPki.EcIdentity("P-384", notBefore: now.AddDays(1), notAfter: now.AddYears(1)), "future"),
            "RSA key and certificate" => WriteIdentity(TestPki.Certificate(TestPki.RsaKeys(), "eif-rsa"), "rsa"),
            "RSA certificate, P-384 key" => (WriteInput("c.pem", TestPki.Certificate(TestPki.RsaKeys(), "eif-rsa").CertificatePem), WriteInput("k.pem", TestPki.EcIdentity("P-384").KeyPem())),
            "secp256k1" => WriteIdentity(TestPki.EcIdentity("secp256k1"), "k1"),
            _ => (Golden("inputs/signing_key.pem"), Golden("inputs/signing_key.pem")),
        };
        string output = Out("refused.eif");
        string image = CopyGolden("synth_sha384_named.eif", "image.eif");
        string[] args = verb == "build-eif"
            ? Build(output, "--signing-certificate", certificate, "--private-key", key)
            : ["sign-eif", "--eif-path", image, "--signing-certificate", certificate, "--private-key", key, "--output-file", output];

        var (code, stdout, stderr) = Run(args);

        Assert.Equal(ExitCode.InvalidInput, code);
        Assert.Empty(stdout);
        AssertOneLine(stderr, mention);
        Assert.Empty(Directory.GetFileSystemEntries(_out));
        Assert.Equal(File.ReadAllBytes(Golden("synth_sha384_named.eif")), File.ReadAllBytes(image));
    }

    [Theory]
    [InlineData("--signing-certificate")]
    [InlineData("--private-key")]
    public void BuildEif_OnlyOneOfCertificateAndKey_IsAUsageError(string given)
    {
        string file = given == "--signing-certificate" ? Golden("inputs/signing_cert.pem") : Golden("inputs/signing_key.pem");

        var (code, stdout, stderr) = Run(Build(Out("x.eif"), given, file));

        Assert.Equal(ExitCode.Usage, code);
        Assert.Empty(stdout);
        Assert.StartsWith("eif: --signing-certificate and --private-key go together.\n", stderr, StringComparison.Ordinal);
        Assert.Empty(Directory.GetFileSystemEntries(_out));
    }

    // ---------------------------------------------------------------------------------------------------------------
    // 4. Curves
    // ---------------------------------------------------------------------------------------------------------------

    [Theory]
    [InlineData("P-256", CoseAlgorithm.ES256, "a10126", 64)]
    [InlineData("P-384", CoseAlgorithm.ES384, "a1013822", 96)]
    [InlineData("P-521", CoseAlgorithm.ES512, "a1013823", 132)]
    public void BuildEif_Curve_SignsWithItsAlgorithmAndDescribesAsChecked(string curve, CoseAlgorithm algorithm, string protectedHeaderHex, int signatureLength)
    {
        var (certificate, key) = WriteIdentity(TestPki.EcIdentity(curve), "signer");
        string output = Out("signed.eif");

        var (code, stdout, stderr) = Run(Build(output, "--signing-certificate", certificate, "--private-key", key));

        Assert.True(code == 0, stderr);
        Assert.Equal(Pcr8Of(certificate), Json(stdout).GetProperty("Measurements").GetProperty("PCR8").GetString());
        AssertSignatureChecks(output, certificate);
        CoseSign1 cose = CoseSign1.Decode(SingleSignature(output).Signature);
        Assert.Equal(algorithm, cose.Algorithm);
        Assert.Equal(protectedHeaderHex, Convert.ToHexStringLower(cose.ProtectedHeader)); // spec §7.3 table
        Assert.Equal(signatureLength, cose.Signature.Length);
    }

    // ---------------------------------------------------------------------------------------------------------------
    // 5. sign-eif with a local key
    // ---------------------------------------------------------------------------------------------------------------

    [Fact]
    public void SignEif_UnsignedImageToOutputFile_LeavesTheInputAndKeepsPcr0To2()
    {
        string image = CopyGolden("synth_sha384_named.eif", "image.eif");
        var (certificate, key) = WriteIdentity(TestPki.EcIdentity("P-384"), "signer");
        string output = Out("signed.eif");

        var (code, stdout, stderr) = Run("sign-eif", "--eif-path", image, "--signing-certificate", certificate, "--private-key", key, "--output-file", output);

        Assert.True(code == 0, stderr);
        byte[] original = File.ReadAllBytes(Golden("synth_sha384_named.eif"));
        Assert.Equal(original, File.ReadAllBytes(image));
        Assert.Equal(Pcr8Of(certificate), Json(stdout).GetProperty("Measurements").GetProperty("PCR8").GetString());
        var json = AssertSignatureChecks(output, certificate);
        AssertPcrsOf("synth_sha384_named", json);

        // The section is appended: every byte after the header is the input's, followed by the signature section.
        byte[] signed = File.ReadAllBytes(output);
        AssertSameBytes(original, signed, HeaderSize, original.Length);
        using var reader = EifReader.Open(output);
        Assert.Equal(6, reader.Sections.Count);
        Assert.Equal(EifSectionType.Signature, reader.Sections[^1].Type);
        Assert.Equal(original.Length, reader.Sections[^1].Offset);
    }

    [Fact]
    public void SignEif_WithoutOutputFile_ReplacesTheInputInPlace()
    {
        string image = CopyGolden("synth_sha384_named.eif", "image.eif");
        var (certificate, key) = WriteIdentity(TestPki.EcIdentity("P-384"), "signer");
        string[] before = Directory.GetFileSystemEntries(_in);

        var (code, _, stderr) = Run("sign-eif", "--eif-path", image, "--signing-certificate", certificate, "--private-key", key);

        Assert.True(code == 0, stderr);
        Assert.Equal($"Enclave Image successfully signed: {image}.\n", stderr);
        var json = AssertSignatureChecks(image, certificate);
        AssertPcrsOf("synth_sha384_named", json);
        Assert.Equal(before.Order(), Directory.GetFileSystemEntries(_in).Order()); // no temporary file left behind
    }

    /// <summary>
    /// Re-signing replaces the section where it is; the reference's sign-eif leaves the old size in the header table
    /// (image-format#54), which the strict reader (table vs section headers) would refuse.
    /// </summary>
    [Fact]
    public void SignEif_ResigningTheSignedGoldenWithP256ThenP521_KeepsTheLayoutConsistent()
    {
        string image = CopyGolden("synth_signed.eif", "image.eif");
        byte[] golden = File.ReadAllBytes(Golden("synth_signed.eif"));
        long signatureOffset = (long)ReadU64(golden, SectionOffsetsAt + (8 * GoldenSignatureIndex));
        var sizes = new List<ulong> { ReadU64(golden, SectionSizesAt + (8 * GoldenSignatureIndex)) };

        foreach (string curve in new[] { "P-256", "P-521" })
        {
            var (certificate, key) = WriteIdentity(TestPki.EcIdentity(curve), curve);

            var (code, _, stderr) = Run("sign-eif", "--eif-path", image, "--signing-certificate", certificate, "--private-key", key);

            Assert.True(code == 0, $"{curve}: {stderr}");
            using (var reader = EifReader.Open(image)) // strict: checks the header table against every section header
            {
                Assert.True(reader.ComputeDigests().CrcMatches, curve);
                Assert.Equal(6, reader.Sections.Count);
                Assert.Equal(EifSectionType.Signature, reader.Sections[GoldenSignatureIndex].Type);
            }

            byte[] bytes = File.ReadAllBytes(image);
            ulong tableSize = ReadU64(bytes, SectionSizesAt + (8 * GoldenSignatureIndex));
            Assert.Equal(tableSize, ReadU64(bytes, signatureOffset + SectionSizeField));
            Assert.Equal(bytes.Length, signatureOffset + SectionHeaderSize + (long)tableSize);
            AssertSameBytes(golden, bytes, HeaderSize, signatureOffset); // the signed sections are untouched
            var json = AssertSignatureChecks(image, certificate);
            AssertPcrsOf("synth_signed", json);
            sizes.Add(tableSize);
        }

        Assert.Equal(3, sizes.Distinct().Count()); // each certificate gave another size, so each rewrite was exercised
    }

    [Theory]
    [InlineData("--output-file")]
    [InlineData("in place")]
    [InlineData("--export-to-be-signed")]
    public void SignEif_ImageWithBadCrc_IsRefusedAndNothingIsWritten(string mode)
    {
        byte[] corrupt = File.ReadAllBytes(Golden("synth_sha384_named.eif"));
        corrupt[^1] ^= 1; // a ramdisk byte: the structure is valid, the CRC is not
        string image = WriteInput("corrupt.eif", corrupt);
        var args = new List<string> { "sign-eif", "--eif-path", image, "--signing-certificate", Golden("inputs/signing_cert.pem") };
        args.AddRange(mode switch
        {
            "--output-file" => ["--private-key", Golden("inputs/signing_key.pem"), "--output-file", Out("signed.eif")],
            "in place" => ["--private-key", Golden("inputs/signing_key.pem")],
            _ => ["--export-to-be-signed", Out("tbs.bin")],
        });
        string[] inputsBefore = Directory.GetFileSystemEntries(_in);

        var (code, stdout, stderr) = Run([.. args]);

        Assert.Equal(ExitCode.VerificationFailed, code);
        Assert.Empty(stdout);
        AssertOneLine(stderr, "eif_crc32");
        Assert.Equal(corrupt, File.ReadAllBytes(image));
        Assert.Empty(Directory.GetFileSystemEntries(_out));
        Assert.Equal(inputsBefore.Order(), Directory.GetFileSystemEntries(_in).Order());
    }

    // ---------------------------------------------------------------------------------------------------------------
    // 6. Detached signing with the openssl CLI as the external signer
    // ---------------------------------------------------------------------------------------------------------------

    [Theory]
    [InlineData("P-256", "-sha256")]
    [InlineData("P-384", "-sha384")]
    [InlineData("P-521", "-sha512")]
    public void SignEif_DetachedFlowWithOpenSsl_AttachesAVerifyingSignature(string curve, string digestOption)
    {
        string openssl = OpenSsl();
        var identity = TestPki.EcIdentity(curve);
        var (certificate, key) = WriteIdentity(identity, "signer");
        string image = CopyGolden("synth_sha384_named.eif", "image.eif");
        string tbs = Path.Combine(_in, "tbs.bin");

        var (code, stdout, stderr) = Run("sign-eif", "--eif-path", image, "--signing-certificate", certificate, "--export-to-be-signed", tbs);

        Assert.True(code == 0, stderr);
        Assert.Equal(File.ReadAllBytes(Golden("synth_sha384_named.eif")), File.ReadAllBytes(image)); // exporting changes nothing
        var exported = Json(stdout);
        byte[] digest = digestOption switch
        {
            "-sha256" => SHA256.HashData(File.ReadAllBytes(tbs)),
            "-sha384" => SHA384.HashData(File.ReadAllBytes(tbs)),
            _ => SHA512.HashData(File.ReadAllBytes(tbs)),
        };
        Assert.Equal(Convert.ToHexStringLower(digest), exported.GetProperty("Digest").GetString());
        Assert.Equal(digest, File.ReadAllBytes(tbs + ".digest"));
        Assert.Equal(tbs + ".digest", exported.GetProperty("DigestFile").GetString());
        Assert.Equal(PcrOf("synth_sha384_named", "PCR0"), exported.GetProperty("PCR0").GetString());

        string signature = Path.Combine(_in, "signature.der");
        RunOpenSsl(openssl, "dgst", digestOption, "-sign", key, "-out", signature, tbs);
        (code, _, stderr) = Run("sign-eif", "--eif-path", image, "--signing-certificate", certificate, "--signature", signature);

        Assert.True(code == 0, stderr);
        var json = AssertSignatureChecks(image, certificate);
        AssertPcrsOf("synth_sha384_named", json);
        int scalarSize = CoseAlgorithms.ScalarSize(CoseSign1.Decode(SingleSignature(image).Signature).Algorithm);
        Assert.Equal(DerToRaw(File.ReadAllBytes(signature), scalarSize), CoseSign1.Decode(SingleSignature(image).Signature).Signature);
    }

    [Theory]
    [InlineData("raw r||s")]
    [InlineData("base64 DER")]
    [InlineData("base64 raw r||s")]
    public void SignEif_DetachedSignatureInAnotherEncoding_IsAccepted(string encoding)
    {
        string openssl = OpenSsl();
        string certificate = Golden("inputs/signing_cert.pem");
        string image = CopyGolden("synth_sha384_named.eif", "image.eif");
        string tbs = Path.Combine(_in, "tbs.bin");
        Assert.Equal(0, Run("sign-eif", "--eif-path", image, "--signing-certificate", certificate, "--export-to-be-signed", tbs).Code);
        string der = Path.Combine(_in, "signature.der");
        RunOpenSsl(openssl, "dgst", "-sha384", "-sign", Golden("inputs/signing_key.pem"), "-out", der, tbs);
        byte[] raw = DerToRaw(File.ReadAllBytes(der), 48);
        byte[] converted = encoding switch
        {
            "raw r||s" => raw,
            "base64 DER" => Encoding.ASCII.GetBytes(Convert.ToBase64String(File.ReadAllBytes(der)) + "\n"),
            _ => Encoding.ASCII.GetBytes(Convert.ToBase64String(raw) + "\n"),
        };
        string signature = WriteInput("signature.converted", converted);

        var (code, _, stderr) = Run("sign-eif", "--eif-path", image, "--signing-certificate", certificate, "--signature", signature);

        Assert.True(code == 0, stderr);
        AssertSignatureChecks(image, certificate);
        Assert.Equal(raw, CoseSign1.Decode(SingleSignature(image).Signature).Signature);
    }

    [Fact]
    public void SignEif_DetachedSignatureOfAnotherImage_IsRefusedAndTheImageIsUnchanged()
    {
        string openssl = OpenSsl();
        string certificate = Golden("inputs/signing_cert.pem");
        string other = CopyGolden("synth_sha384_named.eif", "other.eif");
        string image = CopyGolden("synth_one_ramdisk.eif", "image.eif");
        string tbs = Path.Combine(_in, "tbs.bin");
        Assert.Equal(0, Run("sign-eif", "--eif-path", other, "--signing-certificate", certificate, "--export-to-be-signed", tbs).Code);
        string signature = Path.Combine(_in, "signature.der");
        RunOpenSsl(openssl, "dgst", "-sha384", "-sign", Golden("inputs/signing_key.pem"), "-out", signature, tbs);
        string[] inputsBefore = Directory.GetFileSystemEntries(_in);

        var (code, stdout, stderr) = Run("sign-eif", "--eif-path", image, "--signing-certificate", certificate, "--signature", signature);

        // EifSigner.AcceptExternalSignature throws EifFormatException(SignatureMismatch), and Cli.Describe maps every
        // EifFormatException except ChecksumMismatch to ExitCode.InvalidInput: the signature file is a bad input.
        Assert.Equal(ExitCode.InvalidInput, code);
        Assert.Empty(stdout);
        AssertOneLine(stderr, "does not verify");
        Assert.Equal(File.ReadAllBytes(Golden("synth_one_ramdisk.eif")), File.ReadAllBytes(image));
        Assert.Equal(inputsBefore.Order(), Directory.GetFileSystemEntries(_in).Order());
    }

    // ---------------------------------------------------------------------------------------------------------------
    // 7. describe-eif on tampered signed images
    // ---------------------------------------------------------------------------------------------------------------

    [Fact]
    public void DescribeEif_SignedImageWithAKernelByteFlipped_ReportsSignatureCheckFalseNamingPcr0()
    {
        byte[] bytes = File.ReadAllBytes(Golden("synth_signed.eif"));
        bytes[HeaderSize + SectionHeaderSize + 100] ^= 0x01; // section 0 is the kernel
        FixCrc(bytes);
        string image = WriteInput("tampered.eif", bytes);

        var (code, stdout, stderr) = Run("describe-eif", "--eif-path", image);

        Assert.Equal(ExitCode.VerificationFailed, code);
        var json = Json(stdout);
        Assert.True(json.GetProperty("CheckCRC").GetBoolean()); // the CRC was fixed: only the signature fails
        Assert.False(json.GetProperty("SignatureCheck").GetBoolean());
        Assert.Contains("\"SignatureCheck\": false", stdout);
        Assert.NotEqual(PcrOf("synth_signed", "PCR0"), json.GetProperty("Measurements").GetProperty("PCR0").GetString());
        AssertOneLine(stderr, "PCR0");
        Assert.Contains(PcrOf("synth_signed", "PCR0"), stderr); // the PCR0 that was signed
    }

    [Fact]
    public void DescribeEif_SignedImageWithACoseSignatureByteChanged_ReportsSignatureCheckFalse()
    {
        byte[] bytes = File.ReadAllBytes(Golden("synth_signed.eif"));
        int at = CoseSignatureItemToChange(bytes);
        Assert.Equal(0x18, bytes[at]);
        bytes[at + 1]++; // 0x18 vv with 24 <= vv < 255: still a minimal one-byte integer, now vv + 1
        FixCrc(bytes);
        string image = WriteInput("tampered.eif", bytes);

        var (code, stdout, stderr) = Run("describe-eif", "--eif-path", image);

        Assert.Equal(ExitCode.VerificationFailed, code);
        var json = Json(stdout);
        Assert.True(json.GetProperty("CheckCRC").GetBoolean());
        Assert.False(json.GetProperty("SignatureCheck").GetBoolean());
        Assert.Equal(PcrOf("synth_signed", "PCR0"), json.GetProperty("Measurements").GetProperty("PCR0").GetString());
        AssertOneLine(stderr, "does not verify");
    }

    [Theory]
    [InlineData("kernel byte")]
    [InlineData("COSE signature byte")]
    public void VerifyEif_TamperedSignedImage_Fails(string tampered)
    {
        byte[] bytes = File.ReadAllBytes(Golden("synth_signed.eif"));
        if (tampered == "kernel byte")
        {
            bytes[HeaderSize + SectionHeaderSize + 100] ^= 0x01;
        }
        else
        {
            bytes[CoseSignatureItemToChange(bytes) + 1]++;
        }

        FixCrc(bytes);
        string image = WriteInput("tampered.eif", bytes);

        var (code, stdout, stderr) = Run("verify-eif", "--eif-path", image);

        Assert.Equal(ExitCode.VerificationFailed, code);
        var json = Json(stdout);
        Assert.False(json.GetProperty("SignatureCheck").GetBoolean());
        Assert.False(json.GetProperty("Verified").GetBoolean());
        Assert.Contains("signature check failed", stderr);
    }

    // ---------------------------------------------------------------------------------------------------------------
    // 8. verify-eif on signed images
    // ---------------------------------------------------------------------------------------------------------------

    [Fact]
    public void VerifyEif_SignedGolden_Passes()
    {
        var (code, stdout, stderr) = Run("verify-eif", "--eif-path", Golden("synth_signed.eif"));

        Assert.True(code == 0, stderr);
        var json = Json(stdout);
        Assert.True(json.GetProperty("SignatureCheck").GetBoolean());
        Assert.True(json.GetProperty("CertificateValid").GetBoolean());
        Assert.True(json.GetProperty("Verified").GetBoolean());
    }

    [Fact]
    public void VerifyEif_TrustedCertificateIsTheSigner_Passes()
    {
        var (code, stdout, stderr) = Run("verify-eif", "--eif-path", Golden("synth_signed.eif"), "--trusted-certificate", Golden("inputs/signing_cert.pem"));

        Assert.True(code == 0, stderr);
        Assert.True(Json(stdout).GetProperty("TrustedSigner").GetBoolean());
    }

    [Fact]
    public void VerifyEif_TrustedCertificateIsTheCaThatIssuedTheSigner_Passes()
    {
        var ca = TestPki.Certificate(TestPki.EcKeys("P-384"), "eif-test-ca", ca: true);
        var leaf = TestPki.Certificate(TestPki.EcKeys("P-384"), "eif-test-leaf", issuer: ca);
        var (certificate, key) = WriteIdentity(leaf, "leaf");
        string caPath = WriteInput("ca.pem", ca.CertificatePem);
        string image = Out("signed.eif");
        Assert.Equal(0, Run(Build(image, "--signing-certificate", certificate, "--private-key", key)).Code);

        var (code, stdout, stderr) = Run("verify-eif", "--eif-path", image, "--trusted-certificate", caPath);

        Assert.True(code == 0, stderr);
        Assert.True(Json(stdout).GetProperty("TrustedSigner").GetBoolean());
    }

    [Fact]
    public void VerifyEif_TrustedCaWithTheIssuersNameButAnotherKey_Fails()
    {
        var ca = TestPki.Certificate(TestPki.EcKeys("P-384"), "eif-test-ca", ca: true);
        var impostor = TestPki.Certificate(TestPki.EcKeys("P-384"), "eif-test-ca", ca: true); // same subject, other key
        var leaf = TestPki.Certificate(TestPki.EcKeys("P-384"), "eif-test-leaf", issuer: ca);
        var (certificate, key) = WriteIdentity(leaf, "leaf");
        string image = Out("signed.eif");
        Assert.Equal(0, Run(Build(image, "--signing-certificate", certificate, "--private-key", key)).Code);

        var (code, stdout, stderr) = Run("verify-eif", "--eif-path", image, "--trusted-certificate", WriteInput("impostor.pem", impostor.CertificatePem));

        Assert.Equal(ExitCode.VerificationFailed, code);
        Assert.False(Json(stdout).GetProperty("TrustedSigner").GetBoolean());
        AssertOneLine(stderr, "eif-test-leaf");
    }

    [Fact]
    public void VerifyEif_TrustedIssuerThatIsNotACa_Fails()
    {
        // openssl verify -CAfile rejects such a chain ("invalid CA certificate"); so do we.
        var issuer = TestPki.Certificate(TestPki.EcKeys("P-384"), "eif-not-a-ca");
        var leaf = TestPki.Certificate(TestPki.EcKeys("P-384"), "eif-test-leaf", issuer: issuer);
        var (certificate, key) = WriteIdentity(leaf, "leaf");
        string image = Out("signed.eif");
        Assert.Equal(0, Run(Build(image, "--signing-certificate", certificate, "--private-key", key)).Code);

        var (code, stdout, stderr) = Run("verify-eif", "--eif-path", image, "--trusted-certificate", WriteInput("issuer.pem", issuer.CertificatePem));

        Assert.Equal(ExitCode.VerificationFailed, code);
        Assert.False(Json(stdout).GetProperty("TrustedSigner").GetBoolean());
        AssertOneLine(stderr, "is not a CA certificate");
    }

    [Theory]
    [InlineData("--eif-path")]
    [InlineData("--signing-certificate")]
    public void SignEif_ExportOntoAnInput_IsAUsageErrorAndChangesNothing(string input)
    {
        string image = CopyGolden("synth_sha384_named.eif", "image.eif");
        string certificate = WriteInput("cert.pem", File.ReadAllBytes(Golden("inputs/signing_cert.pem")));
        byte[] before = File.ReadAllBytes(image);
        string target = input == "--eif-path" ? image : certificate;

        var (code, _, stderr) = Run("sign-eif", "--eif-path", image, "--signing-certificate", certificate, "--export-to-be-signed", target);

        Assert.Equal(ExitCode.Usage, code);
        Assert.Contains("would overwrite the input", stderr);
        Assert.Equal(before, File.ReadAllBytes(image));
        Assert.False(File.Exists(target + ".digest"));
    }

    [Fact]
    public void VerifyEif_UnrelatedTrustedCertificate_FailsNamingTheSigner()
    {
        string unrelated = WriteInput("unrelated.pem", TestPki.EcIdentity("P-384", "eif-unrelated").CertificatePem);

        var (code, stdout, stderr) = Run("verify-eif", "--eif-path", Golden("synth_signed.eif"), "--trusted-certificate", unrelated);

        Assert.Equal(ExitCode.VerificationFailed, code);
        var json = Json(stdout);
        Assert.False(json.GetProperty("TrustedSigner").GetBoolean());
        Assert.True(json.GetProperty("SignatureCheck").GetBoolean()); // only the trust check fails
        AssertOneLine(stderr, "CN=eif-golden-test");
    }

    [Fact]
    public void VerifyEif_TrustedCertificateOnUnsignedImage_Fails()
    {
        var (code, stdout, stderr) = Run("verify-eif", "--eif-path", Golden("synth_sha384_named.eif"), "--trusted-certificate", Golden("inputs/signing_cert.pem"));

        Assert.Equal(ExitCode.VerificationFailed, code);
        Assert.False(Json(stdout).GetProperty("TrustedSigner").GetBoolean());
        AssertOneLine(stderr, "not signed");
    }

    /// <summary>
    /// Our tools refuse to sign with a certificate that is not valid now, so the image is made with the library, which
    /// signs with any certificate. nitro-cli's describe-eif does not check time, and neither does ours; verify-eif does.
    /// </summary>
    [Theory]
    [InlineData("expired", "has expired")]
    [InlineData("not valid yet", "is not valid yet")]
    public void VerifyEif_ImageSignedWithACertificateNotValidNow_FailsWhileDescribeEifPasses(string validity, string mention)
    {
        DateTime now = DateTime.UtcNow;
        var identity = validity == "expired"
            ? TestPki.EcIdentity("P-384", notBefore: now.AddYears(-2), notAfter: now.AddDays(-1))
            : TestPki.EcIdentity("P-384", notBefore: now.AddDays(1), notAfter: now.AddYears(1));
        var (certificate, keyPath) = WriteIdentity(identity, "signer");
        byte[] pem = File.ReadAllBytes(certificate);
        EifSigningKey key = EifSigningKey.Load(keyPath, () => null);
        string image = Out("signed.eif");
        EifSigner.SignFile(Golden("synth_sha384_named.eif"), image, pcr0 =>
        {
            EifToBeSigned tbs = EifSigner.ToBeSigned(key.Algorithm, pcr0);
            return EifSigner.CreateSection(pem, tbs, key.SignDigest(tbs.Digest));
        });

        var (code, stdout, stderr) = Run("verify-eif", "--eif-path", image);

        Assert.Equal(ExitCode.VerificationFailed, code);
        var json = Json(stdout);
        Assert.True(json.GetProperty("SignatureCheck").GetBoolean());
        Assert.False(json.GetProperty("CertificateValid").GetBoolean());
        AssertOneLine(stderr, mention);
        AssertSignatureChecks(image, certificate); // describe-eif: exit 0, SignatureCheck true
    }

    // ---------------------------------------------------------------------------------------------------------------
    // Helpers
    // ---------------------------------------------------------------------------------------------------------------

    private string Out(string name) => Path.Combine(_out, name);

    private string WriteInput(string name, string text) => WriteInput(name, Encoding.ASCII.GetBytes(text));

    private string WriteInput(string name, byte[] bytes)
    {
        string path = Path.Combine(_in, name);
        File.WriteAllBytes(path, bytes);
        return path;
    }

    private string CopyGolden(string golden, string name)
    {
        string path = Path.Combine(_in, name);
        File.Copy(Golden(golden), path);
        return path;
    }

    /// <summary>Writes the certificate and the SEC1 key of <paramref name="identity"/>.</summary>
    private (string Certificate, string Key) WriteIdentity(TestPki.Identity identity, string name) =>
        (WriteInput(name + ".crt.pem", identity.CertificatePem), WriteInput(name + ".key.pem", identity.KeyPem()));

    /// <summary>A build-eif command line over the golden inputs, signed with <paramref name="signing"/> when given.</summary>
    private static string[] Build(string output, params string[] signing) =>
    [
        "build-eif", "--kernel", Golden("inputs/kernel.bin"), "--cmdline", "console=ttyS0", "--ramdisk", Golden("inputs/ramdisk1.bin"),
        "--ramdisk", Golden("inputs/ramdisk2.bin"), "--build-time", BuildTime, "--output", output, .. signing,
    ];

    /// <summary>tests/golden/synth_signed.cmd through build-eif, with the golden README's two adjustments.</summary>
    private static string[] GoldenSignedArgs(string output)
    {
        string[] args = GoldenBuildArgs("synth_signed", output);
        Assert.Contains("--signing-certificate", args);
        return args;
    }

    /// <summary>describe-eif passes: exit 0, CRC and signature checked, PCR8 as <c>eif pcr</c> gives it. Returns the JSON.</summary>
    private static JsonElement AssertSignatureChecks(string image, string certificate)
    {
        var (code, stdout, stderr) = Run("describe-eif", "--eif-path", image);
        Assert.True(code == 0, stderr);
        var json = Json(stdout);
        Assert.True(json.GetProperty("IsSigned").GetBoolean());
        Assert.True(json.GetProperty("CheckCRC").GetBoolean());
        Assert.True(json.GetProperty("SignatureCheck").GetBoolean());
        Assert.Equal(Pcr8Of(certificate), json.GetProperty("Measurements").GetProperty("PCR8").GetString());
        return json;
    }

    private static string Pcr8Of(string certificate)
    {
        var (code, stdout, stderr) = Run("pcr", "--signing-certificate", certificate);
        Assert.True(code == 0, stderr);
        return Json(stdout).GetProperty("PCR8").GetString()!;
    }

    private static string PcrOf(string golden, string register) =>
        Json(File.ReadAllText(Golden(golden + ".pcrs.json"))).GetProperty(register).GetString()!;

    private static void AssertPcrsOf(string golden, JsonElement described)
    {
        foreach (string register in BuildRegisters)
            Assert.Equal(PcrOf(golden, register), described.GetProperty("Measurements").GetProperty(register).GetString());
    }

    private static EifPcrSignature SingleSignature(string image)
    {
        using var reader = EifReader.Open(image);
        return Assert.Single(reader.Signatures!);
    }

    private static void AssertOneLine(string stderr, string mention)
    {
        Assert.Matches("^eif: [^\n]+\n$", stderr);
        Assert.Contains(mention, stderr);
    }

    private static void AssertSameBytes(byte[] expected, byte[] actual, long start, long end)
    {
        Assert.True(expected.Length >= end && actual.Length >= end, $"both files reach offset {end}");
        Assert.Equal(expected[(int)start..(int)end], actual[(int)start..(int)end]);
    }

    private static ulong ReadU64(byte[] bytes, long offset) => BinaryPrimitives.ReadUInt64BigEndian(bytes.AsSpan((int)offset, 8));

    /// <summary>CRC-32 over file[0..544] ‖ file[548..], stored big-endian at 0x220 (spec §2.3).</summary>
    private static void FixCrc(byte[] bytes)
    {
        var crc = new IoCrc32();
        crc.Append(bytes.AsSpan(0, CrcAt));
        crc.Append(bytes.AsSpan(CrcAt + 4));
        BinaryPrimitives.WriteUInt32BigEndian(bytes.AsSpan(CrcAt), crc.GetCurrentHashAsUInt32());
    }

    /// <summary>
    /// The file offset of a CBOR item <c>0x18 vv</c> (24 ≤ vv &lt; 255) among the last 96 items of the golden signature
    /// section's <c>signature</c> array: one byte of the COSE r‖s (spec §7.1, §7.3), found by walking the CBOR.
    /// </summary>
    private static int CoseSignatureItemToChange(byte[] file)
    {
        long signatureOffset = (long)ReadU64(file, SectionOffsetsAt + (8 * GoldenSignatureIndex));
        int dataOffset = (int)signatureOffset + SectionHeaderSize;
        ReadOnlyMemory<byte> data = file.AsMemory(dataOffset, (int)ReadU64(file, SectionSizesAt + (8 * GoldenSignatureIndex)));
        var reader = new CborReader(data, CborConformanceMode.Lax);
        Assert.Equal(1, reader.ReadStartArray());
        Assert.Equal(2, reader.ReadStartMap());
        Assert.Equal("signing_certificate", reader.ReadTextString());
        int? certificateLength = reader.ReadStartArray();
        for (int i = 0; i < certificateLength; i++)
            reader.ReadEncodedValue();
        reader.ReadEndArray();
        Assert.Equal("signature", reader.ReadTextString());
        int coseLength = reader.ReadStartArray()!.Value;
        for (int i = 0; i < coseLength; i++)
        {
            int at = dataOffset + (data.Length - reader.BytesRemaining);
            ReadOnlySpan<byte> item = reader.ReadEncodedValue().Span;
            if (i >= coseLength - 96 && item.Length == 2 && item[0] == 0x18 && item[1] < 0xFF)
                return at;
        }

        Assert.Fail("no 2-byte item below 0xFF among the COSE signature's r||s items");
        return -1;
    }

    /// <summary>DER ECDSA-Sig-Value → raw r‖s, each left-padded to <paramref name="size"/> bytes (RFC 9053 §2.1).</summary>
    private static byte[] DerToRaw(byte[] der, int size)
    {
        var outer = new AsnReader(der, AsnEncodingRules.DER);
        AsnReader sequence = outer.ReadSequence();
        byte[] raw = new byte[2 * size];
        for (int part = 0; part < 2; part++)
        {
            ReadOnlySpan<byte> value = sequence.ReadIntegerBytes().Span.TrimStart((byte)0);
            Assert.True(value.Length <= size, $"DER integer of {value.Length} bytes exceeds {size}");
            value.CopyTo(raw.AsSpan(((part + 1) * size) - value.Length));
        }

        sequence.ThrowIfNotEmpty();
        outer.ThrowIfNotEmpty();
        return raw;
    }

    /// <summary>
    /// Encrypted PKCS#8 as openssl writes it by default (<c>openssl pkcs8 -topk8</c>, <c>openssl genpkey -aes256</c>:
    /// PBES2, PBKDF2-HMAC-SHA256, AES-256-CBC), made by the BCL. <c>TestPki.KeyPem(EncryptedPkcs8)</c> writes the older
    /// PKCS#12 PBE (3DES), because BouncyCastle's Pkcs8Generator does not take the AES OID as a PBE algorithm.
    /// </summary>
    private static string EncryptedPkcs8(TestPki.Identity identity, string passphrase)
    {
        using var ecdsa = ECDsa.Create();
        ecdsa.ImportPkcs8PrivateKey(PrivateKeyInfoFactory.CreatePrivateKeyInfo(identity.Keys.Private).GetEncoded(), out _);
        return ecdsa.ExportEncryptedPkcs8PrivateKeyPem(passphrase, new PbeParameters(PbeEncryptionAlgorithm.Aes256Cbc, HashAlgorithmName.SHA256, 2048));
    }

    /// <summary>A legacy encrypted SEC1 key (<c>Proc-Type: 4,ENCRYPTED</c>), as <c>openssl ec -aes256</c> writes it.</summary>
    private static string EncryptedSec1(TestPki.Identity identity, string passphrase)
    {
        using var text = new StringWriter();
        var writer = new PemWriter(text);
        writer.WriteObject(new MiscPemGenerator(identity.Keys, "AES-256-CBC", passphrase.ToCharArray(), new SecureRandom()));
        writer.Writer.Flush();
        return text.ToString();
    }

    private static string UniqueVariableName() => $"EIF_TEST_PASSPHRASE_{Guid.NewGuid():N}";

    /// <summary>The openssl CLI on PATH; skips the test (visibly) when there is none. CI installs it.</summary>
    private static string OpenSsl()
    {
        string path = Environment.GetEnvironmentVariable("PATH") ?? string.Empty;
        foreach (string folder in path.Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries))
        {
            string candidate = Path.Combine(folder, OperatingSystem.IsWindows() ? "openssl.exe" : "openssl");
            if (File.Exists(candidate))
                return candidate;
        }

        Assert.Skip($"openssl CLI not found: no 'openssl' in any PATH folder ({path})");
        return string.Empty;
    }

    private static void RunOpenSsl(string openssl, params string[] args)
    {
        var start = new ProcessStartInfo(openssl) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (string arg in args)
            start.ArgumentList.Add(arg);
        using var process = Process.Start(start)!;
        Task<string> stdout = process.StandardOutput.ReadToEndAsync(TestContext.Current.CancellationToken);
        string stderr = process.StandardError.ReadToEnd();
        process.WaitForExit();
        Assert.True(process.ExitCode == 0, $"openssl {string.Join(' ', args)} exited {process.ExitCode}: {stderr}{stdout.Result}");
    }

    /// <summary>Sets (or, with a null value, unsets) an environment variable and restores its previous value.</summary>
    private sealed class EnvironmentVariable : IDisposable
    {
        private readonly string? _name;
        private readonly string? _previous;

        internal EnvironmentVariable(string? name, string? value)
        {
            _name = name;
            if (name is null)
                return;
            _previous = Environment.GetEnvironmentVariable(name);
            Environment.SetEnvironmentVariable(name, value);
        }

        public void Dispose()
        {
            if (_name is not null)
                Environment.SetEnvironmentVariable(_name, _previous);
        }
    }
}

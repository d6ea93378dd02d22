using System.Buffers.Binary;
using static EifCli.Tests.CliHarness;

namespace EifCli.Tests;

public class InspectTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("eif-cli").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void DescribeEif_Signed_HasNitroCliKeysInOrderPlusSections()
    {
        var (code, stdout, stderr) = Run("describe-eif", "--eif-path", Golden("synth_signed.eif"));

        Assert.True(code == 0, stderr);
        var json = Json(stdout);
        Assert.Equal(["EifVersion", "Measurements", "IsSigned", "SigningCertificate", "CheckCRC", "SignatureCheck", "ImageName", "ImageVersion", "Metadata", "Sections"], json.EnumerateObject().Select(p => p.Name));
        Assert.Equal(4, json.GetProperty("EifVersion").GetInt32());
        Assert.True(json.GetProperty("IsSigned").GetBoolean());
        Assert.True(json.GetProperty("CheckCRC").GetBoolean());
        Assert.Equal(["HashAlgorithm", "PCR0", "PCR1", "PCR2", "PCR8"], json.GetProperty("Measurements").EnumerateObject().Select(p => p.Name));
        Assert.Equal(["BuildTime", "BuildTool", "BuildToolVersion", "OperatingSystem", "KernelVersion", "DockerInfo"], json.GetProperty("Metadata").EnumerateObject().Select(p => p.Name));
        var sections = json.GetProperty("Sections").EnumerateArray().Select(s => (s.GetProperty("Type").GetString(), s.GetProperty("Offset").GetInt64(), s.GetProperty("Size").GetInt64())).ToList();
        Assert.Equal([("Kernel", 548L, 4096L), ("Cmdline", 4656L, 49L), ("Metadata", 4717L, 249L), ("Ramdisk", 4978L, 1024L), ("Ramdisk", 6014L, 2500L), ("Signature", 8526L, 1989L)], sections);
    }

    [Fact]
    public void DescribeEif_CustomMetadataObject_IsFlattenedIntoMetadata()
    {
        var json = Json(Run("describe-eif", "--eif-path", Golden("synth_metadata.eif")).Stdout);
        var metadata = json.GetProperty("Metadata");
        Assert.Equal(42, metadata.GetProperty("build").GetInt32());
        Assert.Equal("golden", metadata.GetProperty("owner").GetString());
        Assert.False(metadata.TryGetProperty("CustomMetadata", out _));
    }

    [Fact]
    public void DescribeEif_CustomMetadataArray_IsPrintedWhole()
    {
        string meta = Path.Combine(_dir, "m.json");
        File.WriteAllText(meta, "[1,2]");
        string eif = Path.Combine(_dir, "a.eif");
        Assert.Equal(0, Run("build-eif", "--kernel", Golden("inputs/kernel.bin"), "--cmdline", "x", "--ramdisk", Golden("inputs/ramdisk1.bin"), "--metadata", meta, "--output", eif).Code);

        var metadata = Json(Run("describe-eif", "--eif-path", eif).Stdout).GetProperty("Metadata");

        Assert.Equal(2, metadata.GetProperty("CustomMetadata").GetArrayLength());
    }

    [Fact]
    public void DescribeEif_CrcMismatch_PrintsCheckCrcFalseAndExitsFour()
    {
        string eif = Path.Combine(_dir, "crc.eif");
        byte[] bytes = File.ReadAllBytes(Golden("synth_sha384_named.eif"));
        bytes[^1] ^= 1;
        File.WriteAllBytes(eif, bytes);

        var (code, stdout, stderr) = Run("describe-eif", "--eif-path", eif);

        Assert.Equal(ExitCode.VerificationFailed, code);
        Assert.False(Json(stdout).GetProperty("CheckCRC").GetBoolean());
        Assert.Matches($"^eif: {System.Text.RegularExpressions.Regex.Escape(eif)}: header 'eif_crc32' is 0x[0-9A-F]{{8}} but the file's CRC-32 is 0x[0-9A-F]{{8}}\n$", stderr);
    }

    [Fact]
    public void DescribeEif_Malformed_OneLineOnStderrExitThree()
    {
        string eif = Path.Combine(_dir, "bad.eif");
        byte[] bytes = File.ReadAllBytes(Golden("synth_sha384_named.eif"));
        BinaryPrimitives.WriteUInt16BigEndian(bytes.AsSpan(0x1A), 40);
        File.WriteAllBytes(eif, bytes);

        var (code, stdout, stderr) = Run("describe-eif", "--eif-path", eif);

        Assert.Equal(ExitCode.InvalidInput, code);
        Assert.Empty(stdout);
        Assert.Equal($"eif: {eif}: header 'num_sections' is 40; at most 32 are allowed\n", stderr);
    }

    [Fact]
    public void DescribeEif_NotAnEif_SaysSo()
    {
        var (code, _, stderr) = Run("describe-eif", "--eif-path", Golden("inputs/kernel.bin"));
        Assert.Equal(ExitCode.InvalidInput, code);
        Assert.Contains("not an EIF file", stderr);
    }

    [Fact]
    public void Pcr_InputAndCertificate_MatchSpecAndGolden()
    {
        string hello = Path.Combine(_dir, "hello");
        File.WriteAllText(hello, "hello\n");

        Assert.Equal("{\n  \"PCR\": \"2b434cf47a302490f93e9aff3086318358d1e95d545b28241d3dceb121e452066f1d1f108022fd30f1fbddd0cda47dc9\"\n}\n", Run("pcr", "--input", hello).Stdout);
        Assert.Equal(
            Json(File.ReadAllText(Golden("synth_signed.pcrs.json"))).GetProperty("PCR8").GetString(),
            Json(Run("pcr", "--signing-certificate", Golden("inputs/signing_cert.pem")).Stdout).GetProperty("PCR8").GetString());
    }

    [Fact]
    public void Pcr_CertificateOptionOnANonCertificate_IsInvalidInput()
    {
        var (code, _, stderr) = Run("pcr", "--signing-certificate", Golden("inputs/signing_key.pem"));
        Assert.Equal(ExitCode.InvalidInput, code);
        Assert.Contains("no PEM 'CERTIFICATE' block", stderr);
    }

    [Fact]
    public void VerifyEif_MatchingPcrsFile_ExitsZero()
    {
        var (code, stdout, _) = Run("verify-eif", "--eif-path", Golden("synth_signed.eif"), "--pcrs", Golden("synth_signed.pcrs.json"));
        Assert.Equal(0, code);
        var json = Json(stdout);
        Assert.True(json.GetProperty("Verified").GetBoolean());
        Assert.Equal(4, json.GetProperty("Checks").GetArrayLength());
    }

    [Fact]
    public void VerifyEif_DescribeOutputAsPcrsFile_IsAccepted()
    {
        string pcrs = Path.Combine(_dir, "described.json");
        File.WriteAllText(pcrs, Run("describe-eif", "--eif-path", Golden("synth_aarch64.eif")).Stdout);
        Assert.Equal(0, Run("verify-eif", "--eif-path", Golden("synth_sha384_named.eif"), "--pcrs", pcrs).Code); // same PCRs, other arch flag
    }

    [Fact]
    public void VerifyEif_Mismatch_NamesRegisterExpectedAndActual()
    {
        string wrong = new('a', 96);
        var (code, _, stderr) = Run("verify-eif", "--eif-path", Golden("synth_sha384_named.eif"), "--pcrs", Golden("synth_one_ramdisk.pcrs.json"), "--pcr1", wrong.ToUpperInvariant());

        Assert.Equal(ExitCode.VerificationFailed, code);
        string[] lines = stderr.TrimEnd('\n').Split('\n');
        Assert.Equal(3, lines.Length); // PCR0, PCR1 (explicit option wins over the file), PCR2
        Assert.Contains($"PCR1 mismatch: expected {wrong}, actual 03085a6b", lines[1]);
    }

    [Fact]
    public void VerifyEif_Pcr8OnUnsignedImage_Fails()
    {
        var (code, _, stderr) = Run("verify-eif", "--eif-path", Golden("synth_sha384_named.eif"), "--pcr8", new string('0', 96));
        Assert.Equal(ExitCode.VerificationFailed, code);
        Assert.Contains("not signed", stderr);
    }

    [Fact]
    public void VerifyEif_CrcMismatch_Fails()
    {
        string eif = Path.Combine(_dir, "crc.eif");
        byte[] bytes = File.ReadAllBytes(Golden("synth_sha384_named.eif"));
        bytes[600] ^= 1;
        File.WriteAllBytes(eif, bytes);

        var (code, stdout, stderr) = Run("verify-eif", "--eif-path", eif);

        Assert.Equal(ExitCode.VerificationFailed, code);
        Assert.False(Json(stdout).GetProperty("Verified").GetBoolean());
        Assert.Contains("eif_crc32", stderr);
    }

    [Fact]
    public void VerifyEif_PcrsFileWithoutRegisters_IsInvalidInput()
    {
        string pcrs = Path.Combine(_dir, "empty.json");
        File.WriteAllText(pcrs, "{\"HashAlgorithm\": \"x\"}");
        var (code, _, stderr) = Run("verify-eif", "--eif-path", Golden("synth_sha384_named.eif"), "--pcrs", pcrs);
        Assert.Equal(ExitCode.InvalidInput, code);
        Assert.Contains("no PCR0, PCR1, PCR2 or PCR8", stderr);
    }
}

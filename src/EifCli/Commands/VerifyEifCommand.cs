using System.CommandLine;
using EifFormat;
using EifFormat.Json;
using EifFormat.Signing;

namespace EifCli;

/// <summary>
/// <c>eif verify-eif</c>: a pipeline gate. Exit 0 only when the file is a valid EIF, its CRC holds, every expected PCR
/// matches and, for a signed image, the signature verifies over this PCR0 with a certificate valid now (and issued by
/// <c>--trusted-certificate</c> when given); otherwise each failure is named on stderr (expected vs actual) and the exit code is
/// <see cref="ExitCode.VerificationFailed"/>. A JSON report is printed on stdout either way.
/// </summary>
internal sealed class VerifyEifCommand : Command
{
    private static readonly string[] Registers = ["PCR0", "PCR1", "PCR2", "PCR8"];

    private readonly TextWriter _stdout;
    private readonly TextWriter _stderr;

    internal VerifyEifCommand(TextWriter stdout, TextWriter stderr)
        : base("verify-eif", "Check an EIF's structure, CRC and PCRs against expected values; exit 0 only if all hold.")
    {
        _stdout = stdout;
        _stderr = stderr;
        Options.Add(EifPathOption);
        Options.Add(Pcr0Option);
        Options.Add(Pcr1Option);
        Options.Add(Pcr2Option);
        Options.Add(Pcr8Option);
        Options.Add(PcrsOption);
        Options.Add(TrustedCertificateOption);
        SetAction(result => Execute(result));
    }

    internal Option<string> EifPathOption { get; } = EifCli.Options.ExistingFile("--eif-path", "The EIF to verify.");

    internal Option<string> Pcr0Option { get; } = EifCli.Options.PcrValue("--pcr0", "PCR0");

    internal Option<string> Pcr1Option { get; } = EifCli.Options.PcrValue("--pcr1", "PCR1");

    internal Option<string> Pcr2Option { get; } = EifCli.Options.PcrValue("--pcr2", "PCR2");

    internal Option<string> Pcr8Option { get; } = EifCli.Options.PcrValue("--pcr8", "PCR8");

    internal Option<string> PcrsOption { get; } = EifCli.Options.ExistingFile(
        "--pcrs",
        "Expected PCRs as JSON: what build-eif, build-enclave, describe-eif or eif_build print. Explicit --pcrN options win.",
        required: false);

    internal Option<string> TrustedCertificateOption { get; } = EifCli.Options.ExistingFile(
        "--trusted-certificate",
        "PEM certificate the image must be signed by: the signing certificate itself, or the CA that issued it.",
        required: false);

    /// <summary>
    /// Reads expected registers from JSON: a <c>Measurements</c> object (build-eif, describe-eif) or PCR keys at the
    /// top level (eif_build). Other keys (HashAlgorithm, metadata) are ignored.
    /// </summary>
    internal static Dictionary<string, string> ReadExpected(string path)
    {
        byte[] bytes = File.ReadAllBytes(path);
        JValue root;
        try
        {
            root = SerdeJsonParser.Parse(bytes);
        }
        catch (FormatException ex)
        {
            throw new CliException(ExitCode.InvalidInput, $"{path}: not valid JSON ({ex.Message})");
        }

        JObject source = root switch
        {
            JObject o when o["Measurements"] is JObject m => m,
            JObject o => o,
            _ => throw new CliException(ExitCode.InvalidInput, $"{path}: expected a JSON object with PCR0..PCR8 or a 'Measurements' object"),
        };
        var expected = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (string register in Registers)
        {
            switch (source[register])
            {
                case null:
                    break;
                case JString s when EifCli.Options.IsPcrHex(s.Value):
                    expected[register] = s.Value.ToLowerInvariant();
                    break;
                default:
                    throw new CliException(ExitCode.InvalidInput, $"{path}: '{register}' must be a string of 96 hex digits");
            }
        }

        if (expected.Count == 0)
            throw new CliException(ExitCode.InvalidInput, $"{path}: no PCR0, PCR1, PCR2 or PCR8 found");
        return expected;
    }

    private int Execute(ParseResult result)
    {
        var expected = result.GetValue(PcrsOption) is { } pcrs ? ReadExpected(pcrs) : new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var (register, option) in new[] { ("PCR0", Pcr0Option), ("PCR1", Pcr1Option), ("PCR2", Pcr2Option), ("PCR8", Pcr8Option) })
        {
            if (result.GetValue(option) is { } value)
                expected[register] = value.ToLowerInvariant();
        }

        string path = result.GetValue(EifPathOption)!;
        using var reader = EifReader.Open(path);
        EifDigests digests = reader.ComputeDigests();
        var actual = digests.Measurements.ToHexPairs().ToDictionary(p => p.Key, p => p.Value, StringComparer.Ordinal);

        var failures = new List<string>();
        if (digests.ChecksumError is { } crcError)
            failures.Add(crcError.WithPath(path).Message);

        // A signed image: the signature must verify and sign this PCR0, and its certificate must be valid now;
        // with --trusted-certificate, the signer must be that certificate or issued by it.
        var signatureReport = new List<(string, JValue)>();
        EifCertificate? trusted = result.GetValue(TrustedCertificateOption) is { } trustedPath
            ? EifCertificate.FromPem(File.ReadAllBytes(trustedPath), trustedPath)
            : null;
        if (reader.Signatures is { } entries)
        {
            EifSignatureCheck check = EifSigner.Check(entries[0], digests.Measurements.Pcr0);
            signatureReport.Add(("SignatureCheck", JBool.From(check.Passed)));
            if (DescribeEifCommand.SignatureFailure(check, digests.Measurements.Pcr0) is { } failure)
                failures.Add($"{path}: {failure}");
            DateTimeOffset now = DateTimeOffset.UtcNow;
            signatureReport.Add(("CertificateValid", JBool.From(check.Certificate.IsValidAt(now))));
            if (!check.Certificate.IsValidAt(now))
            {
                string state = now.UtcDateTime < check.Certificate.NotBefore ? "is not valid yet" : "has expired";
                failures.Add($"{path}: the signing certificate {state} (valid {check.Certificate.NotBefore:yyyy-MM-ddTHH:mm:ssZ} to {check.Certificate.NotAfter:yyyy-MM-ddTHH:mm:ssZ})");
            }

            if (trusted is not null)
            {
                bool isTrusted = check.Certificate.IsSignedBy(trusted, now);
                signatureReport.Add(("TrustedSigner", JBool.From(isTrusted)));
                if (!isTrusted)
                {
                    string why = !trusted.IsCertificateAuthority ? $" ({trusted.What} is not a CA certificate)"
                        : !trusted.IsValidAt(now) ? $" ({trusted.What} is not valid now)"
                        : string.Empty;
                    failures.Add($"{path}: the signer (subject {check.Certificate.Subject}, issuer {check.Certificate.Issuer}) is neither {trusted.What} nor issued by it{why}");
                }
            }
        }
        else if (trusted is not null)
        {
            signatureReport.Add(("TrustedSigner", JBool.False));
            failures.Add($"{path}: the image is not signed, so it cannot be signed by {trusted.What}");
        }
        var checks = new List<JValue>();
        foreach (string register in Registers)
        {
            if (!expected.TryGetValue(register, out string? want))
                continue;
            string? got = actual.GetValueOrDefault(register);
            bool match = got == want;
            checks.Add(JObject.Of(
                ("Register", new JString(register)),
                ("Expected", new JString(want)),
                ("Actual", got is null ? JNull.Instance : new JString(got)),
                ("Match", JBool.From(match))));
            if (!match)
            {
                failures.Add(got is null
                    ? $"{path}: {register} expected {want}, but the image has no {register} (it is not signed)"
                    : $"{path}: {register} mismatch: expected {want}, actual {got}");
            }
        }

        var report = new List<(string, JValue)> { ("CheckCRC", JBool.From(digests.CrcMatches)) };
        report.AddRange(signatureReport);
        report.Add(("Checks", new JArray(checks)));
        report.Add(("Verified", JBool.From(failures.Count == 0)));
        Output.WriteJson(_stdout, JObject.Of(report.ToArray()));
        foreach (string failure in failures)
            _stderr.WriteLine($"eif: {failure}");
        return failures.Count == 0 ? ExitCode.Success : ExitCode.VerificationFailed;
    }
}

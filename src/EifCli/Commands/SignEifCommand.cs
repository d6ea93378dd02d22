using System.CommandLine;
using EifFormat;
using EifFormat.Json;
using EifFormat.Signing;

namespace EifCli;

/// <summary>
/// <c>eif sign-eif</c>: signs an EIF (nitro-cli's verb), or prepares and attaches a detached signature for keys that
/// never leave an HSM or a cloud KMS (nitro-cli#204, #639):
/// <list type="bullet">
/// <item><c>--private-key K</c>: sign with a local key.</item>
/// <item><c>--export-to-be-signed OUT</c>: write the COSE Sig_structure to OUT and its digest to OUT.digest.</item>
/// <item><c>--signature SIG</c>: attach a signature of that Sig_structure made elsewhere (DER or raw r‖s, or either in
/// base64), refused unless it verifies with the certificate over this image.</item>
/// </list>
/// An unsigned image gets the section appended; a signed one has it replaced, sizes and CRC rewritten. Writing in place
/// (no <c>--output-file</c>) is atomic.
/// </summary>
internal sealed class SignEifCommand : Command
{
    private readonly TextWriter _stdout;
    private readonly TextWriter _stderr;

    internal SignEifCommand(TextWriter stdout, TextWriter stderr)
        : base("sign-eif", "Sign an EIF with a local key, or export what to sign and attach a signature made by an HSM or KMS.")
    {
        _stdout = stdout;
        _stderr = stderr;
        Options.Add(EifPathOption);
        Signing.AddTo(this);
        Options.Add(ExportOption);
        Options.Add(SignatureOption);
        Options.Add(OutputOption);
        Signing.CertificateOption.Required = true;
        Validators.Add(result =>
        {
            int modes = (result.GetResult(Signing.PrivateKeyOption) is not null ? 1 : 0)
                + (result.GetResult(ExportOption) is not null ? 1 : 0)
                + (result.GetResult(SignatureOption) is not null ? 1 : 0);
            if (modes != 1)
                result.AddError("Give exactly one of --private-key, --export-to-be-signed and --signature.");
            if (result.GetResult(ExportOption) is not null && result.GetResult(OutputOption) is not null)
                result.AddError("--output-file does not apply to --export-to-be-signed, which leaves the EIF unchanged.");

            // What is written must never land on an input: the image, the certificate, the key or the signature.
            var inputs = new[] { EifPathOption, Signing.CertificateOption, Signing.PrivateKeyOption, SignatureOption, Signing.PassphraseFileOption }
                .Select(o => result.GetValue(o)).OfType<string>().Select(Path.GetFullPath).ToList();
            if (result.GetValue(ExportOption) is { } export)
            {
                foreach (string target in new[] { export, export + ".digest" })
                {
                    if (inputs.Contains(Path.GetFullPath(target)))
                        result.AddError($"--export-to-be-signed would overwrite the input '{target}'; choose another file.");
                }
            }

            if (result.GetValue(OutputOption) is { } output && inputs.Skip(1).Contains(Path.GetFullPath(output)))
                result.AddError($"--output-file '{output}' is one of the inputs; choose another file (or omit it to sign --eif-path in place).");
        });
        SetAction(result => Execute(result));
    }

    internal Option<string> EifPathOption { get; } = EifCli.Options.ExistingFile("--eif-path", "The EIF to sign (signed or not).");

    internal SigningOptions Signing { get; } = new();

    internal Option<string> ExportOption { get; } = EifCli.Options.OutputFile(
        "--export-to-be-signed",
        "Detached step 1: write the bytes to sign (COSE Sig_structure) here and their digest to FILE.digest. Sign FILE with " +
        "e.g. 'openssl dgst -sha384 -sign key.pem -out sig.der FILE', or FILE.digest with 'aws kms sign --message-type DIGEST'.",
        required: false);

    internal Option<string> SignatureOption { get; } = EifCli.Options.ExistingFile(
        "--signature",
        "Detached step 2: the signature of the exported bytes: DER ECDSA-Sig-Value (openssl, KMS) or raw r||s, binary or base64.",
        required: false);

    internal Option<string> OutputOption { get; } = EifCli.Options.OutputFile(
        "--output-file", "Write the signed EIF here instead of replacing --eif-path.", required: false);

    private int Execute(ParseResult result)
    {
        string eifPath = result.GetValue(EifPathOption)!;
        string output = result.GetValue(OutputOption) ?? eifPath;
        (byte[] pem, EifCertificate certificate, EifSigningKey? key) = Signing.Load(result);

        if (result.GetValue(ExportOption) is { } exportPath)
        {
            EifToBeSigned tbs = ToBeSigned(eifPath, certificate);
            AtomicFile.Write(exportPath, s => { s.Write(tbs.ToBeSigned); return 0; });
            AtomicFile.Write(exportPath + ".digest", s => { s.Write(tbs.Digest); return 0; });
            Output.WriteJson(_stdout, JObject.Of(
                ("ToBeSigned", new JString(exportPath)),
                ("DigestFile", new JString(exportPath + ".digest")),
                ("Algorithm", new JString(tbs.Algorithm.ToString())),
                ("DigestAlgorithm", new JString(CoseAlgorithms.DigestName(tbs.Algorithm))),
                ("Digest", new JString(Convert.ToHexStringLower(tbs.Digest))),
                ("PCR0", new JString(Pcr.ToHex(tbs.Pcr0)))));
            return ExitCode.Success;
        }

        Func<byte[], byte[]> makeSection;
        if (key is not null)
        {
            makeSection = pcr0 => EifSigner.CreateSection(pem, key, pcr0);
        }
        else
        {
            string signaturePath = result.GetValue(SignatureOption)!;
            byte[] signature = File.ReadAllBytes(signaturePath);
            makeSection = pcr0 =>
            {
                EifToBeSigned tbs = EifSigner.ToBeSigned(certificate.Algorithm, pcr0);
                return EifSigner.CreateSection(pem, tbs, EifSigner.AcceptExternalSignature(certificate, tbs, signature, signaturePath));
            };
        }

        EifWriteResult written = EifSigner.SignFile(eifPath, output, makeSection);
        _stderr.WriteLine($"Enclave Image successfully signed: {output}.");
        Output.WriteJson(_stdout, JObject.Of(("Measurements", Output.Measurements(written.Measurements))));
        return ExitCode.Success;
    }

    private static EifToBeSigned ToBeSigned(string eifPath, EifCertificate certificate)
    {
        using var reader = EifReader.Open(eifPath);
        EifDigests digests = reader.ComputeDigests();
        if (digests.ChecksumError is { } error)
            throw error.WithPath(eifPath);
        return EifSigner.ToBeSigned(certificate.Algorithm, digests.Measurements.Pcr0);
    }
}

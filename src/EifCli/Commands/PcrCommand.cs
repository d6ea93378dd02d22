using System.CommandLine;
using EifFormat;
using EifFormat.Json;

namespace EifCli;

/// <summary>
/// <c>eif pcr</c>: the PCR of any file (<c>{"PCR": …}</c>) or of a signing certificate (<c>{"PCR8": …}</c>), as
/// nitro-cli's <c>get_file_pcr</c> computes them (spec §6.4). Files are hashed as a stream.
/// </summary>
internal sealed class PcrCommand : Command
{
    private readonly TextWriter _stdout;

    internal PcrCommand(TextWriter stdout)
        : base("pcr", "Print the PCR of a file (--input) or of a PEM signing certificate (--signing-certificate, PCR8).")
    {
        _stdout = stdout;
        Options.Add(InputOption);
        Options.Add(CertificateOption);
        Validators.Add(result =>
        {
            bool input = result.GetResult(InputOption) is not null;
            bool certificate = result.GetResult(CertificateOption) is not null;
            if (input == certificate)
                result.AddError("Give exactly one of --input and --signing-certificate.");
        });
        SetAction(result => Execute(result));
    }

    internal Option<string> InputOption { get; } = EifCli.Options.ExistingFile("--input", "Any file: PCR = SHA384(0^48 ‖ SHA384(file)).", required: false);

    internal Option<string> CertificateOption { get; } = EifCli.Options.ExistingFile("--signing-certificate", "A PEM certificate: PCR8 over the DER of its first certificate.", required: false);

    private int Execute(ParseResult result)
    {
        if (result.GetValue(InputOption) is { } input)
        {
            byte[] pcr;
            using (var stream = new FileStream(input, FileMode.Open, FileAccess.Read, FileShare.Read, bufferSize: 1 << 20, FileOptions.SequentialScan))
                pcr = Pcr.Compute(stream);
            Output.WriteJson(_stdout, JObject.Of(("PCR", new JString(Pcr.ToHex(pcr)))));
        }
        else
        {
            string path = result.GetValue(CertificateOption)!;
            byte[] pem = File.ReadAllBytes(path);
            byte[] der = EifSignatureSection.FirstCertificateDer(pem, path);
            Output.WriteJson(_stdout, JObject.Of(("PCR8", new JString(Pcr.ToHex(Pcr.Compute(der))))));
        }

        return ExitCode.Success;
    }
}

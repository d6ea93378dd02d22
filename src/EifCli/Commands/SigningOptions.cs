using System.CommandLine;
using EifFormat;
using EifFormat.Signing;

namespace EifCli;

/// <summary>
/// The signing options build-eif and sign-eif share, and the checks made before anything is written: the key is EC
/// on P-256/P-384/P-521, belongs to the certificate, and the certificate is valid now (nitro-cli only finds out at
/// launch). The passphrase of an encrypted key comes from an environment variable or a file, never the command line.
/// </summary>
internal sealed class SigningOptions
{
    /// <summary>The environment variable read for the passphrase when no option names one.</summary>
    internal const string DefaultPassphraseVariable = "EIF_PRIVATE_KEY_PASSPHRASE";

    internal Option<string> CertificateOption { get; } = EifCli.Options.ExistingFile(
        "--signing-certificate", "PEM signing certificate (stored verbatim in the image; PCR8 measures it).", required: false);

    internal Option<string> PrivateKeyOption { get; } = EifCli.Options.ExistingFile(
        "--private-key", "PEM EC private key: SEC1, PKCS#8 or encrypted PKCS#8.", required: false);

    internal Option<string> PassphraseEnvOption { get; } = new("--private-key-passphrase-env")
    {
        Description = $"Environment variable holding the key's passphrase (default: {DefaultPassphraseVariable}).",
        HelpName = "VAR",
    };

    internal Option<string> PassphraseFileOption { get; } = EifCli.Options.ExistingFile(
        "--private-key-passphrase-file", "File whose first line is the key's passphrase.", required: false);

    internal void AddTo(Command command)
    {
        command.Options.Add(CertificateOption);
        command.Options.Add(PrivateKeyOption);
        command.Options.Add(PassphraseEnvOption);
        command.Options.Add(PassphraseFileOption);
    }

    /// <summary>The passphrase source the options name (file, variable, or the default variable).</summary>
    internal Func<string?> Passphrase(ParseResult result) => () =>
    {
        if (result.GetValue(PassphraseFileOption) is { } file)
            return File.ReadLines(file).FirstOrDefault() ?? string.Empty;
        string variable = result.GetValue(PassphraseEnvOption) ?? DefaultPassphraseVariable;
        return Environment.GetEnvironmentVariable(variable);
    };

    /// <summary>Loads the certificate (and the key, when given) and checks them for signing now.</summary>
    internal (byte[] Pem, EifCertificate Certificate, EifSigningKey? Key) Load(ParseResult result)
    {
        string certificatePath = result.GetValue(CertificateOption)!;
        byte[] pem = File.ReadAllBytes(certificatePath);
        var certificate = EifCertificate.FromPem(pem, certificatePath);
        EifSigningKey? key = result.GetValue(PrivateKeyOption) is { } keyPath ? EifSigningKey.Load(keyPath, Passphrase(result)) : null;
        EifSigner.EnsureUsable(certificate, key, DateTimeOffset.UtcNow);
        EifSigner.EnsureSectionFits(pem, certificate.Algorithm);
        return (pem, certificate, key);
    }
}

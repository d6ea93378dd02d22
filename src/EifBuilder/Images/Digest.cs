using System.Security.Cryptography;
using System.Text.RegularExpressions;

namespace EifBuilder.Images;

/// <summary>An OCI content digest, <c>algorithm:hex</c> (OCI image-spec descriptor.md); sha256 and sha512 are read.</summary>
public sealed partial record Digest(string Algorithm, string Hex)
{
    /// <summary>Parses and validates a digest string.</summary>
    /// <exception cref="EnclaveBuildException"><see cref="BuildError.InvalidImage"/> or <see cref="BuildError.UnsupportedMediaType"/>.</exception>
    public static Digest Parse(string text, string what)
    {
        var m = Pattern().Match(text);
        if (!m.Success)
            throw new EnclaveBuildException(BuildError.InvalidImage, $"{what}: '{EifFormat.PrintableText.Of(text, 100)}' is not a digest (algorithm:hex)");
        var digest = new Digest(m.Groups[1].Value, m.Groups[2].Value);
        int expected = digest.Algorithm switch { "sha256" => 64, "sha512" => 128, _ => 0 };
        if (expected == 0)
            throw new EnclaveBuildException(BuildError.UnsupportedMediaType, $"{what}: digest algorithm '{digest.Algorithm}' is not supported (sha256, sha512)");
        if (digest.Hex.Length != expected)
            throw new EnclaveBuildException(BuildError.InvalidImage, $"{what}: a {digest.Algorithm} digest has {expected} hex digits, not {digest.Hex.Length}");
        return digest;
    }

    /// <summary>The sha256 digest of <paramref name="bytes"/>.</summary>
    public static Digest Sha256Of(ReadOnlySpan<byte> bytes) => new("sha256", Convert.ToHexStringLower(SHA256.HashData(bytes)));

    /// <summary>A hasher for this digest's algorithm.</summary>
    public IncrementalHash CreateHash() =>
        IncrementalHash.CreateHash(Algorithm == "sha512" ? HashAlgorithmName.SHA512 : HashAlgorithmName.SHA256);

    /// <summary>Throws unless <paramref name="bytes"/> have this digest.</summary>
    /// <exception cref="EnclaveBuildException"><see cref="BuildError.DigestMismatch"/>.</exception>
    public void Verify(ReadOnlySpan<byte> bytes, string what)
    {
        using var hash = CreateHash();
        hash.AppendData(bytes);
        VerifyHash(hash.GetHashAndReset(), what);
    }

    /// <summary>Throws unless a computed hash equals this digest.</summary>
    /// <exception cref="EnclaveBuildException"><see cref="BuildError.DigestMismatch"/>.</exception>
    public void VerifyHash(ReadOnlySpan<byte> computed, string what)
    {
        string actual = Convert.ToHexStringLower(computed);
        if (actual != Hex)
            throw new EnclaveBuildException(BuildError.DigestMismatch, $"{what}: content has digest {Algorithm}:{actual}, but it is referenced as {this}");
    }

    /// <inheritdoc/>
    public override string ToString() => $"{Algorithm}:{Hex}";

    [GeneratedRegex("^([a-z0-9]+(?:[+._-][a-z0-9]+)*):([a-zA-Z0-9=_-]+)$")]
    private static partial Regex Pattern();
}

using System.Security.Cryptography;

namespace EifFormat;

/// <summary>
/// The PCR rule of every EIF register: a single TPM-style extend of a zero register by the digest of a content
/// stream, <c>PCR = SHA384(0^48 ‖ SHA384(stream))</c> (<c>EifHasher::new_without_cache</c> and
/// <c>tpm_extend_finalize_reset</c>, src/defs/eif_hasher.rs; spec §6.1).
/// </summary>
public static class Pcr
{
    /// <summary>Size of a SHA-384 PCR value in bytes.</summary>
    public const int Size = 48;

    /// <summary>The PCR of a content stream given all at once.</summary>
    public static byte[] Compute(ReadOnlySpan<byte> content)
    {
        Span<byte> inner = stackalloc byte[Size];
        SHA384.HashData(content, inner);
        return Extend(inner);
    }

    /// <summary>The PCR of a stream's remaining bytes, read in chunks.</summary>
    public static byte[] Compute(Stream content)
    {
        ArgumentNullException.ThrowIfNull(content);
        Span<byte> inner = stackalloc byte[Size];
        SHA384.HashData(content, inner);
        return Extend(inner);
    }

    /// <summary>Extends a zero register by <paramref name="digest"/>: SHA384(0^48 ‖ digest).</summary>
    public static byte[] Extend(ReadOnlySpan<byte> digest)
    {
        Span<byte> block = stackalloc byte[Size + digest.Length];
        block[..Size].Clear();
        digest.CopyTo(block[Size..]);
        return SHA384.HashData(block);
    }

    /// <summary>Lowercase hex, as every nitro-cli output prints PCRs.</summary>
    public static string ToHex(ReadOnlySpan<byte> value) => Convert.ToHexStringLower(value);
}

/// <summary>A streaming PCR: append content, then <see cref="Finish"/>.</summary>
internal sealed class PcrAccumulator : IDisposable
{
    private readonly IncrementalHash _hash;

    internal PcrAccumulator()
        : this(IncrementalHash.CreateHash(HashAlgorithmName.SHA384), 0)
    {
    }

    private PcrAccumulator(IncrementalHash hash, long length)
    {
        _hash = hash;
        Length = length;
    }

    internal long Length { get; private set; }

    internal void Append(ReadOnlySpan<byte> data)
    {
        _hash.AppendData(data);
        Length += data.Length;
    }

    /// <summary>An independent accumulator that has seen the same bytes so far.</summary>
    internal PcrAccumulator Clone() => new(_hash.Clone(), Length);

    internal byte[] Finish()
    {
        Span<byte> inner = stackalloc byte[Pcr.Size];
        _hash.GetHashAndReset(inner);
        return Pcr.Extend(inner);
    }

    public void Dispose() => _hash.Dispose();
}

namespace EifFormat;

/// <summary>
/// Combines CRC-32/ISO-HDLC values of consecutive pieces: CRC(A ‖ B) from CRC(A), CRC(B) and len(B).
/// </summary>
/// <remarks>
/// Why: the writer streams each section once and learns some sizes (and so the header) only at the end; CRCs of
/// the pieces are combined instead of re-reading the file (the Rust builder's second pass, STYLE.md §1.6).
/// The math is the one zlib's <c>crc32_combine</c> uses: CRC is linear over GF(2), so appending len(B) zero bytes
/// to A multiplies CRC(A) by x^(8·len(B)) modulo the CRC polynomial, and the pre/post conditioning of the two
/// pieces cancels out. Polynomials are held bit-reflected, as the CRC itself is (0xEDB88320 = 0x04C11DB7 reflected).
/// </remarks>
internal static class Crc32Combine
{
    private const uint ReflectedPolynomial = 0xEDB88320;

    // X2n[k] = x^(2^k) mod P, reflected; x^0 is the top bit (1u << 31), x^1 is 1u << 30.
    private static readonly uint[] X2n = BuildPowerTable();

    /// <summary>Returns the CRC of A ‖ B.</summary>
    internal static uint Combine(uint crcA, uint crcB, long lengthB)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(lengthB);
        return MultiplyModP(PowerOfX(lengthB, 3), crcA) ^ crcB;
    }

    // Product of two reflected polynomials modulo P.
    private static uint MultiplyModP(uint a, uint b)
    {
        uint product = 0;
        for (uint bit = 1u << 31; bit != 0; bit >>= 1)
        {
            if ((a & bit) != 0)
                product ^= b;
            b = (b & 1) != 0 ? (b >> 1) ^ ReflectedPolynomial : b >> 1;
        }

        return product;
    }

    // x^(n · 2^k) mod P: square-and-multiply over the bits of n.
    private static uint PowerOfX(long n, int k)
    {
        uint p = 1u << 31;
        while (n != 0)
        {
            if ((n & 1) != 0)
                p = MultiplyModP(X2n[k & 31], p);
            n >>= 1;
            k++;
        }

        return p;
    }

    private static uint[] BuildPowerTable()
    {
        var table = new uint[32];
        uint p = 1u << 30;
        for (int k = 0; k < table.Length; k++)
        {
            table[k] = p;
            p = MultiplyModP(p, p);
        }

        return table;
    }
}

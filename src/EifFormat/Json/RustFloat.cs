using System.Globalization;
using System.Text;

namespace EifFormat.Json;

/// <summary>
/// Prints an f64 the way serde_json does, through the ryu crate's "pretty" format: the shortest digits that
/// round-trip, then 1000.0 / 12.34 / 0.001234 for decimal exponents in a window, scientific (1e30, 1.234e-7) outside.
/// </summary>
/// <remarks>.NET's "R" format gives the same shortest round-trip digits (both pick the closest shortest
/// candidate); only their placement differs, and that is redone here by the ryu crate's rules (pretty/mod.rs).</remarks>
internal static class RustFloat
{
    internal static string Format(double value)
    {
        if (!double.IsFinite(value))
            throw new ArgumentOutOfRangeException(nameof(value), "JSON has no NaN or infinity.");
        if (value == 0)
            return double.IsNegative(value) ? "-0.0" : "0.0";

        string r = value.ToString("R", CultureInfo.InvariantCulture);
        bool negative = r[0] == '-';
        if (negative)
            r = r[1..];
        int exponentMark = r.IndexOf('E');
        int exponent = exponentMark >= 0 ? int.Parse(r.AsSpan(exponentMark + 1), NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture) : 0;
        string mantissa = exponentMark >= 0 ? r[..exponentMark] : r;
        int dot = mantissa.IndexOf('.');
        string digits = dot >= 0 ? mantissa.Remove(dot, 1) : mantissa;
        int fractionDigits = dot >= 0 ? mantissa.Length - dot - 1 : 0;

        // value = digits × 10^k, with the digits stripped of leading and trailing zeros.
        int k = exponent - fractionDigits;
        digits = digits.TrimStart('0');
        int trimmed = digits.Length - digits.TrimEnd('0').Length;
        digits = digits[..^trimmed];
        k += trimmed;
        int length = digits.Length;
        int kk = length + k; // position of the decimal point relative to the first digit

        var sb = new StringBuilder(32);
        if (negative)
            sb.Append('-');
        if (k >= 0 && kk <= 16)
        {
            sb.Append(digits).Append('0', k).Append(".0");
        }
        else if (kk > 0 && kk <= 16)
        {
            sb.Append(digits, 0, kk).Append('.').Append(digits, kk, length - kk);
        }
        else if (kk > -5 && kk <= 0)
        {
            sb.Append("0.").Append('0', -kk).Append(digits);
        }
        else if (length == 1)
        {
            sb.Append(digits).Append('e').Append((kk - 1).ToString(CultureInfo.InvariantCulture));
        }
        else
        {
            sb.Append(digits[0]).Append('.').Append(digits, 1, length - 1).Append('e').Append((kk - 1).ToString(CultureInfo.InvariantCulture));
        }

        return sb.ToString();
    }
}

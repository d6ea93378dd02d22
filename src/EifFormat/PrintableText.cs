using System.Text;

namespace EifFormat;

/// <summary>Text from a file, made safe for a one-line message: no control characters, no terminal escapes.</summary>
public static class PrintableText
{
    /// <summary>At most <paramref name="max"/> characters of printable ASCII; anything else becomes '?', and "..." marks a cut.</summary>
    public static string Of(string text, int max)
    {
        var sb = new StringBuilder(Math.Min(text.Length, max + 3));
        foreach (char c in text)
        {
            if (sb.Length == max)
                return sb.Append("...").ToString();
            sb.Append(c is >= ' ' and <= '~' ? c : '?');
        }

        return sb.ToString();
    }
}

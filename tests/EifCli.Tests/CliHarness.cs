using System.Text.Json;

namespace EifCli.Tests;

/// <summary>Runs the CLI in process and captures what it prints.</summary>
internal static class CliHarness
{
    internal static string GoldenDirectory => Path.Combine(AppContext.BaseDirectory, "golden");

    internal static string Golden(string name) => Path.Combine(GoldenDirectory, name);

    internal static (int Code, string Stdout, string Stderr) Run(params string[] args)
    {
        var stdout = new StringWriter { NewLine = "\n" };
        var stderr = new StringWriter { NewLine = "\n" };
        int code = Cli.Run(args, stdout, stderr);
        return (code, stdout.ToString(), stderr.ToString());
    }

    internal static JsonElement Json(string text)
    {
        using var doc = JsonDocument.Parse(text);
        return doc.RootElement.Clone();
    }

    /// <summary>The words of a golden .cmd line (POSIX single quotes only, which is all those files use).</summary>
    internal static List<string> ShellWords(string line)
    {
        var words = new List<string>();
        var current = new System.Text.StringBuilder();
        bool inWord = false, quoted = false;
        foreach (char c in line.Trim())
        {
            if (quoted)
            {
                if (c == '\'')
                    quoted = false;
                else
                    current.Append(c);
            }
            else if (c == '\'')
            {
                quoted = inWord = true;
            }
            else if (char.IsWhiteSpace(c))
            {
                if (inWord)
                    words.Add(current.ToString());
                current.Clear();
                inWord = false;
            }
            else
            {
                current.Append(c);
                inWord = true;
            }
        }

        if (inWord)
            words.Add(current.ToString());
        return words;
    }
}

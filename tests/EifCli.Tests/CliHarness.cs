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

    /// <summary>
    /// A golden case's exact eif_build command line (tests/golden/NAME.cmd) as <c>eif build-eif</c> arguments writing to
    /// <paramref name="output"/>, with the golden README's two adjustments: the reference writes --name into
    /// ImageVersion (so --version gets the same value, or 1.0 without a name), and our build-tool defaults name our
    /// own tool.
    /// </summary>
    internal static string[] GoldenBuildArgs(string name, string output)
    {
        var words = ShellWords(File.ReadAllText(Golden(name + ".cmd")));
        Assert.Equal("eif_build", words[0]);
        var args = new List<string> { "build-eif" };
        string? imageName = null;
        for (int i = 1; i < words.Count; i++)
        {
            string word = words[i];
            if (word is "--kernel" or "--ramdisk" or "--metadata" or "--signing-certificate" or "--private-key")
            {
                args.Add(word);
                args.Add(Golden(words[++i]));
            }
            else if (word == "--output")
            {
                args.Add(word);
                args.Add(output);
                i++;
            }
            else
            {
                if (word == "--name")
                    imageName = words[i + 1];
                args.Add(word);
            }
        }

        args.AddRange(["--version", imageName ?? "1.0", "--build-tool", "eif_build", "--build-tool-version", "0.3.1", "--img-os", "OS", "--img-kernel", "kernel"]);
        return [.. args];
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

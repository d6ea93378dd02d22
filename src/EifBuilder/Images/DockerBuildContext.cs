using System.Formats.Tar;
using System.Text;
using System.Text.RegularExpressions;

namespace EifBuilder.Images;

/// <summary>
/// A <c>docker build</c> context: the files of a directory, less what its <c>.dockerignore</c> excludes, written as
/// a tar stream the way the Docker CLI sends it (docker/cli <c>cli/command/image/build.go</c>: entries owned by
/// 0:0, <c>Dockerfile</c> and <c>.dockerignore</c> always included even when a pattern excludes them).
/// </summary>
internal sealed class DockerBuildContext
{
    /// <summary>The Dockerfile name nitro-cli fixes for <c>--docker-dir</c>.</summary>
    internal const string Dockerfile = "Dockerfile";

    private const string IgnoreFile = ".dockerignore";

    private readonly string _root;
    private readonly DockerIgnore _ignore;

    private DockerBuildContext(string root, DockerIgnore ignore)
    {
        _root = root;
        _ignore = ignore;
    }

    /// <summary>Reads the directory's <c>.dockerignore</c>, if any.</summary>
    /// <exception cref="EnclaveBuildException"><see cref="BuildError.BuildFailed"/>: no Dockerfile, or a bad pattern.</exception>
    internal static DockerBuildContext Open(string directory, string what)
    {
        if (!Directory.Exists(directory))
            throw new EnclaveBuildException(BuildError.BuildFailed, $"{what}: no such directory");
        if (!File.Exists(Path.Combine(directory, Dockerfile)))
            throw new EnclaveBuildException(BuildError.BuildFailed, $"{what}: there is no {Dockerfile} in the directory (nitro-cli's --docker-dir builds DIR/{Dockerfile})");
        string ignorePath = Path.Combine(directory, IgnoreFile);
        DockerIgnore ignore = File.Exists(ignorePath)
            ? DockerIgnore.Parse(File.ReadAllText(ignorePath), $"{what}: {IgnoreFile}")
            : DockerIgnore.Parse(string.Empty, string.Empty);
        return new DockerBuildContext(directory, ignore);
    }

    /// <summary>The context's paths ('/'-separated, relative) in the order they are sent.</summary>
    internal IEnumerable<string> Paths => Walk(string.Empty).Select(e => e.Relative);

    /// <summary>Writes the context as a tar stream (PAX, the format Go's archive/tar falls back to) to <paramref name="output"/>.</summary>
    /// <param name="output">Receives the tar; left open.</param>
    /// <param name="what">Names the context in messages.</param>
    /// <param name="cancellationToken">Checked between entries.</param>
    /// <exception cref="EnclaveBuildException"><see cref="BuildError.BuildFailed"/>: a file that cannot be read or put in a tar (a socket).</exception>
    /// <remarks>
    /// Entries carry the files' modes, times and owners as System.Formats.Tar reads them from the file system. The
    /// CLI sends 0:0 owners instead, which makes no difference to the image: the daemon creates what COPY and ADD
    /// copy from the context as 0:0 unless --chown says otherwise (Dockerfile reference, COPY).
    /// </remarks>
    internal void WriteTar(Stream output, string what, CancellationToken cancellationToken)
    {
        using var writer = new TarWriter(output, TarEntryFormat.Pax, leaveOpen: true);
        foreach (var (relative, info) in Walk(string.Empty))
        {
            cancellationToken.ThrowIfCancellationRequested();
            try
            {
                writer.WriteEntry(info.FullName, info is DirectoryInfo && info.LinkTarget is null ? relative + "/" : relative);
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                throw new EnclaveBuildException(BuildError.BuildFailed, $"{what}: cannot put '{EifFormat.PrintableText.Of(relative, 200)}' into the build context ({ex.Message}): exclude it in .dockerignore", ex);
            }
        }
    }

    // Depth first, names in ordinal order (as Go's filepath.Walk, which the CLI uses), skipping excluded paths.
    private IEnumerable<(string Relative, FileSystemInfo Info)> Walk(string directory)
    {
        var dir = new DirectoryInfo(directory.Length == 0 ? _root : Path.Combine(_root, directory));
        foreach (FileSystemInfo info in dir.EnumerateFileSystemInfos().OrderBy(i => i.Name, StringComparer.Ordinal))
        {
            string relative = directory.Length == 0 ? info.Name : $"{directory}/{info.Name}";
            bool isDirectory = info is DirectoryInfo && info.LinkTarget is null;
            bool excluded = _ignore.Excludes(relative) && relative is not (Dockerfile or IgnoreFile);
            if (!excluded)
                yield return (relative, info);
            if (!isDirectory || (excluded && !_ignore.MayReinclude(relative)))
                continue;
            foreach (var child in Walk(relative))
                yield return child;
        }
    }
}

/// <summary>
/// <c>.dockerignore</c> rules (Docker docs "Dockerfile reference: .dockerignore file"; moby/patternmatcher and its
/// <c>ignorefile</c> reader): one pattern a line; '#' starts a comment line; surrounding space is trimmed; a
/// pattern is cleaned like a path (so a leading or trailing '/' does not matter); <c>*</c>, <c>?</c> and
/// <c>[…]</c> match within one path segment as Go's filepath.Match does, <c>**</c> matches any number of segments;
/// a pattern matching a directory excludes everything below it; <c>!</c> re-includes; the last matching line wins.
/// </summary>
internal sealed class DockerIgnore
{
    private readonly List<Rule> _rules;

    private DockerIgnore(List<Rule> rules) => _rules = rules;

    /// <summary>Parses the file's text.</summary>
    /// <exception cref="EnclaveBuildException"><see cref="BuildError.BuildFailed"/>: a pattern Docker would reject.</exception>
    internal static DockerIgnore Parse(string text, string what)
    {
        var rules = new List<Rule>();
        string[] lines = text.TrimStart('\uFEFF').Split('\n');
        for (int n = 0; n < lines.Length; n++)
        {
            string line = lines[n];
            if (line.StartsWith('#'))
                continue;
            string pattern = line.Trim();
            if (pattern.Length == 0)
                continue;
            bool exception = pattern[0] == '!';
            if (exception)
                pattern = pattern[1..].Trim();
            if (pattern.Length == 0)
                throw new EnclaveBuildException(BuildError.BuildFailed, $"{what} line {n + 1}: '!' alone is not a pattern");
            pattern = Clean(pattern);
            if (pattern.Length > 1 && pattern[0] == '/')
                pattern = pattern[1..];
            rules.Add(Rule.Compile(pattern, exception, $"{what} line {n + 1}"));
        }

        return new DockerIgnore(rules);
    }

    /// <summary>Whether <paramref name="path"/> ('/'-separated, relative to the context) is left out.</summary>
    internal bool Excludes(string path)
    {
        // patternmatcher MatchesOrParentMatches: a rule applies when it matches the path or any of its parents.
        string[] parts = path.Split('/');
        bool excluded = false;
        foreach (Rule rule in _rules)
        {
            if (rule.Exception != excluded)
                continue; // only an exception can change an excluded path, only an exclusion an included one
            bool match = rule.Matches(path);
            for (int i = 1; !match && i < parts.Length; i++)
                match = rule.Matches(string.Join('/', parts, 0, i));
            if (match)
                excluded = !rule.Exception;
        }

        return excluded;
    }

    /// <summary>
    /// Whether an excluded directory must still be walked because an exception may re-include something inside it:
    /// the CLI descends only when an exception pattern starts with the directory's path (docker/docker
    /// <c>pkg/archive</c> TarWithOptions), so <c>!**/keep</c> does not reach into an excluded directory.
    /// </summary>
    internal bool MayReinclude(string directory) =>
        _rules.Any(r => r.Exception && (r.Pattern + "/").StartsWith(directory + "/", StringComparison.Ordinal));

    // Go's path.Clean on a '/'-separated path: no empty or "." segments, ".." resolved, no trailing '/'.
    private static string Clean(string path)
    {
        bool rooted = path.StartsWith('/');
        var parts = new List<string>();
        foreach (string part in path.Split('/'))
        {
            if (part.Length == 0 || part == ".")
                continue;
            if (part == ".." && parts.Count > 0 && parts[^1] != "..")
                parts.RemoveAt(parts.Count - 1);
            else if (part != ".." || !rooted)
                parts.Add(part);
        }

        string cleaned = (rooted ? "/" : string.Empty) + string.Join('/', parts);
        return cleaned.Length == 0 ? "." : cleaned;
    }

    private sealed class Rule
    {
        private Regex? _regex;
        private MatchKind _kind;

        private Rule(string pattern, bool exception)
        {
            Pattern = pattern;
            Exception = exception;
        }

        private enum MatchKind
        {
            Exact,
            Prefix,
            Suffix,
            Regex,
        }

        internal string Pattern { get; }

        internal bool Exception { get; }

        // Translates the pattern as patternmatcher does: literal text matches exactly; "X/**" is a prefix test,
        // "**/X" (or "**X") a suffix test; anything with another wildcard becomes an anchored regular expression
        // where "*" and "?" stay inside one segment and "**/" spans any number of them.
        internal static Rule Compile(string pattern, bool exception, string what)
        {
            var rule = new Rule(pattern, exception);
            var regex = new StringBuilder("^");
            MatchKind kind = MatchKind.Exact;
            for (int i = 0; i < pattern.Length; i++)
            {
                char c = pattern[i];
                if (c == '*' && i + 1 < pattern.Length && pattern[i + 1] == '*')
                {
                    bool first = i == 0;
                    i++;
                    if (i + 1 < pattern.Length && pattern[i + 1] == '/')
                        i++;
                    if (i + 1 == pattern.Length)
                    {
                        regex.Append(".*");
                        kind = kind == MatchKind.Exact ? MatchKind.Prefix : MatchKind.Regex;
                    }
                    else
                    {
                        regex.Append("(.*/)?");
                        kind = MatchKind.Regex;
                    }

                    if (first)
                        kind = MatchKind.Suffix;
                }
                else if (c == '*')
                {
                    regex.Append("[^/]*");
                    kind = MatchKind.Regex;
                }
                else if (c == '?')
                {
                    regex.Append("[^/]");
                    kind = MatchKind.Regex;
                }
                else if (c == '\\' && i + 1 < pattern.Length)
                {
                    regex.Append(System.Text.RegularExpressions.Regex.Escape(pattern[++i].ToString()));
                    kind = MatchKind.Regex;
                }
                else if (c == '[')
                {
                    // A character class as in filepath.Match: [abc], [a-z], [^a-z]; it must be closed.
                    int end = pattern.IndexOf(']', i + 1 + (i + 1 < pattern.Length && pattern[i + 1] == '^' ? 1 : 0));
                    if (end < 0)
                        throw new EnclaveBuildException(BuildError.BuildFailed, $"{what}: '{EifFormat.PrintableText.Of(pattern, 100)}' has a '[' without its ']' (syntax error in pattern)");
                    string set = pattern[(i + 1)..end];
                    regex.Append('[').Append(set.Replace("\\", "\\\\", StringComparison.Ordinal).Replace("[", "\\[", StringComparison.Ordinal)).Append(']');
                    i = end;
                    kind = MatchKind.Regex;
                }
                else
                {
                    regex.Append(System.Text.RegularExpressions.Regex.Escape(c.ToString()));
                }
            }

            rule._kind = kind;
            if (kind == MatchKind.Regex)
                rule._regex = new Regex(regex.Append('$').ToString(), RegexOptions.CultureInvariant | RegexOptions.Singleline);
            return rule;
        }

        internal bool Matches(string path) => _kind switch
        {
            MatchKind.Exact => path == Pattern,
            MatchKind.Prefix => path.StartsWith(Pattern[..^2], StringComparison.Ordinal),

            // "**/name" also matches "name" at the top; "**name" any path ending in "name".
            MatchKind.Suffix => path.EndsWith(Pattern[2..], StringComparison.Ordinal) || (Pattern.StartsWith("**/", StringComparison.Ordinal) && path == Pattern[3..]),
            _ => _regex!.IsMatch(path),
        };
    }
}

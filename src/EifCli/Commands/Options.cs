using System.CommandLine;
using System.CommandLine.Parsing;

namespace EifCli;

/// <summary>Option factories and validators shared by the commands.</summary>
internal static class Options
{
    /// <summary>A required path to an existing file (checked at parse time, so the error is a usage error).</summary>
    internal static Option<string> ExistingFile(string name, string description, bool required = true)
    {
        var option = new Option<string>(name) { Description = description, Required = required, HelpName = "FILE" };
        option.Validators.Add(result =>
        {
            string? path = result.GetValueOrDefault<string>();
            if (path is null)
                return;
            if (Directory.Exists(path))
                result.AddError($"{name} '{path}' is a directory, not a file.");
            else if (!File.Exists(path))
                result.AddError($"{name} '{path}': no such file.");
        });
        return option;
    }

    /// <summary>An output path whose folder must exist.</summary>
    internal static Option<string> OutputFile(string name, string description, bool required = true)
    {
        var option = new Option<string>(name) { Description = description, Required = required, HelpName = "FILE" };
        option.Validators.Add(result =>
        {
            string? path = result.GetValueOrDefault<string>();
            if (path is null)
                return;
            if (Directory.Exists(path))
            {
                result.AddError($"{name} '{path}' is a directory; give a file name.");
                return;
            }

            string? folder = Path.GetDirectoryName(Path.GetFullPath(path));
            if (folder is not null && !Directory.Exists(folder))
                result.AddError($"{name} '{path}': folder '{folder}' does not exist.");
        });
        return option;
    }

    /// <summary>An expected PCR value: 96 hex digits (SHA-384), case ignored.</summary>
    internal static Option<string> PcrValue(string name, string register)
    {
        var option = new Option<string>(name) { Description = $"Expected {register} (96 hex digits).", HelpName = "HEX" };
        option.Validators.Add(result =>
        {
            string? value = result.GetValueOrDefault<string>();
            if (value is not null && !IsPcrHex(value))
                result.AddError($"{name} must be 96 hex digits (a SHA-384 PCR); got {value.Length} characters '{Shorten(value)}'.");
        });
        return option;
    }

    internal static bool IsPcrHex(string value) =>
        value.Length == 2 * EifFormat.Pcr.Size && value.All(char.IsAsciiHexDigit);

    internal static string Shorten(string value) => value.Length <= 24 ? value : value[..21] + "...";
}

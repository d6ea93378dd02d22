using System.IO.Hashing;
using EifFormat;
using EifFormat.Signing;

namespace Launcher;

/// <summary>
/// An EIF checked for launch (launch.md §5: "refuse before touching the driver"): the strict reader's every rule,
/// the CRC, the architecture, and for a signed image the signature over this PCR0 with a certificate valid now
/// (nitro-cli checks the certificate only and reports a bad one as an opaque E36 → E39 → E11 chain, #243).
/// </summary>
public sealed class EnclaveImage
{
    private EnclaveImage(string path, long length, uint crc, string architecture, EifMeasurements measurements, byte[]? metadataJson, string? signer)
    {
        Path = path;
        Length = length;
        Crc = crc;
        Architecture = architecture;
        Measurements = measurements;
        MetadataJson = metadataJson;
        Signer = signer;
    }

    /// <summary>The file.</summary>
    public string Path { get; }

    /// <summary>Its size in bytes.</summary>
    public long Length { get; }

    /// <summary>Its header's CRC-32 (checked); the copy in enclave memory is checked against it too.</summary>
    public uint Crc { get; }

    /// <summary><c>x86_64</c> or <c>aarch64</c> (header flag bit 0).</summary>
    public string Architecture { get; }

    /// <summary>PCR0, PCR1, PCR2 and, when signed, PCR8, computed from the file.</summary>
    public EifMeasurements Measurements { get; }

    /// <summary>The metadata section's JSON bytes (version 4 EIFs), for describe-enclaves --metadata.</summary>
    public byte[]? MetadataJson { get; }

    /// <summary>The signing certificate's subject, or null for an unsigned image.</summary>
    public string? Signer { get; }

    /// <summary>Reads and checks the EIF at <paramref name="path"/> for a host of <paramref name="hostArchitecture"/>.</summary>
    /// <exception cref="EnclaveException">E19 when it cannot be opened; E35 when it is not a valid EIF for this host; E59 when its signature fails.</exception>
    public static EnclaveImage Check(string path, string hostArchitecture, DateTimeOffset now)
    {
        try
        {
            using EifReader reader = EifReader.Open(path);
            EifDigests digests = reader.ComputeDigests();
            if (digests.ChecksumError is { } crcError)
                throw new EnclaveException(LaunchError.EifParsingError, crcError.WithPath(path).Message, innerException: crcError);
            if (reader.Header.Architecture != hostArchitecture)
            {
                throw new EnclaveException(LaunchError.EifParsingError,
                    $"{path}: the EIF is built for {reader.Header.Architecture} ('flags' 0x{reader.Header.Flags:X4}), this host is {hostArchitecture}");
            }

            string? signer = null;
            if (reader.Signatures is { } entries)
            {
                EifSignatureCheck check = EifSigner.Check(entries[0], digests.Measurements.Pcr0);
                if (check.FailureReason(digests.Measurements.Pcr0) is { } failure)
                    throw new EnclaveException(LaunchError.EifSignatureCheckerError, $"{path}: {failure}");
                if (!check.Certificate.IsValidAt(now))
                {
                    string state = now.UtcDateTime < check.Certificate.NotBefore ? "is not valid yet" : "has expired";
                    throw new EnclaveException(LaunchError.EifSignatureCheckerError,
                        $"{path}: the signing certificate (subject {check.Certificate.Subject}) {state}: valid {check.Certificate.NotBefore:yyyy-MM-ddTHH:mm:ssZ} to {check.Certificate.NotAfter:yyyy-MM-ddTHH:mm:ssZ}, now {now.UtcDateTime:yyyy-MM-ddTHH:mm:ssZ}");
                }

                signer = check.Certificate.Subject;
            }

            return new EnclaveImage(path, reader.Length, digests.StoredCrc, reader.Header.Architecture, digests.Measurements, reader.MetadataBytes?.ToArray(), signer);
        }
        catch (EifFormatException ex)
        {
            throw new EnclaveException(LaunchError.EifParsingError, ex.WithPath(path).Message, innerException: ex);
        }
        catch (Exception ex) when (ex is FileNotFoundException or DirectoryNotFoundException)
        {
            throw new EnclaveException(LaunchError.FileOperationFailure, $"'{path}' Open: no such file", innerException: ex);
        }
        catch (Exception ex) when (ex is UnauthorizedAccessException or IOException and not EnclaveException)
        {
            throw new EnclaveException(LaunchError.FileOperationFailure, $"'{path}' Read: {ex.Message}", innerException: ex);
        }
    }

    /// <summary>
    /// The CRC-32 of an EIF's bytes as the header defines it (everything but the 4 CRC bytes at 0x220), computed over
    /// <paramref name="read"/>, which fills a span from an offset: used on the copy in enclave memory.
    /// </summary>
    internal static uint CrcOf(long length, Action<long, Span<byte>> read)
    {
        var crc = new Crc32();
        byte[] buffer = new byte[1 << 20];
        long position = 0;
        while (position < length)
        {
            int count = (int)Math.Min(buffer.Length, length - position);
            Span<byte> chunk = buffer.AsSpan(0, count);
            read(position, chunk);
            // Skip eif_crc32 (offsets CrcCoveredSize .. EncodedSize of the header).
            long crcStart = EifHeader.CrcCoveredSize, crcEnd = EifHeader.EncodedSize;
            if (position < crcEnd && position + count > crcStart)
            {
                int before = (int)Math.Max(0, crcStart - position);
                int after = (int)Math.Min(count, crcEnd - position);
                crc.Append(chunk[..before]);
                crc.Append(chunk[after..]);
            }
            else
            {
                crc.Append(chunk);
            }

            position += count;
        }

        return crc.GetCurrentHashAsUInt32();
    }
}

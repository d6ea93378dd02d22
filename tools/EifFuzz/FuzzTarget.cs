using EifCli;
using EifFormat;
using EifFormat.Json;

namespace EifFuzz;

/// <summary>How one pass over an input ended.</summary>
internal enum PassResult
{
    /// <summary>Opened, described and read; the CRC matched.</summary>
    Parsed,

    /// <summary>Opened, described and read; the CRC did not match (describe-eif prints <c>"CheckCRC": false</c>).</summary>
    ParsedCrcMismatch,

    /// <summary>An <see cref="EifFormatException"/>: the expected way to reject a bad file.</summary>
    FormatError,

    /// <summary>Any other exception: a finding.</summary>
    Unexpected,
}

/// <summary>The outcome of one pass and what it allocated on the calling thread.</summary>
internal readonly record struct PassOutcome(PassResult Result, EifFormatError Error, Exception? Exception, long AllocatedBytes, bool CheckedSignature, bool Decompressed = false);

/// <summary>A check of the fuzzer's own that the code under test broke (not an exception the library threw).</summary>
internal sealed class InvariantException(string message) : Exception(message);

/// <summary>The code under test: the describe-eif path and the ramdisk reader (eif ls, extract, diff), run in memory over one input.</summary>
internal static class FuzzTarget
{
    /// <summary>The two layouts every input is opened with.</summary>
    internal static readonly (string Name, EifReaderOptions Options)[] Passes =
    [
        ("strict", EifReaderOptions.Strict),
        ("lenient", new EifReaderOptions { AllowNonContiguous = true }),
    ];

    // Allowed allocation for one pass: a fixed allowance for the reader's own objects, exceptions and the JSON,
    // plus a multiple of the input for the parts that legitimately grow with it (metadata JSON, signature CBOR,
    // the certificate). A size field must never buy more than that.
    // Checking a signature verifies one ECDSA signature with BouncyCastle, which allocates about 1.1 MB whatever the
    // input (point arithmetic on fresh BigIntegers); a pass that reached that check gets a fixed allowance for it.
    // A gzip or zstd ramdisk costs its decompressor's state whatever the input: zlib's window and tables (~300 KiB)
    // or a zstd window of up to 128 MiB (the decoder's default windowLog limit of 27, zstd_decompress.c) that a frame
    // header asks for. A pass that read a compressed ramdisk gets a fixed allowance for that.
    internal static long AllocationLimit(int inputLength, bool checkedSignature, bool decompressed = false) =>
        64 * 1024 + 32L * inputLength + (checkedSignature ? SignatureCheckAllowance : 0) + (decompressed ? DecompressionAllowance : 0);

    internal const long SignatureCheckAllowance = 2L << 20;

    internal const long DecompressionAllowance = 130L << 20;

    /// <summary>Ramdisks the reader was run over, entries it returned, and ramdisks it rejected (for the summary: proof the mutations reach it).</summary>
    internal static long RamdisksRead, RamdiskEntries, RamdisksRejected;

    /// <summary>Runs one pass and measures its allocations; never throws.</summary>
    /// <remarks>
    /// The count is exact for inputs below SectionDigester's 8 MiB threshold, which the reader hashes on this
    /// thread; the fuzzer's own inputs stay far below it. Above it, PCR0 is hashed on a worker whose allocations
    /// this does not see.
    /// </remarks>
    /// <param name="input">The input is <c>input[..length]</c>; it is not modified.</param>
    /// <param name="scratch">A buffer for draining section streams, reused so it does not count as an allocation.</param>
    internal static PassOutcome Measure(byte[] input, int length, EifReaderOptions options, byte[] scratch)
    {
        long before = GC.GetAllocatedBytesForCurrentThread();
        bool checkedSignature = false;
        bool decompressed = false;
        PassResult result;
        EifFormatError error = default;
        Exception? exception = null;
        try
        {
            result = Run(input, length, options, scratch, ref checkedSignature, ref decompressed) ? PassResult.Parsed : PassResult.ParsedCrcMismatch;
        }
        catch (EifFormatException ex)
        {
            result = PassResult.FormatError;
            error = ex.Error;
        }
        catch (Exception ex)
        {
            // Deliberately broad: every exception type but the library's own is what the fuzzer looks for.
            result = PassResult.Unexpected;
            exception = ex;
        }

        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        return new PassOutcome(result, error, exception, allocated, checkedSignature, decompressed);
    }

    // Opens the input, describes it as `eif describe-eif` does, drains every section stream and renders the JSON.
    // Returns whether the CRC matched.
    private static bool Run(byte[] input, int length, EifReaderOptions options, byte[] scratch, ref bool checkedSignature, ref bool decompressed)
    {
        using var stream = new MemoryStream(input, 0, length, writable: false);
        using var reader = new EifReader(stream, leaveOpen: false, options);
        checkedSignature = reader.IsSigned;
        (JObject json, EifDigests digests, _) = DescribeEifCommand.Describe(reader);
        for (int i = 0; i < reader.Sections.Count; i++)
        {
            using Stream section = reader.OpenSection(i);
            long total = 0;
            int read;
            while ((read = section.Read(scratch)) > 0)
                total += read;

            // The reader validated every section against the file, so each stream must give exactly its size.
            if (total != reader.Sections[i].Size)
                throw new InvariantException($"section {i}'s stream gave {total} bytes, but the section's size is {reader.Sections[i].Size}.");
        }

        // Every ramdisk as eif ls --long reads it: each entry's header, name, link target and data (hashed). A bad
        // archive must be the builder's InvalidRamdisk error and nothing else.
        foreach (EifBuilder.Inspect.RamdiskSection ramdisk in EifBuilder.Inspect.EifRamdisks.List(reader))
        {
            decompressed |= EifBuilder.Inspect.EifRamdisks.CompressionOf(reader, ramdisk) != EifBuilder.Cpio.RamdiskCompression.None;
            RamdisksRead++;
            try
            {
                foreach (EifBuilder.Inspect.RamdiskFile file in EifBuilder.Inspect.EifRamdisks.Files(reader, ramdisk, hash: true))
                {
                    RamdiskEntries++;
                    if (file.Name.Length >= EifBuilder.Cpio.CpioReader.MaxNameSize)
                        throw new InvariantException($"ramdisk {ramdisk.Number} gave a name of {file.Name.Length} characters, past the reader's limit.");
                }
            }
            catch (EifBuilder.EnclaveBuildException ex) when (ex.Error == EifBuilder.BuildError.InvalidRamdisk)
            {
                // The expected way to reject a bad archive.
                RamdisksRejected++;
            }
        }

        string text = json.ToPrettyString();
        if (text.Length == 0)
            throw new InvariantException("Describe rendered empty JSON for a file it accepted.");
        return digests.CrcMatches;
    }
}

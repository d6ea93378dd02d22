using EifBuilder.Images;
using EifFormat;
using EifTests.Shared;

namespace EifBuilder.Tests;

/// <summary>
/// Issue 4: the same image gives the same PCRs from every source — the Docker daemon, a docker-save archive, OCI
/// layouts (gzip and zstd layers), an OCI archive and the registry — and two builds with SOURCE_DATE_EPOCH give
/// byte-identical EIFs. Uses the real components tools/test-images prepares.
/// </summary>
public class SourceParityTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("eif-parity").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Theory]
    [InlineData("layers")]
    [InlineData("hello")]
    public void Build_EverySource_GivesTheSamePcrs(string image)
    {
        string forms = TestImages.Require(image);
        var references = new List<string>
        {
            $"docker-archive:{forms}/docker-archive.tar",
            $"docker-archive:{forms}/docker-archive-gzip.tar",
            $"oci:{forms}/oci:latest",
            $"oci:{forms}/oci-zstd:latest",
            $"oci-archive:{forms}/oci-archive.tar:latest",
        };
        if (File.Exists("/var/run/docker.sock"))
            references.Add($"docker-daemon:eif-test/{image}:latest");
        if (TestImages.RegistryAnswers())
            references.Add($"docker://127.0.0.1:5000/eif-test/{image}:latest");
        Assert.True(references.Count == 7, "the daemon and the registry must be up (tools/services start); CI starts them");

        var measurements = references.Select((r, i) => Build(r, $"{i}.eif", epoch: null).Measurements).ToList();

        for (int i = 1; i < references.Count; i++)
        {
            Assert.True(Pcr.ToHex(measurements[0].Pcr2) == Pcr.ToHex(measurements[i].Pcr2), $"PCR2 of {references[i]} differs from {references[0]}'s");
            Assert.Equal(measurements[0].Pcr0, measurements[i].Pcr0);
            Assert.Equal(measurements[0].Pcr1, measurements[i].Pcr1);
        }
    }

    [Fact]
    public void Build_TwiceWithSourceDateEpoch_IsByteIdentical()
    {
        string forms = TestImages.Require("layers");
        Build($"docker-archive:{forms}/docker-archive.tar", "a.eif", epoch: 1_700_000_000);
        Build($"docker-archive:{forms}/docker-archive.tar", "b.eif", epoch: 1_700_000_000);
        Assert.Equal(File.ReadAllBytes(Path.Combine(_dir, "a.eif")), File.ReadAllBytes(Path.Combine(_dir, "b.eif")));
    }

    private EifWriteResult Build(string reference, string output, long? epoch)
    {
        string blobs = Directory.CreateDirectory(Path.Combine(_dir, "blobs")).FullName;
        File.WriteAllBytes(Path.Combine(blobs, "bzImage"), new byte[2048]);
        File.WriteAllText(Path.Combine(blobs, "cmdline"), "console=ttyS0");
        File.WriteAllBytes(Path.Combine(blobs, "init"), new byte[1024]);
        using var source = ImageSources.Open(reference, new ImageSources.Options());
        return EnclaveBuilder.Build(new EnclaveBuildRequest
        {
            Source = source,
            Architecture = "x86_64",
            Blobs = EnclaveBlobs.Locate("x86_64", blobs, null, null, null, null),
            OutputPath = Path.Combine(_dir, output),
            BuildTime = epoch is null ? "2024-01-01T00:00:00Z" : EifMetadata.DefaultBuildTime(epoch.Value.ToString(System.Globalization.CultureInfo.InvariantCulture), DateTimeOffset.UtcNow),
            SourceDateEpoch = epoch,
        }).Written;
    }
}

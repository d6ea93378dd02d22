using System.Formats.Tar;
using System.IO.Compression;
using System.Security.Cryptography;
using System.Text;
using EifFormat.Json;

namespace EifTests.Shared;

/// <summary>
/// Images written by the tests themselves, layer by layer with System.Formats.Tar (an implementation independent
/// of the builder's reader), in the formats the builder reads: docker-save archives and OCI layouts (directory or
/// tar), with uncompressed, gzip or zstd layers. Lets every flattening rule and every bad input be tested exactly,
/// without a Docker daemon.
/// </summary>
public sealed class CraftedImage
{
    public enum Compression
    {
        None,
        Gzip,
        Zstd,
    }

    public List<List<TarEntry>> Layers { get; } = [];

    public string Architecture { get; init; } = "amd64";

    public string[]? Entrypoint { get; init; }

    public string[]? Cmd { get; init; } = ["/bin/app"];

    public string[] Env { get; init; } = ["PATH=/usr/bin:/bin"];

    public string WorkingDir { get; init; } = string.Empty;

    public string User { get; init; } = string.Empty;

    /// <summary>Replaces diff_ids in the config (to test a mismatch).</summary>
    public Func<int, string, string> DiffIdOverride { get; init; } = (_, d) => d;

    public CraftedImage Layer(params TarEntry[] entries)
    {
        Layers.Add([.. entries]);
        return this;
    }

    public static TarEntry File(string name, string content, int mode = 0x1A4, int uid = 0, int gid = 0, long mtime = 1_600_000_000)
    {
        var e = new PaxTarEntry(TarEntryType.RegularFile, name) { DataStream = new MemoryStream(Encoding.UTF8.GetBytes(content)) };
        return Meta(e, mode, uid, gid, mtime);
    }

    public static TarEntry Dir(string name, int mode = 0x1ED, int uid = 0, int gid = 0, long mtime = 1_600_000_000) =>
        Meta(new PaxTarEntry(TarEntryType.Directory, name), mode, uid, gid, mtime);

    public static TarEntry Symlink(string name, string target) =>
        Meta(new PaxTarEntry(TarEntryType.SymbolicLink, name) { LinkName = target }, 0x1FF, 0, 0, 1_600_000_000);

    public static TarEntry HardLink(string name, string target) =>
        Meta(new PaxTarEntry(TarEntryType.HardLink, name) { LinkName = target }, 0x1A4, 0, 0, 1_600_000_000);

    public static TarEntry Fifo(string name) => Meta(new PaxTarEntry(TarEntryType.Fifo, name), 0x1A4, 0, 0, 1_600_000_000);

    public static TarEntry CharDevice(string name, int major, int minor) =>
        Meta(new PaxTarEntry(TarEntryType.CharacterDevice, name) { DeviceMajor = major, DeviceMinor = minor }, 0x1B6, 0, 0, 1_600_000_000);

    public static TarEntry Whiteout(string path)
    {
        int slash = path.LastIndexOf('/');
        return File(slash < 0 ? ".wh." + path : path[..(slash + 1)] + ".wh." + path[(slash + 1)..], string.Empty);
    }

    public static TarEntry Opaque(string directory) => File(directory.TrimEnd('/') + "/.wh..wh..opq", string.Empty);

    public byte[] LayerTar(int index)
    {
        var stream = new MemoryStream();
        using (var writer = new TarWriter(stream, TarEntryFormat.Pax, leaveOpen: true))
        {
            foreach (var entry in Layers[index])
            {
                entry.DataStream?.Seek(0, SeekOrigin.Begin);
                writer.WriteEntry(entry);
            }
        }

        return stream.ToArray();
    }

    public byte[] Config(IReadOnlyList<string> diffIds)
    {
        JValue Strings(string[]? values) => values is null ? JNull.Instance : new JArray(values.Select(v => (JValue)new JString(v)));
        return JObject.Of(
            ("architecture", new JString(Architecture)),
            ("config", JObject.Of(
                ("Cmd", Strings(Cmd)),
                ("Entrypoint", Strings(Entrypoint)),
                ("Env", Strings(Env)),
                ("User", new JString(User)),
                ("WorkingDir", new JString(WorkingDir)))),
            ("created", new JString("2024-01-01T00:00:00Z")),
            ("os", new JString("linux")),
            ("rootfs", JObject.Of(("diff_ids", new JArray(diffIds.Select((d, i) => (JValue)new JString(DiffIdOverride(i, d))))), ("type", new JString("layers"))))).ToCompactUtf8();
    }

    /// <summary>A `docker save` archive in Docker's legacy layout (ID/layer.tar, HEX.json, manifest.json).</summary>
    /// <remarks>
    /// With <paramref name="linkDuplicates"/>, a layer equal to an earlier one is stored as a symlink to that layer's
    /// layer.tar, as docker save (20.10) writes it.
    /// </remarks>
    public void WriteDockerArchive(string path, string repoTag, bool linkDuplicates = false)
    {
        var tars = Enumerable.Range(0, Layers.Count).Select(LayerTar).ToList();
        byte[] config = Config(tars.Select(t => "sha256:" + Hex(t)).ToList());
        string configName = Hex(config) + ".json";
        var layerNames = tars.Select((t, i) => $"{Hex(Encoding.ASCII.GetBytes("layer" + i))}/layer.tar").ToList();
        byte[] manifest = new JArray([JObject.Of(
            ("Config", new JString(configName)),
            ("RepoTags", new JArray([new JString(repoTag)])),
            ("Layers", new JArray(layerNames.Select(n => (JValue)new JString(n)))))]).ToCompactUtf8();
        using var file = System.IO.File.Create(path);
        using var writer = new TarWriter(file, TarEntryFormat.Pax);
        Add(writer, configName, config);
        for (int i = 0; i < tars.Count; i++)
        {
            int earlier = tars.FindIndex(t => t.AsSpan().SequenceEqual(tars[i]));
            if (linkDuplicates && earlier < i)
                writer.WriteEntry(new PaxTarEntry(TarEntryType.SymbolicLink, layerNames[i]) { LinkName = "../" + layerNames[earlier] });
            else
                Add(writer, layerNames[i], tars[i]);
        }

        Add(writer, "manifest.json", manifest);
    }

    /// <summary>An OCI image layout directory; <paramref name="corrupt"/> edits a layer blob after its digest was taken.</summary>
    public void WriteOciLayout(string directory, string tag, Compression compression, Action<int, byte[]>? corrupt = null, string? layerMediaType = null)
    {
        foreach (var (name, bytes) in OciFiles(tag, compression, corrupt, layerMediaType))
        {
            string path = Path.Combine(directory, name);
            Directory.CreateDirectory(Path.GetDirectoryName(path)!);
            System.IO.File.WriteAllBytes(path, bytes);
        }
    }

    /// <summary>A tar of an OCI layout.</summary>
    public void WriteOciArchive(string path, string tag, Compression compression)
    {
        using var file = System.IO.File.Create(path);
        using var writer = new TarWriter(file, TarEntryFormat.Pax);
        foreach (var (name, bytes) in OciFiles(tag, compression, null, null))
            Add(writer, name, bytes);
    }

    public static string Hex(byte[] bytes) => Convert.ToHexStringLower(SHA256.HashData(bytes));

    private List<(string Name, byte[] Bytes)> OciFiles(string tag, Compression compression, Action<int, byte[]>? corrupt, string? layerMediaType)
    {
        var files = new List<(string, byte[])>();
        var tars = Enumerable.Range(0, Layers.Count).Select(LayerTar).ToList();
        byte[] config = Config(tars.Select(t => "sha256:" + Hex(t)).ToList());
        files.Add(($"blobs/sha256/{Hex(config)}", config));
        var layerDescriptors = new List<JValue>();
        for (int i = 0; i < tars.Count; i++)
        {
            byte[] blob = Compress(tars[i], compression);
            string mediaType = layerMediaType ?? compression switch
            {
                Compression.Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
                Compression.Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
                _ => "application/vnd.oci.image.layer.v1.tar",
            };
            layerDescriptors.Add(Descriptor(mediaType, blob));
            byte[] stored = (byte[])blob.Clone();
            corrupt?.Invoke(i, stored);
            files.Add(($"blobs/sha256/{Hex(blob)}", stored));
        }

        byte[] manifest = JObject.Of(
            ("schemaVersion", JNumber.From(2L)),
            ("mediaType", new JString("application/vnd.oci.image.manifest.v1+json")),
            ("config", Descriptor("application/vnd.oci.image.config.v1+json", config)),
            ("layers", new JArray(layerDescriptors))).ToCompactUtf8();
        files.Add(($"blobs/sha256/{Hex(manifest)}", manifest));
        var manifestDescriptor = JObject.Of(
            ("mediaType", new JString("application/vnd.oci.image.manifest.v1+json")),
            ("digest", new JString("sha256:" + Hex(manifest))),
            ("size", JNumber.From((long)manifest.Length)),
            ("annotations", JObject.Of(("org.opencontainers.image.ref.name", new JString(tag)))));
        files.Add(("index.json", JObject.Of(("schemaVersion", JNumber.From(2L)), ("manifests", new JArray([manifestDescriptor]))).ToCompactUtf8()));
        files.Add(("oci-layout", "{\"imageLayoutVersion\":\"1.0.0\"}"u8.ToArray()));
        return files;
    }

    private static JObject Descriptor(string mediaType, byte[] blob) => JObject.Of(
        ("mediaType", new JString(mediaType)),
        ("digest", new JString("sha256:" + Hex(blob))),
        ("size", JNumber.From((long)blob.Length)));

    private static byte[] Compress(byte[] tar, Compression compression)
    {
        if (compression == Compression.None)
            return tar;
        var output = new MemoryStream();
        if (compression == Compression.Gzip)
        {
            using var gzip = new GZipStream(output, CompressionLevel.Fastest, leaveOpen: true);
            gzip.Write(tar);
        }
        else
        {
            using var zstd = new SharpCompress.Compressors.ZStandard.CompressionStream(output, 3, 1 << 16, true);
            zstd.Write(tar);
        }

        return output.ToArray();
    }

    private static TarEntry Meta(TarEntry entry, int mode, int uid, int gid, long mtime)
    {
        entry.Mode = (UnixFileMode)mode;
        entry.Uid = uid;
        entry.Gid = gid;
        entry.ModificationTime = DateTimeOffset.FromUnixTimeSeconds(mtime);
        return entry;
    }

    private static void Add(TarWriter writer, string name, byte[] bytes) =>
        writer.WriteEntry(new PaxTarEntry(TarEntryType.RegularFile, name) { DataStream = new MemoryStream(bytes), Mode = (UnixFileMode)0x1A4 });
}

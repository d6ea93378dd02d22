using EifFormat.Json;

namespace EifBuilder.Images;

/// <summary>
/// Reading OCI descriptors, image indexes and manifests (OCI image-spec descriptor.md, image-index.md,
/// manifest.md), shared by the layout and registry sources.
/// </summary>
internal static class OciDescriptors
{
    /// <summary>A descriptor's digest, validated.</summary>
    internal static Digest DigestOf(JObject descriptor, string description, string what) =>
        Digest.Parse((descriptor["digest"] as JString)?.Value ?? string.Empty, $"{description}: {what}");

    /// <summary>A descriptor's size, when it has one.</summary>
    internal static long? SizeOf(JObject descriptor) =>
        descriptor["size"] is JNumber n && long.TryParse(n.Text, out long size) ? size : null;

    /// <summary>The entry of an image index (or Docker manifest list) for linux/<paramref name="architecture"/>.</summary>
    /// <exception cref="EnclaveBuildException"><see cref="BuildError.UnsupportedPlatform"/>, listing the platforms the index has.</exception>
    internal static JObject ChoosePlatform(JObject index, string architecture, string description)
    {
        var entries = (index["manifests"] as JArray)?.Items.OfType<JObject>().ToList() ?? [];
        static string? Field(JObject entry, string key) => ((entry["platform"] as JObject)?[key] as JString)?.Value;
        return entries.FirstOrDefault(m => Field(m, "os") == "linux" && Field(m, "architecture") == architecture)
            ?? throw new EnclaveBuildException(BuildError.UnsupportedPlatform,
                $"{description}: the image index has no linux/{architecture} image (it has: {string.Join(", ", entries.Select(m => $"{Field(m, "os") ?? "?"}/{Field(m, "architecture") ?? "?"}"))})");
    }

    /// <summary>A manifest's layer descriptors with their media types checked.</summary>
    /// <exception cref="EnclaveBuildException"><see cref="BuildError.UnsupportedMediaType"/> or <see cref="BuildError.InvalidImage"/>.</exception>
    internal static List<(JObject Descriptor, string MediaType, Digest Digest)> Layers(JObject manifest, string description)
    {
        var layers = new List<(JObject, string, Digest)>();
        var items = (manifest["layers"] as JArray)?.Items ?? [];
        for (int i = 0; i < items.Count; i++)
        {
            var layer = items[i] as JObject ?? throw new EnclaveBuildException(BuildError.InvalidImage, $"{description}: layers[{i}] is not a descriptor");
            string mediaType = (layer["mediaType"] as JString)?.Value ?? string.Empty;
            if (!MediaTypes.IsLayer(mediaType))
                throw new EnclaveBuildException(BuildError.UnsupportedMediaType, $"{description}: layer {i} has media type '{EifFormat.PrintableText.Of(mediaType, 100)}', not a tar layer");
            layers.Add((layer, mediaType, DigestOf(layer, description, $"layer {i}")));
        }

        return layers;
    }
}

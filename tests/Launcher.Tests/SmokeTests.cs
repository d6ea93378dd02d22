namespace Launcher.Tests;

[Collection(HugePagesCollection.Name)]
public sealed class SmokeTests
{
    [Fact]
    public void Launch_OnSimulator_DonatesTheEifAtTheLoadOffset()
    {
        HugePages.Require(64);
        var sim = TestEnvironment.Simulator();
        string eif = TestEnvironment.Golden("synth_sha384_named.eif");
        var launcher = new EnclaveLauncher(sim.Platform) { Log = line => Console.WriteLine(line) };
        using RunningEnclave enclave = launcher.Launch(new LaunchRequest { EifPath = eif, MemoryMiB = 64, CpuCount = 2, DebugMode = true, HeartbeatTimeout = TimeSpan.FromSeconds(10) });
        byte[] expected = File.ReadAllBytes(eif);
        var vm = sim.Device.OpenEnclaves.Single();
        byte[] donated = new byte[expected.Length];
        vm.ReadDonated(NitroEnclaves.EifLoadOffset, donated);
        Assert.Equal(expected, donated);
        Assert.Equal(16UL, enclave.Description.EnclaveCid);
        Assert.Equal([2, 3], enclave.Description.CpuIds);
        Thread.Sleep(300);
        Assert.Contains("heartbeat 0xB7", vm.ConsoleText);
    }
}

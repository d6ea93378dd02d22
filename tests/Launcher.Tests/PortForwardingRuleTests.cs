using System.Net;
using System.Net.Sockets;
using Launcher.Local;

namespace Launcher.Tests;

/// <summary>The --forward and --publish rules: what they accept, and a one-line E03 naming the rule for what they do not.</summary>
public sealed class PortForwardingRuleTests
{
    [Fact]
    public void Forward_TcpWithAddress_IsAnIpEndPoint()
    {
        ForwardRule rule = ForwardRule.Parse("8000=tcp:127.0.0.1:8080");
        Assert.Equal(8000u, rule.VsockPort);
        Assert.Equal(new IPEndPoint(IPAddress.Loopback, 8080), rule.Target);
        Assert.Equal("tcp:127.0.0.1:8080", rule.TargetText);
        Assert.Equal("8000=tcp:127.0.0.1:8080", rule.Text);
    }

    [Fact]
    public void Forward_TcpWithNameOrIpv6_KeepsTheNameForConnectTime()
    {
        Assert.Equal(new DnsEndPoint("kms.eu-west-1.amazonaws.com", 443), ForwardRule.Parse("8000=tcp:kms.eu-west-1.amazonaws.com:443").Target);
        Assert.Equal(new IPEndPoint(IPAddress.IPv6Loopback, 9000), ForwardRule.Parse("1=tcp:[::1]:9000").Target);
    }

    [Fact]
    public void Forward_Unix_IsAUnixEndPoint()
    {
        ForwardRule rule = ForwardRule.Parse("5005=unix:/run/app/api.sock");
        UnixDomainSocketEndPoint target = Assert.IsType<UnixDomainSocketEndPoint>(rule.Target);
        Assert.Equal("/run/app/api.sock", target.ToString());
    }

    [Theory]
    [InlineData("8000", "expected VSOCKPORT=tcp:HOST:PORT or VSOCKPORT=unix:PATH")]
    [InlineData("x=tcp:127.0.0.1:1", "the vsock port 'x' is not a number from 0 to 4294967294")]
    [InlineData("4294967295=tcp:127.0.0.1:1", "the vsock port '4294967295' is not a number")]
    [InlineData("-1=tcp:127.0.0.1:1", "the vsock port '-1' is not a number")]
    [InlineData("80=udp:127.0.0.1:53", "'udp:127.0.0.1:53' is neither tcp:HOST:PORT nor unix:PATH")]
    [InlineData("80=tcp:127.0.0.1", "'127.0.0.1' is not HOST:PORT")]
    [InlineData("80=tcp::8080", "tcp: needs a host")]
    [InlineData("80=tcp:127.0.0.1:0", "the TCP port '0' is not a number from 1 to 65535")]
    [InlineData("80=tcp:127.0.0.1:65536", "the TCP port '65536' is not a number from 1 to 65535")]
    [InlineData("80=tcp:::1:80", "write an IPv6 address in brackets ([::1])")]
    [InlineData("80=tcp:[::1]80", "is not [IPV6]:PORT")]
    [InlineData("80=unix:", "unix: needs a socket path")]
    public void Forward_Bad_IsE03NamingTheRule(string text, string why)
    {
        var ex = Assert.Throws<EnclaveException>(() => ForwardRule.Parse(text));
        Assert.Equal(LaunchError.InvalidArgument, ex.Error);
        Assert.Contains($"'{text}'", ex.Message);
        Assert.Contains(why, ex.Message);
    }

    [Fact]
    public void Forward_UnixPathLongerThanSunPath_IsRefused()
    {
        var ex = Assert.Throws<EnclaveException>(() => ForwardRule.Parse("1=unix:/" + new string('a', 107)));
        Assert.Contains("the socket path is 108 bytes; Unix sockets allow 107", ex.Message);
    }

    [Theory]
    [InlineData("8080:80", "127.0.0.1", 8080, 80u)]
    [InlineData("0.0.0.0:8443:443", "0.0.0.0", 8443, 443u)]
    [InlineData("[::1]:9000:5000", "::1", 9000, 5000u)]
    [InlineData("0:5000", "127.0.0.1", 0, 5000u)]
    public void Publish_Good_ParsesLikeDockerRunP(string text, string address, int hostPort, uint vsockPort)
    {
        PublishRule rule = PublishRule.Parse(text);
        Assert.Equal(IPAddress.Parse(address), rule.Address);
        Assert.Equal(hostPort, rule.HostPort);
        Assert.Equal(vsockPort, rule.VsockPort);
    }

    [Theory]
    [InlineData("8080", "expected [HOST:]HOSTPORT:VSOCKPORT")]
    [InlineData("localhost:8080:80", "'localhost' is not an IP address to listen on")]
    [InlineData("70000:80", "the TCP port '70000' is not a number from 0 to 65535")]
    [InlineData("8080:x", "the vsock port 'x' is not a number")]
    [InlineData("::1:8080:80", "write an IPv6 address in brackets")]
    public void Publish_Bad_IsE03NamingTheRule(string text, string why)
    {
        var ex = Assert.Throws<EnclaveException>(() => PublishRule.Parse(text));
        Assert.Equal(LaunchError.InvalidArgument, ex.Error);
        Assert.Contains($"'{text}'", ex.Message);
        Assert.Contains(why, ex.Message);
    }

    [Fact]
    public void Start_PortInUse_IsE11NamingTheRuleAndBindsNothing()
    {
        using var taken = new TcpListener(IPAddress.Loopback, 0);
        taken.Start();
        int port = ((IPEndPoint)taken.LocalEndpoint).Port;
        var free = PublishRule.Parse("0:1");
        var busy = PublishRule.Parse($"{port}:2");
        using var forwarding = new PortForwarding(new NoVsock(), 16, [], [free, busy], null);

        var ex = Assert.Throws<EnclaveException>(forwarding.Start);

        Assert.Equal(LaunchError.SocketError, ex.Error);
        Assert.Contains($"--publish '{port}:2': cannot listen on 127.0.0.1:{port}", ex.Message);
        Assert.Contains("AddressAlreadyInUse", ex.Message);
    }

    [Fact]
    public void Start_SameVsockPortForwardedTwice_IsRefused()
    {
        using var forwarding = new PortForwarding(new NoVsock(), 16, [ForwardRule.Parse("80=tcp:127.0.0.1:1"), ForwardRule.Parse("80=unix:/x")], [], null);
        var ex = Assert.Throws<EnclaveException>(forwarding.Start);
        Assert.Contains("vsock port 80 is forwarded twice", ex.Message);
    }

    // A vsock transport nothing can reach (these tests only bind).
    private sealed class NoVsock : Launcher.Vsock.IVsockTransport
    {
        public Launcher.Vsock.IVsockListener Listen(Launcher.Vsock.VsockAddress address, int backlog = 16) => new NoListener(address);

        public Launcher.Vsock.VsockConnection Connect(Launcher.Vsock.VsockAddress address, TimeSpan timeout) =>
            throw new EnclaveException(LaunchError.SocketError, "unreachable");

        private sealed class NoListener(Launcher.Vsock.VsockAddress address) : Launcher.Vsock.IVsockListener
        {
            public Launcher.Vsock.VsockAddress LocalAddress { get; } = address;

            public Launcher.Vsock.VsockConnection? Accept(TimeSpan timeout)
            {
                Thread.Sleep(timeout);
                return null;
            }

            public void Dispose()
            {
            }
        }
    }
}

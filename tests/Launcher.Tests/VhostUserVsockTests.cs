using System.Buffers.Binary;
using System.Diagnostics;
using System.Runtime.ExceptionServices;
using System.Security.Cryptography;
using System.Text;
using Launcher.Local;
using Launcher.Vsock;

namespace Launcher.Tests;

/// <summary>
/// <see cref="VhostUserVsockBackend"/> (with <see cref="VsockDevice"/>, <see cref="VirtQueue"/> and
/// <see cref="GuestMemory"/>) driven by <see cref="FakeVhostUserFrontEnd"/>, which plays QEMU (control plane, guest RAM
/// as a memfd, eventfds) and a guest's virtio-vsock driver (rings, packets, credit). No QEMU, no KVM: every test runs on
/// any Linux host. Waits are bounded and fail with what they waited for; no test sleeps to prove something.
/// </summary>
public sealed class VhostUserVsockTests
{
    private const uint HostCid = 2;            // VMADDR_CID_HOST (linux/vm_sockets.h)
    private const uint ParentCid = 3;          // VMADDR_CID_PARENT: where nitro-cli listens (spec/launch.md §2.5)
    private const uint HeartbeatPort = 9000;   // ENCLAVE_READY_VSOCK_PORT (nitro-cli eif_loader)
    private const byte HeartbeatByte = 0xB7;   // HEART_BEAT (nitro-cli eif_loader; bootstrap init.c)
    private const int KiB = 1024;
    private const int MiB = 1024 * KiB;

    // errno.h (asm-generic/errno.h)
    private const int ECONNREFUSED = 111;

    /// <summary>The limit for any single wait: far above what a healthy run needs, so only a hang reaches it.</summary>
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(10);

    private static int s_nextCid = 100;

    // --- Control plane ------------------------------------------------------------------------------------------

    [Fact]
    public void ControlPlane_QemuHandshake_OffersWhatTheRingsSupportAndEnablesRingsOnlyWhenAsked()
    {
        using Rig rig = Rig.Connect();
        rig.FrontEnd.Negotiate();
        ulong features = rig.FrontEnd.OfferedFeatures;
        Assert.Equal(FakeVhostUserFrontEnd.VirtioFVersion1, features & FakeVhostUserFrontEnd.VirtioFVersion1);
        Assert.Equal(FakeVhostUserFrontEnd.ProtocolFeaturesFeature, features & FakeVhostUserFrontEnd.ProtocolFeaturesFeature);
        // VirtQueue reads neither indirect descriptors nor event-index notifications, so neither may be offered.
        Assert.Equal(0UL, features & (FakeVhostUserFrontEnd.RingFIndirectDesc | FakeVhostUserFrontEnd.RingFEventIdx));
        // QEMU's vhost-user-vsock reads the guest CID through GET_CONFIG, which needs the CONFIG protocol feature.
        Assert.Equal(FakeVhostUserFrontEnd.ProtocolFConfig, rig.FrontEnd.OfferedProtocolFeatures & FakeVhostUserFrontEnd.ProtocolFConfig);
        Assert.True(rig.Backend.FrontEndConnected);

        rig.FrontEnd.StartDevice(enable: false);
        // vhost-user.rst "Ring states": with VHOST_USER_F_PROTOCOL_FEATURES negotiated, a ring starts disabled.
        Assert.False(rig.Backend.DataPathReady);
        rig.FrontEnd.EnableRings();
        rig.FrontEnd.Sync();
        Assert.True(rig.Backend.DataPathReady);
    }

    [Fact]
    public void ControlPlane_GetConfig_ReturnsTheGuestCidAs8LittleEndianBytes()
    {
        using Rig rig = Rig.Connect(cid: 0x1234_5678);
        rig.FrontEnd.Negotiate();
        // VhostUserConfig { u32 offset, size, flags } echoed, then struct virtio_vsock_config { le64 guest_cid; }
        // (virtio 1.2 §5.10.4).
        Assert.Equal("00000000" + "08000000" + "00000000" + "7856341200000000", Convert.ToHexString(rig.FrontEnd.GetConfigReply(0, 8)));
        Assert.Equal("04000000" + "04000000" + "00000000" + "00000000", Convert.ToHexString(rig.FrontEnd.GetConfigReply(4, 4)));
        Assert.Equal("01000000" + "02000000" + "00000000" + "5634", Convert.ToHexString(rig.FrontEnd.GetConfigReply(1, 2)));
    }

    [Fact]
    public void ControlPlane_GetConfigAtAnOffsetNear4GiB_ReadsZerosAndKeepsServing()
    {
        using Rig rig = Rig.Connect();
        rig.FrontEnd.Negotiate();
        // offset + index must not wrap (or overflow) into the 8-byte config space: bytes past it read as zero.
        Assert.Equal("FFFFFFFF" + "02000000" + "00000000" + "0000", Convert.ToHexString(rig.FrontEnd.GetConfigReply(uint.MaxValue, 2)));
        rig.FrontEnd.Sync();
        Assert.True(rig.Backend.FrontEndConnected);
    }

    [Fact]
    public void ControlPlane_UnknownRequestWithNeedReply_IsLoggedAckedAndServingGoesOn()
    {
        using Rig rig = Rig.Start();
        const uint Unknown = 127; // no vhost-user request has this number
        rig.FrontEnd.SendU64(Unknown, 0, FakeVhostUserFrontEnd.FlagVersion | FakeVhostUserFrontEnd.FlagNeedReply);
        // REPLY_ACK (vhost-user.rst): a u64 reply to the same request. The back end ignores what it does not know.
        byte[] ack = rig.FrontEnd.ReceiveReply(Unknown, Bound);
        Assert.Equal(8, ack.Length);
        rig.Log.WaitFor("ignored request 127");

        // Still serving: the control plane answers and the data path carries a connection.
        rig.FrontEnd.Sync();
        Assert.True(rig.Backend.DataPathReady);
        using IVsockListener listener = rig.Backend.Vsock.Listen(new VsockAddress(ParentCid, 9050));
        GuestSocket guest = rig.Guest.Connect(ParentCid, 9050);
        Assert.True(guest.Established);
    }

    [Theory]
    [InlineData("payload over 4096 bytes", "request 2 with a 4097-byte payload")]
    [InlineData("protocol version 2", "request 1 with protocol version 2")]
    [InlineData("event queue (QEMU keeps it)", "queue 2 does not exist")]
    [InlineData("ring size not a power of two", "queue 0 size 100 is not a power of two")]
    [InlineData("ring base above 16 bits", "SET_VRING_BASE of 65536")]
    [InlineData("kick without its eventfd", "without its eventfd")]
    [InlineData("nine memory regions", "SET_MEM_TABLE with 9 regions")]
    [InlineData("config larger than 256 bytes", "GET_CONFIG of 257 bytes")]
    [InlineData("region past the end of its memfd", "memory region 0 ends at byte 2097152 of its file (offset 0 + size 2097152), but the file has 65536 bytes")]
    public void ControlPlane_MalformedMessage_IsLoggedAndTheSocketClosed(string fault, string logged)
    {
        using Rig rig = Rig.Connect();
        rig.FrontEnd.Negotiate();
        FakeVhostUserFrontEnd f = rig.FrontEnd;
        switch (fault)
        {
            case "payload over 4096 bytes":
                f.SendRaw(FakeVhostUserFrontEnd.SetFeatures, FakeVhostUserFrontEnd.FlagVersion, 4097, []);
                break;
            case "protocol version 2":
                f.SendRaw(FakeVhostUserFrontEnd.GetFeatures, 0x2, 0, []);
                break;
            case "event queue (QEMU keeps it)":
                f.SendVringState(FakeVhostUserFrontEnd.SetVringNum, 2, FakeVhostUserFrontEnd.QueueSize);
                break;
            case "ring size not a power of two":
                f.SendVringState(FakeVhostUserFrontEnd.SetVringNum, 0, 100);
                break;
            case "ring base above 16 bits":
                // A split ring's index is a u16 (virtio 1.2 §2.7.6); Linux's vhost refuses more with EINVAL.
                f.SendVringState(FakeVhostUserFrontEnd.SetVringBase, 0, 0x1_0000);
                break;
            case "kick without its eventfd":
                f.SendU64(FakeVhostUserFrontEnd.SetVringKick, 0); // bit 8 clear says an fd comes with it; none does
                break;
            case "nine memory regions":
                byte[] table = new byte[8 + (9 * 32)];
                BinaryPrimitives.WriteUInt32LittleEndian(table, 9);
                f.Send(FakeVhostUserFrontEnd.SetMemTable, table);
                break;
            case "config larger than 256 bytes":
                byte[] config = new byte[12];
                BinaryPrimitives.WriteUInt32LittleEndian(config.AsSpan(4), 257); // VHOST_USER_MAX_CONFIG_SIZE is 256
                f.Send(FakeVhostUserFrontEnd.GetConfig, config);
                break;
            case "region past the end of its memfd":
                // Mapped, the last 1984 KiB would raise SIGBUS when touched: the back end must refuse the region.
                int small = FakeVhostUserFrontEnd.Native.MemfdCreate("eif-test-small", FakeVhostUserFrontEnd.Native.MFD_CLOEXEC);
                Assert.True(small >= 0 && FakeVhostUserFrontEnd.Native.Ftruncate(small, 64 << 10) == 0);
                byte[] region = new byte[8 + 32];
                BinaryPrimitives.WriteUInt32LittleEndian(region, 1);
                BinaryPrimitives.WriteUInt64LittleEndian(region.AsSpan(8), 0);          // guest_phys_addr
                BinaryPrimitives.WriteUInt64LittleEndian(region.AsSpan(16), 2 << 20);   // memory_size
                BinaryPrimitives.WriteUInt64LittleEndian(region.AsSpan(24), 0x7f0000000000); // userspace_addr
                BinaryPrimitives.WriteUInt64LittleEndian(region.AsSpan(32), 0);         // mmap_offset
                f.Send(FakeVhostUserFrontEnd.SetMemTable, region, FakeVhostUserFrontEnd.FlagVersion, small);
                Launcher.Interop.Libc.Close(small);
                break;
            default:
                throw new ArgumentOutOfRangeException(nameof(fault), fault, null);
        }

        rig.Log.WaitFor(logged);
        rig.Log.WaitFor("QEMU disconnected");
        Assert.True(f.WaitForBackEndToClose(Bound), "the back end stopped serving but left the socket open, so QEMU would wait forever for its next reply");
        Assert.False(rig.Backend.DataPathReady);
        Assert.Equal(0, rig.Backend.Connections);
    }

    // --- Guest to host --------------------------------------------------------------------------------------------

    [Fact]
    public void GuestToHost_HeartbeatOnParentPort9000_IsEchoedByHeartbeatAwait()
    {
        using Rig rig = Rig.Start();
        using IVsockListener listener = Heartbeat.Listen(rig.Backend.Vsock, new VsockAddress(ParentCid, HeartbeatPort), TimeSpan.FromSeconds(1));
        byte[]? echo = null;
        var init = new Worker("the enclave's init", () =>
        {
            GuestSocket socket = rig.Guest.Connect(ParentCid, HeartbeatPort);
            Assert.True(socket.Established, "the heartbeat connection was refused");
            socket.Send([HeartbeatByte], Bound);
            echo = socket.ReadExactly(1, Bound);
        });
        Heartbeat.Await(listener, (uint)rig.Cid, Bound);
        init.Join(Bound);
        Assert.Equal([HeartbeatByte], echo ?? []);
        rig.Guest.AssertNoViolations();
    }

    [Fact]
    public void GuestToHost_OneMiBEachWay_ArrivesIntactOverManyPacketsAndChains()
    {
        using Rig rig = Rig.Start();
        using IVsockListener listener = rig.Backend.Vsock.Listen(new VsockAddress(ParentCid, 9100));
        GuestSocket guest = rig.Guest.Connect(ParentCid, 9100);
        Assert.True(guest.Established, "the host listener refused the connection");
        using VsockConnection host = listener.Accept(Bound) ?? throw new TimeoutException("the host listener accepted nothing");
        Assert.Equal(new VsockAddress((uint)rig.Cid, guest.LocalPort), host.Peer);
        WireHeader response = rig.Guest.Inspect(() => guest.Packets[0]);
        Assert.Equal(WireOp.Response, response.Op);
        Assert.Equal((ParentCid, 9100u, guest.LocalPort), (response.SrcCid, response.SrcPort, response.DstPort));
        Assert.Equal((uint)VsockDevice.BufferSize, response.BufAlloc);

        TransferBothWays(rig, guest, host.Stream, MiB);

        // Many packets each way: rx buffers hold 8 KiB of payload, tx packets carry at most 16 KiB.
        Assert.True(rig.Guest.RxPackets >= MiB / FakeVsockGuest.RxPayloadSize, $"only {rig.Guest.RxPackets} rx packets");
        Assert.True(rig.Guest.TxPackets >= MiB / FakeVsockGuest.TxMaxPayload, $"only {rig.Guest.TxPackets} tx packets");
        rig.Guest.AssertNoViolations();

        // The host closes: the guest is told (SHUTDOWN, both directions), answers RST, and the back end forgets it.
        host.Dispose();
        guest.WaitFor(s => s.Closed, Bound, "the host's full SHUTDOWN");
        WaitUntil(() => rig.Backend.Connections == 0, "the back end to drop the closed connection");
    }

    [Fact]
    public void GuestToHost_DeferringListener_AnswersOnlyWhenTheHostConfirmsOrAborts()
    {
        using Rig rig = Rig.Start();
        var hostSide = (VsockDevice.HostSide)rig.Backend.Vsock;
        using IVsockListener deferring = hostSide.Listen(new VsockAddress(ParentCid, 9950), 16, deferResponse: true);
        using IVsockListener plain = rig.Backend.Vsock.Listen(new VsockAddress(ParentCid, 9951));
        GuestSocket confirmed = rig.Guest.BeginConnect(ParentCid, 9950);
        GuestSocket aborted = rig.Guest.BeginConnect(ParentCid, 9950);
        GuestSocket abandoned = rig.Guest.BeginConnect(ParentCid, 9950);
        var accepted = new Dictionary<uint, VsockConnection>();
        try
        {
            for (int i = 0; i < 3; i++)
            {
                VsockConnection connection = deferring.Accept(Bound) ?? throw new TimeoutException($"deferred request {i} was not handed to Accept");
                accepted[connection.Peer.Port] = connection;
            }

            // A barrier: a REQUEST sent after those three is answered, so the back end handled them and answered none.
            Assert.True(rig.Guest.Connect(ParentCid, 9951).Established);
            Assert.All([confirmed, aborted, abandoned], s => Assert.Empty(rig.Guest.Inspect(() => s.Packets.ToList())));

            // Confirm: RESPONSE, and the connection carries data.
            var confirmedStream = (VsockDevice.GuestStream)accepted[confirmed.LocalPort].Stream;
            Assert.True(confirmedStream.Confirm());
            confirmed.WaitFor(s => s.Established, Bound, "RESPONSE after Confirm");
            confirmedStream.Write("confirmed"u8);
            Assert.Equal("confirmed", Encoding.ASCII.GetString(confirmed.ReadExactly(9, Bound)));

            // Abort before answering: RST, so the guest's connect fails.
            ((VsockDevice.GuestStream)accepted[aborted.LocalPort].Stream).Abort("the forward target is unreachable");
            aborted.WaitFor(s => s.ResetReceived, Bound, "RST after Abort");
            Assert.False(rig.Guest.Inspect(() => aborted.Established));

            // The guest gives up first (RST): a late Confirm says so instead of answering.
            abandoned.Reset();
            Assert.True(rig.Guest.Connect(ParentCid, 9951).Established); // the RST has been handled
            Assert.False(((VsockDevice.GuestStream)accepted[abandoned.LocalPort].Stream).Confirm());
            rig.Guest.AssertNoViolations();
        }
        finally
        {
            foreach (VsockConnection connection in accepted.Values)
                connection.Dispose();
        }
    }

    [Fact]
    public void GuestToHost_PortNobodyListensOnOrACidThatIsNotTheHost_IsAnsweredWithRst()
    {
        using Rig rig = Rig.Start();
        using IVsockListener listener = rig.Backend.Vsock.Listen(new VsockAddress(ParentCid, 9200));
        foreach ((ulong cid, uint port) in new[] { (ParentCid, 9201u), ((ulong)HostCid, 9201u), (42UL, 9200u) })
        {
            GuestSocket socket = rig.Guest.Connect(cid, port);
            Assert.True(socket.ResetReceived, $"a REQUEST to {cid}:{port} was not refused");
            Assert.False(socket.Established);
            WireHeader rst = rig.Guest.Inspect(() => socket.Packets.Single());
            Assert.Equal(WireOp.Rst, rst.Op);
            Assert.Equal((cid, port, rig.Cid, socket.LocalPort), (rst.SrcCid, rst.SrcPort, rst.DstCid, rst.DstPort));
        }

        Assert.Null(listener.Accept(TimeSpan.Zero)); // the CID-42 request was not delivered to port 9200's listener
        Assert.Equal(0, rig.Backend.Connections);
        rig.Guest.AssertNoViolations();
    }

    // --- Host to guest --------------------------------------------------------------------------------------------

    [Fact]
    public void HostToGuest_ConnectToAGuestListener_IsAcceptedAndCarriesDataBothWays()
    {
        using Rig rig = Rig.Start();
        const uint Port = 5005;
        rig.Guest.Listen(Port);
        using VsockConnection host = rig.Backend.Vsock.Connect(new VsockAddress((uint)rig.Cid, Port), Bound);
        GuestSocket guest = rig.Guest.Accept(Port, Bound);
        Assert.Equal(new VsockAddress((uint)rig.Cid, Port), host.Peer);
        WireHeader request = rig.Guest.Inspect(() => guest.Packets[0]);
        Assert.Equal(WireOp.Request, request.Op);
        Assert.Equal((ulong)ParentCid, request.SrcCid); // the host speaks as the parent, as on a Nitro instance
        Assert.Equal((rig.Cid, Port), (request.DstCid, request.DstPort));
        Assert.Equal(((uint)VsockDevice.BufferSize, 0u), (request.BufAlloc, request.FwdCnt));

        TransferBothWays(rig, guest, host.Stream, 256 * KiB);
        rig.Guest.AssertNoViolations();
    }

    [Fact]
    public void HostToGuest_PortNobodyListensOn_IsRefusedByTheGuestsRstWithoutWaitingForTheTimeout()
    {
        using Rig rig = Rig.Start();
        var clock = Stopwatch.StartNew();
        EnclaveException ex = Assert.Throws<EnclaveException>(() => rig.Backend.Vsock.Connect(new VsockAddress((uint)rig.Cid, 5999), TimeSpan.FromSeconds(8)));
        Assert.Equal(ECONNREFUSED, ex.Errno);
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(4), $"refusal took {clock.Elapsed.TotalSeconds:0.0} s: the connect waited for its timeout instead of the RST");
        Assert.Contains(rig.Guest.Unmatched, h => h.Op == WireOp.Request && h.DstPort == 5999);
        Assert.Equal(0, rig.Backend.Connections);
    }

    // --- Flow control ---------------------------------------------------------------------------------------------

    [Fact]
    public void FlowControl_GuestAdvertises64KiBAndReadsNothing_HostWriterStopsAtCreditPlusBuffer_ThenFinishes()
    {
        using Rig rig = Rig.Start();
        const uint GuestBuffer = 64 * KiB;
        const int Chunk = 4 * KiB;
        using IVsockListener listener = rig.Backend.Vsock.Listen(new VsockAddress(ParentCid, 9300));
        GuestSocket guest = rig.Guest.Connect(ParentCid, 9300, bufAlloc: GuestBuffer);
        guest.AutoCredit = false;
        using VsockConnection host = listener.Accept(Bound) ?? throw new TimeoutException("the host listener accepted nothing");
        byte[] data = Pattern(MiB, 3);
        long written = 0;
        var writer = new Worker("host writer", () =>
        {
            for (int at = 0; at < data.Length; at += Chunk)
            {
                host.Stream.Write(data, at, Chunk);
                Interlocked.Add(ref written, Chunk);
            }
        });

        // What the host may get out: the guest's buf_alloc onto the rx ring, plus the back end's own buffer.
        long limit = GuestBuffer + VsockDevice.BufferSize;
        WaitUntil(() => Interlocked.Read(ref written) >= limit, "the host writer to fill the guest's credit and the back end's buffer");

        // A barrier: the back end answers CREDIT_REQUEST after any data it could still send, so once the CREDIT_UPDATE
        // is here nothing more is on its way.
        int before = rig.Guest.Inspect(() => guest.Packets.Count);
        guest.SendControl(WireOp.CreditRequest);
        guest.WaitFor(s => s.Packets.Skip(before).Any(p => p.Op == WireOp.CreditUpdate), Bound, "CREDIT_UPDATE answering CREDIT_REQUEST");
        Assert.Equal((GuestBuffer, (int)GuestBuffer), rig.Guest.Inspect(() => (guest.RxCnt, guest.Unread)));
        Assert.Equal(limit, Interlocked.Read(ref written));
        Assert.True(writer.IsAlive, "the host writer finished although the guest gave no more credit");
        rig.Guest.AssertNoViolations();

        // The guest reads and returns credit (CREDIT_UPDATE every 16 KiB read): the rest flows.
        guest.AutoCredit = true;
        byte[] received = guest.ReadExactly(data.Length, Bound);
        writer.Join(Bound);
        Assert.Equal(Convert.ToHexString(SHA256.HashData(data)), Convert.ToHexString(SHA256.HashData(received)));
        rig.Guest.AssertNoViolations(); // in particular: never more than 64 KiB unread
    }

    [Fact]
    public void FlowControl_HostReadsNothing_GuestCreditStopsAtTheBackEndsBuffer_ThenReadingReturnsIt()
    {
        using Rig rig = Rig.Start();
        using IVsockListener listener = rig.Backend.Vsock.Listen(new VsockAddress(ParentCid, 9301));
        GuestSocket guest = rig.Guest.Connect(ParentCid, 9301);
        using VsockConnection host = listener.Accept(Bound) ?? throw new TimeoutException("the host listener accepted nothing");
        byte[] data = Pattern(MiB, 4);

        // The back end advertises exactly its per-connection buffer, so that is all the guest may have in flight.
        Assert.Equal(((uint)VsockDevice.BufferSize, 0u), rig.Guest.Inspect(() => (guest.PeerBufAlloc, guest.PeerFwdCnt)));
        Assert.Equal(VsockDevice.BufferSize, guest.SendAvailable(data));
        Assert.Equal(0u, rig.Guest.Inspect(() => guest.Credit));

        // Asked again while the host reads nothing, the back end gives no more credit.
        int before = rig.Guest.Inspect(() => guest.Packets.Count);
        guest.SendControl(WireOp.CreditRequest);
        guest.WaitFor(s => s.Packets.Skip(before).Any(p => p.Op == WireOp.CreditUpdate), Bound, "CREDIT_UPDATE answering CREDIT_REQUEST");
        WireHeader update = rig.Guest.Inspect(() => guest.Packets.Skip(before).First(p => p.Op == WireOp.CreditUpdate));
        Assert.Equal(((uint)VsockDevice.BufferSize, 0u), (update.BufAlloc, update.FwdCnt));

        // The host reads a quarter: the back end sends the new fwd_cnt on its own, and the guest may send again.
        byte[] first = HostReadExactly(host.Stream, VsockDevice.BufferSize / 4);
        guest.WaitFor(s => s.PeerFwdCnt >= VsockDevice.BufferSize / 4, Bound, "the back end's CREDIT_UPDATE after the host read");
        var sender = new Worker("guest sender", () => guest.Send(data.AsSpan(VsockDevice.BufferSize), Bound));
        byte[] rest = HostReadExactly(host.Stream, data.Length - first.Length);
        sender.Join(Bound);
        Assert.Equal(Convert.ToHexString(SHA256.HashData(data)), Convert.ToHexString(SHA256.HashData([.. first, .. rest])));
        Assert.DoesNotContain(rig.Guest.Inspect(() => guest.Packets.ToList()), p => p.Op == WireOp.Rst);
        rig.Guest.AssertNoViolations();
    }

    [Fact]
    public void FlowControl_GuestSendsBeyondItsCredit_BackEndResetsTheConnection()
    {
        using Rig rig = Rig.Start();
        using IVsockListener listener = rig.Backend.Vsock.Listen(new VsockAddress(ParentCid, 9302));
        GuestSocket guest = rig.Guest.Connect(ParentCid, 9302);
        using VsockConnection host = listener.Accept(Bound) ?? throw new TimeoutException("the host listener accepted nothing");
        byte[] data = Pattern(VsockDevice.BufferSize, 5);
        Assert.Equal(data.Length, guest.SendAvailable(data));

        // One byte more than the credit the back end gave.
        rig.Guest.TransmitRaw(guest.Header(WireOp.Rw, 1), [0x55]);
        guest.WaitFor(s => s.ResetReceived, Bound, "RST for data beyond the credit");
        rig.Log.WaitFor("sent more than its credit; connection reset");

        // What was within the credit is still the host's to read, then the stream ends.
        Assert.Equal(data, HostReadExactly(host.Stream, data.Length));
        Assert.Equal(0, host.Stream.Read(new byte[1]));
        Assert.Equal(0, rig.Backend.Connections);
    }

    [Fact]
    public void FlowControl_GuestForwardCountAheadOfWhatWasSent_DoesNotBreakTheBackEnd()
    {
        using Rig rig = Rig.Start();
        using IVsockListener listener = rig.Backend.Vsock.Listen(new VsockAddress(ParentCid, 9303));
        GuestSocket guest = rig.Guest.Connect(ParentCid, 9303);
        using VsockConnection host = listener.Accept(Bound) ?? throw new TimeoutException("the host listener accepted nothing");

        // fwd_cnt is a free-running u32 (virtio 1.2 §5.10.6.3): 0 − 0xFFFF0000 wraps to 64 KiB in flight, no error.
        rig.Guest.TransmitRaw(guest.Header(WireOp.CreditUpdate) with { FwdCnt = 0xFFFF_0000 }, []);
        byte[] data = Pattern(1000, 6);
        host.Stream.Write(data);
        Assert.Equal(data, guest.ReadExactly(data.Length, Bound));

        // The back end still serves others.
        GuestSocket other = rig.Guest.Connect(ParentCid, 9303);
        Assert.True(other.Established);
    }

    // --- Shutdown and reset ---------------------------------------------------------------------------------------

    [Fact]
    public void Shutdown_GuestHalfCloses_HostReadsEndOfStreamYetWrites_ThenBothCloseCleanly()
    {
        using Rig rig = Rig.Start();
        using IVsockListener listener = rig.Backend.Vsock.Listen(new VsockAddress(ParentCid, 9400));
        GuestSocket guest = rig.Guest.Connect(ParentCid, 9400);
        VsockConnection host = listener.Accept(Bound) ?? throw new TimeoutException("the host listener accepted nothing");
        try
        {
            guest.Send("request, then SHUT_WR"u8, Bound);
            guest.Shutdown(WireHeader.ShutdownSend);
            Assert.Equal("request, then SHUT_WR", Encoding.ASCII.GetString(HostReadToEnd(host.Stream)));
            Assert.Null(((VsockDevice.GuestStream)host.Stream).ResetReason); // an orderly end, not a reset

            // Half-closed: the host still writes, the guest still reads.
            host.Stream.Write("answer after the half-close"u8);
            Assert.Equal("answer after the half-close", Encoding.ASCII.GetString(guest.ReadExactly(27, Bound)));

            // The host half-closes too: the guest gets SHUTDOWN with only SEND set, then end of stream.
            ((VsockDevice.GuestStream)host.Stream).ShutdownWrite();
            Assert.Empty(guest.ReadToEnd(Bound));
            Assert.Equal(WireHeader.ShutdownSend, rig.Guest.Inspect(() => guest.PeerShutdown));

            // The host closes: a close after a half-close still tells the guest both directions are done (Linux
            // virtio_transport_close sends SHUTDOWN_MASK unless both were already sent), so the guest can answer RST
            // and the connection goes away instead of lingering until the guest closes.
            host.Dispose();
            guest.WaitFor(s => s.PeerShutdown == (WireHeader.ShutdownRcv | WireHeader.ShutdownSend), Bound, "a SHUTDOWN with RCV after the host closed");
            WaitUntil(() => rig.Backend.Connections == 0, "the back end to drop the closed connection");
            rig.Guest.AssertNoViolations();
        }
        finally
        {
            host.Dispose();
        }
    }

    [Fact]
    public void Reset_GuestSendsRst_HostReadsWhatArrivedThenEndOfStreamAndWritesFail()
    {
        using Rig rig = Rig.Start();
        using IVsockListener listener = rig.Backend.Vsock.Listen(new VsockAddress(ParentCid, 9401));
        GuestSocket guest = rig.Guest.Connect(ParentCid, 9401);
        using VsockConnection host = listener.Accept(Bound) ?? throw new TimeoutException("the host listener accepted nothing");
        guest.Send("last words"u8, Bound);
        guest.Reset();
        Assert.Equal("last words", Encoding.ASCII.GetString(HostReadToEnd(host.Stream)));
        Assert.NotNull(((VsockDevice.GuestStream)host.Stream).ResetReason); // the 0 was a reset, not an end of stream
        IOException ex = Assert.Throws<IOException>(() => host.Stream.Write("too late"u8));
        Assert.Contains("reset", ex.Message);
        Assert.Equal(0, rig.Backend.Connections);
    }

    [Fact]
    public void Reset_HostAborts_GuestGetsRstAndTheConnectionIsGone()
    {
        using Rig rig = Rig.Start();
        using IVsockListener listener = rig.Backend.Vsock.Listen(new VsockAddress(ParentCid, 9402));
        GuestSocket guest = rig.Guest.Connect(ParentCid, 9402);
        using VsockConnection host = listener.Accept(Bound) ?? throw new TimeoutException("the host listener accepted nothing");
        ((VsockDevice.GuestStream)host.Stream).Abort("the forwarded TCP peer reset");
        guest.WaitFor(s => s.ResetReceived, Bound, "RST after the host aborted");
        // An abort is RST straight away, not the orderly SHUTDOWN a close sends.
        List<WireHeader> packets = rig.Guest.Inspect(() => guest.Packets.ToList());
        Assert.Equal(WireOp.Rst, packets[^1].Op);
        Assert.DoesNotContain(packets, p => p.Op == WireOp.Shutdown);
        Assert.Equal(0, rig.Backend.Connections);
        rig.Guest.AssertNoViolations();
    }

    // --- The front end goes away ----------------------------------------------------------------------------------

    [Fact]
    public void FrontEndDisconnects_AsWhenQemuExits_HostStreamsEndAndNothingIsLeftBehind()
    {
        // Linux keeps 15 characters of a thread's name. Counted relative to before, so a thread another test left
        // behind is that test's failure, not this one's.
        const string ControlThread = "vhost-user fron";
        const string DataThread = "vsock device (C";
        int controlThreads = SettledThreadCount(ControlThread);
        int dataThreads = SettledThreadCount(DataThread);
        Rig rig = Rig.Start();
        try
        {
            using IVsockListener listener = rig.Backend.Vsock.Listen(new VsockAddress(ParentCid, 9500));
            using IVsockListener idle = rig.Backend.Vsock.Listen(new VsockAddress(ParentCid, 9501));

            // A guest connection whose host reader waits for data, and a host connection whose writer waits for credit.
            GuestSocket inbound = rig.Guest.Connect(ParentCid, 9500);
            using VsockConnection reading = listener.Accept(Bound) ?? throw new TimeoutException("the host listener accepted nothing");
            int readResult = -1;
            var reader = new Worker("host reader", () => readResult = reading.Stream.Read(new byte[16]));
            rig.Guest.Listen(7000, bufAlloc: 4 * KiB);
            using VsockConnection writing = rig.Backend.Vsock.Connect(new VsockAddress((uint)rig.Cid, 7000), Bound);
            long written = 0;
            var writer = new Worker("host writer", () =>
            {
                byte[] chunk = new byte[4 * KiB];
                while (true)
                {
                    writing.Stream.Write(chunk);
                    Interlocked.Add(ref written, chunk.Length);
                }
            });
            WaitUntil(() => Interlocked.Read(ref written) >= (4 * KiB) + VsockDevice.BufferSize, "the host writer to run out of credit");
            var accepter = new Worker("host accept", () => idle.Accept(TimeSpan.FromSeconds(30)));
            Assert.Equal(2, rig.Backend.Connections);
            Assert.Equal(controlThreads + 1, CountThreads(ControlThread));

            // QEMU exits: its socket closes, its RAM mapping and eventfds go with it.
            rig.Guest.Dispose();
            rig.FrontEnd.Dispose();

            rig.Log.WaitFor("QEMU disconnected");
            reader.Join(Bound);
            Assert.Equal(0, readResult); // end of stream
            IOException writeError = Assert.IsAssignableFrom<IOException>(writer.JoinFailure(Bound));
            Assert.Contains("QEMU disconnected", writeError.Message);
            Assert.Equal(0, rig.Backend.Connections);
            WaitUntil(() => CountThreads(ControlThread) == controlThreads, "the control-plane thread to end");

            // No guest any more: connecting into it is refused at once, not after the timeout.
            Assert.False(rig.Backend.DataPathReady);
            var clock = Stopwatch.StartNew();
            EnclaveException refused = Assert.Throws<EnclaveException>(() => rig.Backend.Vsock.Connect(new VsockAddress((uint)rig.Cid, 7000), TimeSpan.FromSeconds(8)));
            Assert.Equal(ECONNREFUSED, refused.Errno);
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(4), $"connect took {clock.Elapsed.TotalSeconds:0.0} s");

            // The back end holds the fds it was sent only as long as it needs them: the memfd was closed once mapped,
            // and the mappings (one per region, each from offset 0, as libvhost-user maps them) go with Dispose, which
            // returns quickly and ends the data thread and blocked accepts.
            Assert.Equal(0, CountMemfdDescriptors(rig.FrontEnd.MemfdName));
            Assert.Equal(FakeVhostUserFrontEnd.Regions, CountMappings(rig.FrontEnd.MemfdName));
            Assert.Equal(dataThreads + 1, CountThreads(DataThread));
            clock.Restart();
            rig.Backend.Dispose();
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(1), $"Dispose took {clock.Elapsed.TotalSeconds:0.0} s");
            Assert.IsType<EnclaveException>(accepter.JoinFailure(Bound));
            Assert.Equal(0, CountMappings(rig.FrontEnd.MemfdName));
            WaitUntil(() => CountThreads(DataThread) == dataThreads, "the data thread to end"); // its task entry outlives Join briefly
            Assert.False(File.Exists(rig.Backend.SocketPath));
        }
        finally
        {
            rig.Dispose();
        }
    }

    [Fact]
    public void GetVringBase_QemuStopsTheDevice_ReportsRingPositionsEndsConnectionsAndCanRestart()
    {
        using Rig rig = Rig.Start();
        using IVsockListener listener = rig.Backend.Vsock.Listen(new VsockAddress(ParentCid, 9600));
        GuestSocket guest = rig.Guest.Connect(ParentCid, 9600);
        using VsockConnection host = listener.Accept(Bound) ?? throw new TimeoutException("the host listener accepted nothing");
        guest.Send(Pattern(40 * KiB, 7), Bound);
        HostReadExactly(host.Stream, 40 * KiB);
        host.Stream.Write(Pattern(20 * KiB, 8));
        guest.ReadExactly(20 * KiB, Bound);
        WaitUntil(() => rig.Guest.TxIdle, "the device to return every tx buffer");

        // GET_VRING_BASE stops a ring and reports the next index it would have read: for tx every packet sent, for
        // rx every buffer it filled (and nothing more arrives once it is stopped).
        uint rx = rig.FrontEnd.RequestVringBase(FakeVhostUserFrontEnd.RxQueueIndex);
        uint tx = rig.FrontEnd.RequestVringBase(FakeVhostUserFrontEnd.TxQueueIndex);
        Assert.Equal(rig.FrontEnd.Tx.AvailIndex, tx);
        WaitUntil(() => rig.Guest.RxPackets >= rx, $"the guest to see all {rx} rx packets");
        Assert.Equal(rx, (uint)rig.Guest.RxPackets);
        Assert.False(rig.Backend.DataPathReady);
        Assert.Equal(0, host.Stream.Read(new byte[1]));
        Assert.Throws<IOException>(() => host.Stream.Write([1]));
        Assert.Equal(0, rig.Backend.Connections);

        // QEMU starts the rings again from those indices (a device reset): connections work again.
        rig.FrontEnd.RestartRings(rx, tx);
        Assert.True(rig.Backend.DataPathReady);
        GuestSocket again = rig.Guest.Connect(ParentCid, 9600);
        using VsockConnection hostAgain = listener.Accept(Bound) ?? throw new TimeoutException("the host listener accepted nothing after the restart");
        TransferBothWays(rig, again, hostAgain.Stream, 64 * KiB);
        rig.Guest.AssertNoViolations();
    }

    // --- Rings ----------------------------------------------------------------------------------------------------

    [Fact]
    public void Rings_IndicesStartJustBelow65536_WrapAndDataStillFlows()
    {
        // QEMU's SET_VRING_BASE carries the saved index (non-zero after a restart or migration), and any long-lived
        // guest passes 65535 after 65536 packets: split-ring indices are free-running u16s (virtio 1.2 §2.7.6).
        using Rig rig = Rig.Start(ringBase: 65_500);
        using IVsockListener listener = rig.Backend.Vsock.Listen(new VsockAddress(ParentCid, 9700));
        GuestSocket guest = rig.Guest.Connect(ParentCid, 9700);
        using VsockConnection host = listener.Accept(Bound) ?? throw new TimeoutException("the host listener accepted nothing");
        TransferBothWays(rig, guest, host.Stream, MiB); // ≥ 64 tx and ≥ 128 rx packets: both pass 65535
        Assert.True(rig.FrontEnd.Tx.AvailIndex < 65_500, $"the tx ring did not wrap (index {rig.FrontEnd.Tx.AvailIndex})");
        Assert.True(rig.FrontEnd.Rx.AvailIndex < 65_500, $"the rx ring did not wrap (index {rig.FrontEnd.Rx.AvailIndex})");
        rig.Guest.AssertNoViolations();
    }

    [Fact]
    public unsafe void Rings_RxChainOfMoreThan2GiB_IsFilledInsteadOfFaultingTheDataThread()
    {
        // A driver may make a chain of up to 2^32 bytes in total (virtio 1.2 §2.7.5: "Drivers MUST NOT add a
        // descriptor chain longer than 2^32 bytes in total"), more than an int holds. Two writable 1.125 GiB buffers
        // over the same (sparse) guest RAM make 2.25 GiB. The rings are driven by hand here, without the fake guest.
        const uint Piece = 0x4800_0000;
        using Rig rig = Rig.Start(withGuest: false, highRegionSize: 0x5000_0000);
        using IVsockListener listener = rig.Backend.Vsock.Listen(new VsockAddress(ParentCid, 9900));
        FakeVhostUserFrontEnd f = rig.FrontEnd;
        ulong large = FakeVhostUserFrontEnd.GuestPhysical(FakeVhostUserFrontEnd.RegionSize);
        f.Rx.WriteDescriptor(0, large, Piece, DriverQueue.DescWrite | DriverQueue.DescNext, 1);
        f.Rx.WriteDescriptor(1, large, Piece, DriverQueue.DescWrite, 0);
        f.Rx.MakeAvailable(0);
        f.Rx.Kick();

        // A REQUEST to the host listener: its RESPONSE goes into that chain.
        long request = FakeVhostUserFrontEnd.RxBuffersOffset;
        new WireHeader(rig.Cid, ParentCid, 40_000, 9900, 0, WireHeader.TypeStream, WireOp.Request, 0, 64 * KiB, 0)
            .Encode(new Span<byte>((void*)f.Pointer(request), WireHeader.Size));
        f.Tx.WriteDescriptor(0, FakeVhostUserFrontEnd.GuestPhysical(request), WireHeader.Size, 0, 0);
        f.Tx.MakeAvailable(0);
        f.Tx.Kick();

        uint id = 0;
        uint length = 0;
        WaitUntil(() => f.Rx.TryTakeUsed(out id, out length), "the RESPONSE in the 2.25 GiB rx chain");
        Assert.Equal((0u, (uint)WireHeader.Size), (id, length));
        WireHeader response = WireHeader.Decode(new ReadOnlySpan<byte>((void*)f.Pointer(FakeVhostUserFrontEnd.RegionSize), WireHeader.Size));
        Assert.Equal((WireOp.Response, 40_000u, 9900u), (response.Op, response.DstPort, response.SrcPort));
        Assert.NotNull(listener.Accept(Bound));
    }

    // --- Many connections -----------------------------------------------------------------------------------------

    [Fact]
    public void Echo_HundredConcurrentGuestConnections_EachGetsItsOwnPayloadBack()
    {
        const int Count = 100;
        using Rig rig = Rig.Start();
        using IVsockListener listener = rig.Backend.Vsock.Listen(new VsockAddress(ParentCid, 9800), backlog: Count);
        var echoes = new List<Worker>();
        var accepter = new Worker("host accept loop", () =>
        {
            for (int i = 0; i < Count; i++)
            {
                VsockConnection connection = listener.Accept(Bound) ?? throw new TimeoutException($"connection {i} was never accepted");
                var echo = new Worker($"host echo {i}", () =>
                {
                    using (connection)
                        connection.Stream.Write(HostReadToEnd(connection.Stream));
                });
                lock (echoes)
                    echoes.Add(echo);
            }
        });

        // All connections open at once; every payload is different and spans several packets.
        var sockets = new GuestSocket[Count];
        var payloads = new byte[Count][];
        for (int i = 0; i < Count; i++)
        {
            sockets[i] = rig.Guest.Connect(ParentCid, 9800);
            Assert.True(sockets[i].Established, $"connection {i} was refused");
        }

        for (int i = 0; i < Count; i++)
        {
            payloads[i] = Pattern(20 * KiB + (i * 37), 1000 + i);
            sockets[i].Send(payloads[i], Bound);
            sockets[i].Shutdown(WireHeader.ShutdownSend);
        }

        for (int i = 0; i < Count; i++)
            Assert.True(payloads[i].AsSpan().SequenceEqual(sockets[i].ReadToEnd(Bound)), $"connection {i} got another payload back");

        accepter.Join(Bound);
        foreach (Worker echo in echoes)
            echo.Join(Bound);
        WaitUntil(() => rig.Backend.Connections == 0, "the back end to drop all closed connections");
        rig.Guest.AssertNoViolations();
    }

    // --- Helpers --------------------------------------------------------------------------------------------------

    // Moves `size` bytes each way at the same time (both sides write while they read) and compares SHA-256s.
    private static void TransferBothWays(Rig rig, GuestSocket guest, Stream host, int size)
    {
        byte[] toHost = Pattern(size, 1);
        byte[] toGuest = Pattern(size, 2);
        byte[]? atHost = null;
        var hostReader = new Worker("host reader", () => atHost = HostReadExactly(host, size));
        var hostWriter = new Worker("host writer", () => host.Write(toGuest));
        var guestWriter = new Worker("guest writer", () => guest.Send(toHost, Bound));
        byte[] atGuest = guest.ReadExactly(size, Bound);
        guestWriter.Join(Bound);
        hostWriter.Join(Bound);
        hostReader.Join(Bound);
        Assert.Equal(Convert.ToHexString(SHA256.HashData(toGuest)), Convert.ToHexString(SHA256.HashData(atGuest)));
        Assert.Equal(Convert.ToHexString(SHA256.HashData(toHost)), Convert.ToHexString(SHA256.HashData(atHost!)));
        rig.Guest.AssertNoViolations();
    }

    private static byte[] Pattern(int length, int seed)
    {
        byte[] bytes = new byte[length];
        new Random(seed).NextBytes(bytes);
        return bytes;
    }

    private static byte[] HostReadExactly(Stream stream, int count)
    {
        stream.ReadTimeout = (int)Bound.TotalMilliseconds;
        byte[] data = new byte[count];
        stream.ReadExactly(data);
        return data;
    }

    private static byte[] HostReadToEnd(Stream stream)
    {
        stream.ReadTimeout = (int)Bound.TotalMilliseconds;
        var all = new MemoryStream();
        stream.CopyTo(all);
        return all.ToArray();
    }

    private static void WaitUntil(Func<bool> condition, string what)
    {
        var clock = Stopwatch.StartNew();
        while (!condition())
        {
            if (clock.Elapsed > Bound)
                Assert.Fail($"timed out after {Bound.TotalSeconds:0} s waiting for {what}");
            Thread.Sleep(5);
        }
    }

    // Threads of this process whose (15-character) name is `name`, from /proc/self/task/*/comm.
    private static int CountThreads(string name)
    {
        int count = 0;
        foreach (string task in Directory.GetDirectories("/proc/self/task"))
        {
            try
            {
                if (File.ReadAllText(Path.Join(task, "comm")).TrimEnd('\n') == name)
                    count++;
            }
            catch (IOException)
            {
                // the thread ended while we looked
            }
        }

        return count;
    }

    // The number of such threads once those of earlier tests have ended: an OS thread outlives its managed Join for
    // a moment, so wait (briefly) for none; any that stay are another test's leak, and count as the baseline.
    private static int SettledThreadCount(string name)
    {
        var clock = Stopwatch.StartNew();
        while (CountThreads(name) > 0 && clock.Elapsed < TimeSpan.FromSeconds(2))
            Thread.Sleep(5);
        return CountThreads(name);
    }

    // Mappings of the memfd in /proc/self/maps (one line per mapping).
    private static int CountMappings(string memfdName) =>
        File.ReadAllLines("/proc/self/maps").Count(l => l.Contains($"/memfd:{memfdName}", StringComparison.Ordinal));

    // Open descriptors of the memfd (/proc/self/fd links read "/memfd:<name> (deleted)").
    private static int CountMemfdDescriptors(string memfdName)
    {
        int count = 0;
        foreach (string fd in Directory.GetFiles("/proc/self/fd"))
        {
            try
            {
                if (new FileInfo(fd).LinkTarget?.Contains($"/memfd:{memfdName}", StringComparison.Ordinal) == true)
                    count++;
            }
            catch (IOException)
            {
                // closed while we looked
            }
        }

        return count;
    }

    /// <summary>A back end, its fake front end and (once started) the fake guest, disposed in reverse order.</summary>
    private sealed class Rig : IDisposable
    {
        private FakeVsockGuest? _guest;

        private Rig(VhostUserVsockBackend backend, FakeVhostUserFrontEnd frontEnd, LogSink log, ulong cid)
        {
            Backend = backend;
            FrontEnd = frontEnd;
            Log = log;
            Cid = cid;
        }

        internal VhostUserVsockBackend Backend { get; }

        internal FakeVhostUserFrontEnd FrontEnd { get; }

        internal LogSink Log { get; }

        internal ulong Cid { get; }

        internal FakeVsockGuest Guest => _guest ?? throw new InvalidOperationException("the rig was connected but not started");

        /// <summary>A listening back end with the fake front end connected, before any message.</summary>
        internal static Rig Connect(ulong? cid = null, long highRegionSize = FakeVhostUserFrontEnd.RegionSize)
        {
            ulong guestCid = cid ?? (ulong)Interlocked.Increment(ref s_nextCid);
            string socket = Path.Join(TestEnvironment.TemporaryFolder("vhu"), "vsock.sock");
            var log = new LogSink();
            var backend = new VhostUserVsockBackend(socket, guestCid, log.Add);
            try
            {
                backend.Start();
                return new Rig(backend, FakeVhostUserFrontEnd.Connect(socket, highRegionSize), log, guestCid);
            }
            catch
            {
                backend.Dispose();
                throw;
            }
        }

        /// <summary>
        /// Connected, negotiated, rings running, and (unless <paramref name="withGuest"/> is false, for a test that
        /// drives the rings itself) a guest driver that read its CID from the config space.
        /// </summary>
        internal static Rig Start(ushort ringBase = 0, bool withGuest = true, long highRegionSize = FakeVhostUserFrontEnd.RegionSize)
        {
            Rig rig = Connect(highRegionSize: highRegionSize);
            try
            {
                rig.FrontEnd.Negotiate();
                ulong cid = BinaryPrimitives.ReadUInt64LittleEndian(rig.FrontEnd.GetConfigReply(0, 8).AsSpan(12));
                rig.FrontEnd.StartDevice(ringBase);
                if (withGuest)
                    rig._guest = new FakeVsockGuest(rig.FrontEnd, cid);
                return rig;
            }
            catch
            {
                rig.Dispose();
                throw;
            }
        }

        public void Dispose()
        {
            try
            {
                _guest?.Dispose();
            }
            finally
            {
                FrontEnd.Dispose();
                Backend.Dispose();
            }
        }
    }

    /// <summary>The back end's log, with a bounded wait for a line.</summary>
    private sealed class LogSink
    {
        private readonly List<string> _lines = [];

        internal void Add(string line)
        {
            lock (_lines)
            {
                _lines.Add(line);
                Monitor.PulseAll(_lines);
            }
        }

        internal void WaitFor(string fragment)
        {
            long deadline = Environment.TickCount64 + (long)Bound.TotalMilliseconds;
            lock (_lines)
            {
                while (!_lines.Any(l => l.Contains(fragment, StringComparison.Ordinal)))
                {
                    long left = deadline - Environment.TickCount64;
                    if (left <= 0)
                        Assert.Fail($"the back end never logged \"{fragment}\"; it logged:\n{string.Join("\n", _lines)}");
                    Monitor.Wait(_lines, (int)left);
                }
            }
        }
    }

    /// <summary>A background thread whose failure is kept for the test to inspect when it joins.</summary>
    private sealed class Worker
    {
        private readonly Thread _thread;
        private readonly string _name;
        private Exception? _error;

        internal Worker(string name, Action body)
        {
            _name = name;
            _thread = new Thread(() =>
            {
                try
                {
                    body();
                }
                catch (Exception ex)
                {
                    _error = ex;
                }
            }) { IsBackground = true, Name = name };
            _thread.Start();
        }

        internal bool IsAlive => _thread.IsAlive;

        /// <summary>Waits for the thread and rethrows what it threw.</summary>
        internal void Join(TimeSpan timeout)
        {
            Assert.True(_thread.Join(timeout), $"{_name} did not finish within {timeout.TotalSeconds:0} s");
            if (_error is not null)
                ExceptionDispatchInfo.Capture(_error).Throw();
        }

        /// <summary>Waits for the thread, which must have failed, and returns its exception.</summary>
        internal Exception JoinFailure(TimeSpan timeout)
        {
            Assert.True(_thread.Join(timeout), $"{_name} did not finish within {timeout.TotalSeconds:0} s");
            return _error ?? throw new Xunit.Sdk.XunitException($"{_name} finished without the error it should have met");
        }
    }
}

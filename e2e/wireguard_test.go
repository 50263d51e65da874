package e2e

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun"
	"golang.zx2c4.com/wireguard/tun/tuntest"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"tunnel-agent/internal/nsutil"
	"tunnel-agent/internal/probe"
	"tunnel-agent/internal/topo"
)

// newKey returns a fresh private key.
func newKey(t *testing.T) wgtypes.Key {
	t.Helper()
	k, err := wgtypes.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// writeKeyFile writes k as `wg genkey` would, mode 0600.
func writeKeyFile(t *testing.T, dir, name string, k wgtypes.Key) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(k.String()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// newWGTwoSite is newTwoSite with both site files in wireguard mode.
// It returns the server's key.
func newWGTwoSite(t *testing.T) (*twoSite, wgtypes.Key) {
	t.Helper()
	s := newTwoSite(t, topo.Options{NAT: true})
	ka, kb := newKey(t), newKey(t)
	s.cfgA = writeFile(t, s.dir, "client.yaml", s.SiteAWireGuardYAML("client", writeKeyFile(t, s.dir, "client.key", ka), kb.PublicKey().String()))
	s.cfgB = writeFile(t, s.dir, "server.yaml", s.SiteBWireGuardYAML("server", writeKeyFile(t, s.dir, "server.key", kb), ka.PublicKey().String()))
	return s, kb
}

// TestWireGuardTwoSitesThroughNAT runs both sites in wireguard mode
// through the NAT: traffic both ways, attacks, a NAT rebinding, revert.
func TestWireGuardTwoSitesThroughNAT(t *testing.T) {
	s, serverKey := newWGTwoSite(t)
	s.start(t)
	ns1 := s.siteBHost(t)
	t.Run("ping both ways", func(t *testing.T) { testWGPing(t, s, ns1) })
	t.Run("TCP 50 MB each way", func(t *testing.T) { testTCPBothWays(t, s, ns1) })
	t.Run("attacks are dropped and counted", func(t *testing.T) { testWGAttacks(t, s, ns1, serverKey) })
	t.Run("NAT mapping changes", func(t *testing.T) { testNATRebinding(t, s, ns1) })
	t.Run("SIGINT restores both hosts", func(t *testing.T) { s.stopAndCompare(t) })
}

// TestWireGuardInterop runs our agent on site B and, on gateway A, a
// standard WireGuard peer: wireguard-go on a TUN interface configured
// with wg, routing site B's LAN into it.
func TestWireGuardInterop(t *testing.T) {
	s, _ := newWGTwoSite(t)
	wgGo := wireguardGoBinary(t)
	ka := newKey(t)
	serverPub := serverPublicKey(t, s)
	s.cfgB = writeFile(t, s.dir, "server.yaml", s.SiteBWireGuardYAML("server", filepath.Join(s.dir, "server.key"), ka.PublicKey().String()))
	s.agentB = startAgent(t, s.GatewayB, s.args("up", "server")...)
	startWireGuardGo(t, s, wgGo, ka, serverPub)
	ns1 := s.siteBHost(t)
	t.Run("ping both ways", func(t *testing.T) { testWGPing(t, s, ns1) })
	t.Run("TCP 50 MB each way", func(t *testing.T) { testTCPBothWays(t, s, ns1) })
	t.Run("NAT mapping changes", func(t *testing.T) { testNATRebinding(t, s, ns1) })
	t.Run("SIGINT restores the agent's host", func(t *testing.T) {
		if code := s.agentB.stop(t, unix.SIGINT); code != 0 {
			t.Errorf("agent exit code %d:\n%s", code, s.agentB.out.String())
		}
		assertSameState(t, "gateway B after SIGINT", s.beforeB, s.dump(t, s.GatewayB))
	})
}

func testWGPing(t *testing.T, s *twoSite, ns1 netns.NsHandle) {
	hostA, hostB := s.ClientAddr.Addr(), s.SiteBHost.Addr()
	mustPingEventually(t, "client -> VPS host (first handshake)", s.client(), hostB)
	r, err := probe.Ping(s.client(), hostB, 4, 100*time.Millisecond, 2*time.Second, 84)
	mustPing(t, "client -> VPS host", r, err)
	r, err = probe.Ping(ns1, hostA, 4, 100*time.Millisecond, 2*time.Second, 84)
	mustPing(t, "VPS host -> client", r, err)
	st := s.status(t, "server")
	if st.WireGuard == nil || st.WireGuard.Peers[0].LastHandshake.IsZero() {
		t.Fatalf("server status has no WireGuard handshake: %+v", st.WireGuard)
	}
	if got := st.WireGuard.Peers[0].Endpoint; got.Addr() != s.NATOutside.Addr() {
		t.Errorf("server's WireGuard endpoint %v, want the NAT's address %v", got, s.NATOutside.Addr())
	}
}

func testTCPBothWays(t *testing.T, s *twoSite, ns1 netns.NsHandle) {
	hostA, hostB := s.ClientAddr.Addr(), s.SiteBHost.Addr()
	r, err := probe.TCPTransfer(s.client(), ns1, netip.AddrPortFrom(hostB, 5201), 50<<20, 180*time.Second)
	mustTransfer(t, "client -> VPS host", r, err)
	r, err = probe.TCPTransfer(ns1, s.client(), netip.AddrPortFrom(hostA, 5202), 50<<20, 180*time.Second)
	mustTransfer(t, "VPS host -> client", r, err)
}

// testWGAttacks sends what a wireguard-mode agent must refuse, from the
// internet side (the NAT's outside): a replayed and a tampered copy of a
// real transport datagram, a handshake from an unknown key, and a
// plain-mode datagram. Nothing may reach the VPS host, and each refusal
// must show in the server's counters.
func testWGAttacks(t *testing.T, s *twoSite, ns1 netns.NsHandle, serverKey wgtypes.Key) {
	hostA, hostB := s.ClientAddr.Addr(), s.SiteBHost.Addr()
	gwB := netip.AddrPortFrom(s.GatewayBWAN.Addr(), topo.SiteBPort)
	data := captureWGData(t, s)
	sink := udpSink(t, ns1, netip.AddrPortFrom(hostB, 5401))
	before := s.status(t, "server")
	nat := s.Handle(s.NAT)

	sendUDP(t, nat, netip.AddrPortFrom(s.NATOutside.Addr(), 40001), gwB, data) // replay
	flipped := append([]byte(nil), data...)
	flipped[len(flipped)-1] ^= 0x01
	sendUDP(t, nat, netip.AddrPortFrom(s.NATOutside.Addr(), 40002), gwB, flipped)
	sendUDP(t, nat, netip.AddrPortFrom(s.NATOutside.Addr(), 40003), gwB, // plain mode
		ipv4UDP(netip.AddrPortFrom(hostA, 7000), netip.AddrPortFrom(hostB, 5401), []byte("must not arrive")))
	unknownKeyHandshake(t, nat, serverKey.PublicKey(), gwB, hostB)

	b := before.WireGuard
	counted := eventually(8*time.Second, func() bool {
		a := s.status(t, "server").WireGuard
		return a.TransportRejected >= b.TransportRejected+2 && a.NotWireGuard > b.NotWireGuard &&
			a.HandshakeRejected > b.HandshakeRejected
	})
	after := s.status(t, "server")
	if !counted {
		t.Errorf("refusals not counted: before %+v, after %+v", *b, *after.WireGuard)
	}
	if rx0, rx1 := before.Dataplane.Peers[0].RxPackets, after.Dataplane.Peers[0].RxPackets; rx1 != rx0 || sink.others.Load() != 0 {
		t.Errorf("refused datagrams reached the LAN: injected %d -> %d, %d at the VPS host's port", rx0, rx1, sink.others.Load())
	}
}

// captureWGData sniffs gateway B's WAN for one WireGuard transport message
// carrying data from the client (a ping makes one).
func captureWGData(t *testing.T, s *twoSite) []byte {
	t.Helper()
	var fd int
	err := nsutil.Do(s.Handle(s.GatewayB), func() (err error) {
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM, int(htons(unix.ETH_P_IP)))
		return err
	})
	if err != nil {
		t.Fatalf("packet socket: %v", err)
	}
	defer unix.Close(fd)
	_ = unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Usec: 200000})
	done := make(chan struct{})
	defer close(done)
	go func() {
		for i := 0; i < 20; i++ {
			select {
			case <-done:
				return
			default:
			}
			_, _ = probe.Ping(s.client(), s.SiteBHost.Addr(), 1, 0, 300*time.Millisecond, 84)
		}
	}()
	buf := make([]byte, 65536)
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			continue
		}
		if p := wgDataPayload(buf[:n]); p != nil {
			return append([]byte(nil), p...)
		}
	}
	t.Fatal("no WireGuard data datagram to the server seen within 10s")
	return nil
}

// wgDataPayload returns the UDP payload of an IPv4 packet to the server's
// port when it is a WireGuard transport message with data, else nil.
func wgDataPayload(pkt []byte) []byte {
	if len(pkt) < 28 || pkt[0]>>4 != 4 || pkt[9] != unix.IPPROTO_UDP {
		return nil
	}
	ihl := int(pkt[0]&0x0f) * 4
	if len(pkt) < ihl+8 || binary.BigEndian.Uint16(pkt[ihl+2:]) != topo.SiteBPort {
		return nil
	}
	p := pkt[ihl+8:]
	if len(p) > 32 && p[0] == 4 {
		return p
	}
	return nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// unknownKeyHandshake runs a WireGuard peer the server does not know
// (wireguard-go in this process, its socket inside ns) and makes it send
// a handshake initiation to the server.
func unknownKeyHandshake(t *testing.T, ns netns.NsHandle, serverPub wgtypes.Key, to netip.AddrPort, dst netip.Addr) {
	t.Helper()
	ct := tuntest.NewChannelTUN()
	// Without the channel TUN's "up" event: the device must come up (and
	// open its sockets) only inside ns, below, never on another thread.
	dev := device.NewDevice(quietTUN{ct.TUN(), make(chan tun.Event)}, conn.NewStdNetBind(), device.NewLogger(device.LogLevelSilent, ""))
	t.Cleanup(dev.Close)
	k := newKey(t)
	cfg := fmt.Sprintf("private_key=%s\npublic_key=%s\nendpoint=%s\nallowed_ip=0.0.0.0/0\n",
		hex.EncodeToString(k[:]), hex.EncodeToString(serverPub[:]), to)
	if err := dev.IpcSet(cfg); err != nil {
		t.Fatalf("configure the unknown peer: %v", err)
	}
	if err := nsutil.Do(ns, dev.Up); err != nil {
		t.Fatalf("start the unknown peer: %v", err)
	}
	select {
	case ct.Outbound <- tuntest.Ping(dst, netip.MustParseAddr("192.168.111.2")):
	case <-time.After(5 * time.Second):
		t.Fatal("the unknown peer did not take a packet")
	}
}

// quietTUN is a tun.Device that reports no events.
type quietTUN struct {
	tun.Device
	events chan tun.Event
}

func (q quietTUN) Events() <-chan tun.Event { return q.events }

func (q quietTUN) Close() error {
	err := q.Device.Close()
	close(q.events)
	return err
}

// serverPublicKey reads site B's public key back from its key file.
func serverPublicKey(t *testing.T, s *twoSite) wgtypes.Key {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(s.dir, "server.key"))
	if err != nil {
		t.Fatal(err)
	}
	k, err := wgtypes.ParseKey(string(b[:44]))
	if err != nil {
		t.Fatal(err)
	}
	return k.PublicKey()
}

// wireguardGoBinary builds wireguard-go, the version in go.mod, for this
// test (skipping when wg, ip or /dev/net/tun are missing).
func wireguardGoBinary(t *testing.T) string {
	t.Helper()
	for _, tool := range []string{"wg", "ip"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (Debian: apt-get install wireguard-tools iproute2; .ci/run installs them)", tool)
		}
	}
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		t.Skipf("no /dev/net/tun: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "wireguard-go")
	if out, err := exec.Command("go", "build", "-o", bin, "golang.zx2c4.com/wireguard").CombinedOutput(); err != nil {
		t.Fatalf("build wireguard-go: %v\n%s", err, out)
	}
	return bin
}

// startWireGuardGo runs wireguard-go on a TUN interface in gateway A's
// namespace, configures it with wg as site B's peer and routes site B's
// LAN into it. Everything goes when the test ends.
func startWireGuardGo(t *testing.T, s *twoSite, bin string, key wgtypes.Key, serverPub wgtypes.Key) {
	t.Helper()
	name := fmt.Sprintf("wgi%d", os.Getpid()%100000)
	cmd := exec.Command("nsenter", "--net=/run/netns/"+s.GatewayA, bin, "-f", name)
	out := &syncBuf{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start wireguard-go: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(unix.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	sock := "/var/run/wireguard/" + name + ".sock"
	if !eventually(10*time.Second, func() bool { return exists(sock) }) {
		t.Fatalf("wireguard-go made no %s:\n%s", sock, out.String())
	}
	keyFile := writeKeyFile(t, s.dir, "wggo.key", key)
	ep := netip.AddrPortFrom(s.GatewayBWAN.Addr(), topo.SiteBPort)
	nsRun(t, s.GatewayA, "wg", "set", name, "private-key", keyFile, "listen-port", fmt.Sprint(topo.SiteAPort),
		"peer", serverPub.String(), "endpoint", ep.String(), "allowed-ips", s.SiteBLAN.String(), "persistent-keepalive", "2")
	nsRun(t, s.GatewayA, "ip", "link", "set", name, "mtu", "1420", "up")
	nsRun(t, s.GatewayA, "ip", "route", "add", s.SiteBLAN.String(), "dev", name)
}

// nsRun runs a command inside the named namespace and fails on error.
func nsRun(t *testing.T, ns string, args ...string) {
	t.Helper()
	out, err := exec.Command("nsenter", append([]string{"--net=/run/netns/" + ns}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("%v in %s: %v\n%s", args, ns, err, out)
	}
}

package wireguard

import (
	"context"
	"encoding/binary"
	"net/netip"
	"strings"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/conn/bindtest"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"tunnel-agent/dataplane"
	"tunnel-agent/dataplane/dptest"
)

// wgSite is one WireGuard-mode gateway over in-memory fakes.
type wgSite struct {
	w   *Tunnel
	cap *dptest.Capture
	inj *dptest.Injector
}

// wgPair runs two gateways joined by wireguard-go's in-memory channel
// binds: A (LAN 192.168.111.0/24, endpoint of B configured) and B (LAN
// 11.11.11.0/25, learns A).
func wgPair(t *testing.T) (a, b wgSite) {
	t.Helper()
	ka, kb := mustKey(t), mustKey(t)
	psk := mustKey(t)
	binds := bindtest.NewChannelBinds()
	a = startWG(t, binds[0], ka, PeerKeys{Public: Key(kb.PublicKey()), Preshared: Key(psk)}, dataplane.Config{
		LocalPrefixes: wgPfx("192.168.111.0/24"), ICMPSource: netip.MustParseAddr("192.168.111.1"),
		Peers: []dataplane.PeerConfig{{Name: "b", Endpoint: netip.MustParseAddrPort("127.0.0.1:1"), Prefixes: wgPfx("11.11.11.0/24")}},
	})
	b = startWG(t, binds[1], kb, PeerKeys{Public: Key(ka.PublicKey()), Preshared: Key(psk)}, dataplane.Config{
		LocalPrefixes: wgPfx("11.11.11.0/25"), ICMPSource: netip.MustParseAddr("11.11.11.1"),
		Peers: []dataplane.PeerConfig{{Name: "a", Prefixes: wgPfx("192.168.111.0/24")}},
	})
	return a, b
}

func startWG(t *testing.T, bind conn.Bind, key wgtypes.Key, peer PeerKeys, lan dataplane.Config, more ...PeerKeys) wgSite {
	t.Helper()
	s := wgSite{cap: dptest.NewCapture(), inj: dptest.NewInjector()}
	w, err := New(Config{LAN: lan, PrivateKey: Key(key), PeerKeys: append([]PeerKeys{peer}, more...)}, s.cap, s.inj)
	if err != nil {
		t.Fatal(err)
	}
	w.bind.Bind = bind
	s.w = w
	runWG(t, w)
	return s
}

// runWG runs w until the test ends, once its device is up.
func runWG(t *testing.T, w *Tunnel) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	select { // a packet captured before the device is up would be lost
	case <-w.up:
	case <-time.After(5 * time.Second):
		t.Fatal("device not up within 5s")
	}
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}

func mustKey(t *testing.T) wgtypes.Key {
	t.Helper()
	k, err := wgtypes.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func wgPfx(ss ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParsePrefix(s)
	}
	return out
}

func TestWireGuardCarriesPacketsBothWays(t *testing.T) {
	a, b := wgPair(t)
	src, dst := netip.MustParseAddr("192.168.111.2"), netip.MustParseAddr("11.11.11.100")
	a.cap.Send(dptest.EchoRequest(src, dst, 1, 1, 56))
	got, err := b.inj.Recv(5 * time.Second)
	if err != nil {
		t.Fatalf("nothing injected at B: %v", err)
	}
	if got[8] != 63 || netip.AddrFrom4([4]byte(got[16:20])) != dst {
		t.Errorf("injected TTL %d dst %v, want 63 and %v", got[8], netip.AddrFrom4([4]byte(got[16:20])), dst)
	}
	b.cap.Send(dptest.EchoRequest(dst, src, 1, 1, 56))
	if _, err := a.inj.Recv(5 * time.Second); err != nil {
		t.Fatalf("nothing injected at A (B must have learned A's endpoint): %v", err)
	}
	st := b.w.WireGuardStats()
	if st.Peers[0].LastHandshake.IsZero() || st.Peers[0].RxBytes == 0 || st.PublicKey == "" {
		t.Errorf("B's WireGuard stats lack the handshake: %+v", st)
	}
	if s := b.w.Stats(); s.Peers[0].RxPackets != 1 || s.Peers[0].TxPackets != 1 || !s.Peers[0].CurrentEndpoint.IsValid() {
		t.Errorf("B's stats: %+v", s.Peers[0])
	}
}

func TestWireGuardHopChecks(t *testing.T) {
	a, _ := wgPair(t)
	src, dst := netip.MustParseAddr("192.168.111.2"), netip.MustParseAddr("11.11.11.100")
	expiring := dptest.IPv4{Src: src, Dst: dst, TTL: 1, Proto: 17}.Marshal(make([]byte, 8))
	a.cap.Send(expiring)
	icmp := mustRecv(t, a.inj)
	if icmp[20] != 11 { // time exceeded
		t.Errorf("ICMP type %d, want time exceeded", icmp[20])
	}
	big := dptest.IPv4{Src: src, Dst: dst, TTL: 64, Proto: 17, DF: true}.Marshal(make([]byte, 1441-20))
	a.cap.Send(big)
	icmp = mustRecv(t, a.inj)
	if icmp[20] != 3 || icmp[21] != 4 || binary.BigEndian.Uint16(icmp[26:]) != 1440 { // fragmentation needed
		t.Errorf("ICMP %d/%d MTU %d, want fragmentation needed with 1440 (1500 - 60)", icmp[20], icmp[21], binary.BigEndian.Uint16(icmp[26:]))
	}
	d := a.w.Stats().Drops
	if d["ttl_expired"] != 1 || d["too_big"] != 1 {
		t.Errorf("drops %v", d)
	}
}

// TestWireGuardLANMTU: in wireguard mode too, a DF-clear packet larger
// than the LAN MTU is fragmented before injection, and a DF one is dropped,
// counted, and answered with fragmentation needed through the tunnel, as
// in plain mode (the relay queue, relayq.go).
func TestWireGuardLANMTU(t *testing.T) {
	a, b := wgPair(t)
	if err := b.w.lan.SetLANMTU(1420); err != nil {
		t.Fatal(err)
	}
	src, dst := netip.MustParseAddr("192.168.111.2"), netip.MustParseAddr("11.11.11.100")
	a.cap.Send(dptest.IPv4{Src: src, Dst: dst, TTL: 64, Proto: 17, DF: true}.Marshal(make([]byte, 1440-20)))
	a.cap.Send(dptest.IPv4{Src: src, Dst: dst, TTL: 64, Proto: 17}.Marshal(make([]byte, 1440-20)))
	f1, f2 := mustRecv(t, b.inj), mustRecv(t, b.inj)
	if len(f1) != 1420 || len(f2) != 20+1420-1400 || f1[6]&0x20 == 0 || binary.BigEndian.Uint16(f2[6:]) != 1400/8 {
		t.Errorf("injected %d and %d bytes, want the two fragments of the DF-clear packet", len(f1), len(f2))
	}
	if st := b.w.Stats(); st.Drops["too_big_lan"] != 1 || st.Fragmented != 1 || st.Fragments != 2 || st.ICMPSent != 1 {
		t.Errorf("too_big_lan %d, fragmented %d into %d, ICMP sent %d", st.Drops["too_big_lan"], st.Fragmented, st.Fragments, st.ICMPSent)
	}
	icmp := mustRecv(t, a.inj)
	if icmp[20] != 3 || icmp[21] != 4 || binary.BigEndian.Uint16(icmp[26:]) != 1420 ||
		netip.AddrFrom4([4]byte(icmp[12:16])) != netip.MustParseAddr("11.11.11.1") || netip.AddrFrom4([4]byte(icmp[16:20])) != src {
		t.Errorf("A got % x, want fragmentation needed (MTU 1420) from B's ICMP source to %v", icmp[:28], src)
	}
}

func TestWireGuardRefusesNonLocalDestination(t *testing.T) {
	a, b := wgPair(t)
	src := netip.MustParseAddr("192.168.111.2")
	a.cap.Send(dptest.EchoRequest(src, netip.MustParseAddr("11.11.11.200"), 1, 1, 8)) // outside B's /25
	a.cap.Send(dptest.EchoRequest(src, netip.MustParseAddr("11.11.11.100"), 1, 2, 8))
	got := mustRecv(t, b.inj)
	if got[16+3] != 100 {
		t.Errorf("injected %v, want only the packet to .100", got[16:20])
	}
	if d := b.w.Stats().Drops["dst_not_allowed"]; d != 1 {
		t.Errorf("dst_not_allowed = %d, want 1", d)
	}
}

func TestWireGuardClassify(t *testing.T) {
	c := newWGCounters()
	plain := dptest.EchoRequest(netip.MustParseAddr("1.1.1.1"), netip.MustParseAddr("2.2.2.2"), 1, 1, 8)
	for _, bad := range [][]byte{nil, {4}, plain, make([]byte, 148), append([]byte{1, 0, 0, 0}, make([]byte, 100)...), {4, 0, 0, 0, 1}} {
		if k := c.classify(bad); k != 0 {
			t.Errorf("classify(% x...) = %d", bad[:min(len(bad), 4)], k)
		}
	}
	if c.classify(append([]byte{1, 0, 0, 0}, make([]byte, 144)...)) != kindHandshake || c.classify(append([]byte{4, 0, 0, 0}, make([]byte, 28)...)) != kindTransport {
		t.Error("valid message shapes refused")
	}
	if c.notWireGuard.Load() != 4 || c.hsMalformed.Load() != 1 || c.transportMalformed.Load() != 1 || c.hsRx.Load() != 1 || c.transportRx.Load() != 1 || c.received.Load() != 8 {
		t.Errorf("counters %d %d %d %d %d %d", c.notWireGuard.Load(), c.hsMalformed.Load(), c.transportMalformed.Load(), c.hsRx.Load(), c.transportRx.Load(), c.received.Load())
	}
}

func TestWireGuardConfigText(t *testing.T) {
	cfg := Config{ListenPort: 51820, PrivateKey: Key{1}, PeerKeys: []PeerKeys{{Public: Key{2}}},
		LAN: dataplane.Config{Peers: []dataplane.PeerConfig{{Name: "p", Endpoint: netip.MustParseAddrPort("198.18.0.2:51820"), Prefixes: wgPfx("10.0.0.0/8"), Keepalive: 2500 * time.Millisecond}}}}
	text := uapiConfig(cfg)
	for _, want := range []string{"listen_port=51820\n", "endpoint=198.18.0.2:51820\n", "persistent_keepalive_interval=3\n", "allowed_ip=10.0.0.0/8\n"} {
		if !strings.Contains(text, want) {
			t.Errorf("config lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, "preshared_key") {
		t.Error("zero preshared key rendered")
	}
}

func mustRecv(t *testing.T, inj *dptest.Injector) []byte {
	t.Helper()
	b, err := inj.Recv(5 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

package wireguard

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"tunnel-agent/dataplane"
	"tunnel-agent/dataplane/dptest"
)

func TestWireGuardDiffText(t *testing.T) {
	pa, pb, pc := PeerKeys{Public: Key{2}}, PeerKeys{Public: Key{3}}, PeerKeys{Public: Key{4}}
	peer := func(name, pfx string, ka time.Duration) dataplane.PeerConfig {
		return dataplane.PeerConfig{Name: name, Prefixes: wgPfx(pfx), Keepalive: ka}
	}
	old := Config{PrivateKey: Key{1}, PeerKeys: []PeerKeys{pa, pb},
		LAN: dataplane.Config{Peers: []dataplane.PeerConfig{peer("a", "10.1.0.0/16", 0), peer("b", "10.2.0.0/16", 0)}}}
	if d := uapiDiff(old, old); d != "" {
		t.Errorf("no change renders %q", d)
	}
	nw := old
	nw.PrivateKey = Key{9}
	pb2 := pb
	pb2.Preshared = Key{7}
	nw.PeerKeys = []PeerKeys{pb2, pc}
	b := peer("b", "10.2.0.0/16", 25*time.Second)
	b.Endpoint = netip.MustParseAddrPort("198.18.0.3:51820")
	nw.LAN.Peers = []dataplane.PeerConfig{b, peer("c", "10.3.0.0/16", 0)}
	d := uapiDiff(old, nw)
	want := []string{
		"private_key=09" + strings.Repeat("00", 31),
		"public_key=02" + strings.Repeat("00", 31), "remove=true",
		"public_key=03" + strings.Repeat("00", 31), "preshared_key=07" + strings.Repeat("00", 31),
		"endpoint=198.18.0.3:51820", "persistent_keepalive_interval=25",
		"public_key=04" + strings.Repeat("00", 31), "persistent_keepalive_interval=0", "allowed_ip=10.3.0.0/16", "",
	}
	if got := strings.Split(d, "\n"); !slices.Equal(got, want) {
		t.Errorf("diff:\n%s\nwant:\n%s", d, strings.Join(want, "\n"))
	}
	// Prefixes: the same set in another order is no change; another set
	// replaces the peer's allowed IPs.
	nw = old
	nw.LAN.Peers = []dataplane.PeerConfig{{Name: "a", Prefixes: wgPfx("10.1.0.0/16", "10.9.0.0/16")}, old.LAN.Peers[1]}
	if d := uapiDiff(old, nw); d != "public_key=02"+strings.Repeat("00", 31)+"\nreplace_allowed_ips=true\nallowed_ip=10.1.0.0/16\nallowed_ip=10.9.0.0/16\n" {
		t.Errorf("prefix change renders %q", d)
	}
	nw2 := nw
	nw2.LAN.Peers = []dataplane.PeerConfig{{Name: "a", Prefixes: wgPfx("10.9.0.0/16", "10.1.0.1/16")}, old.LAN.Peers[1]}
	if d := uapiDiff(nw, nw2); d != "" {
		t.Errorf("same prefixes reordered render %q", d)
	}
}

// TestWireGuardReconfigureKeepsSession: a peer that stays keeps its
// session across Reconfigure (no new handshake) while another is added
// and removed, and its new prefixes take effect on both sides.
func TestWireGuardReconfigureKeepsSession(t *testing.T) {
	a, b := wgPair(t)
	src, dst := netip.MustParseAddr("192.168.111.2"), netip.MustParseAddr("11.11.11.100")
	a.cap.Send(dptest.EchoRequest(src, dst, 1, 1, 56))
	mustRecv(t, b.inj)
	hs := a.w.WireGuardStats().Peers[0].LastHandshake

	cfg := a.w.cfg
	cfg.LAN.Peers = append(slices.Clone(cfg.LAN.Peers), dataplane.PeerConfig{Name: "c", Prefixes: wgPfx("10.3.0.0/16")})
	cfg.LAN.Peers[0].Prefixes = wgPfx("11.11.11.0/24", "11.11.12.0/24")
	cfg.PeerKeys = append(slices.Clone(cfg.PeerKeys), PeerKeys{Public: Key(mustKey(t).PublicKey())})
	if err := a.w.Reconfigure(cfg); err != nil {
		t.Fatal(err)
	}
	bcfg := b.w.cfg
	bcfg.LAN.LocalPrefixes = wgPfx("11.11.11.0/25", "11.11.12.0/24")
	if err := b.w.Reconfigure(bcfg); err != nil {
		t.Fatal(err)
	}
	if st := a.w.WireGuardStats(); len(st.Peers) != 2 || st.Peers[1].Name != "c" || st.Peers[0].LastHandshake != hs {
		t.Fatalf("after adding c: %+v (handshake before %v)", st.Peers, hs)
	}
	a.cap.Send(dptest.EchoRequest(src, netip.MustParseAddr("11.11.12.7"), 1, 2, 56))
	if got := mustRecv(t, b.inj); netip.AddrFrom4([4]byte(got[16:20])) != netip.MustParseAddr("11.11.12.7") {
		t.Errorf("injected %v", got[16:20])
	}
	cfg.LAN.Peers, cfg.PeerKeys = cfg.LAN.Peers[:1], cfg.PeerKeys[:1]
	if err := a.w.Reconfigure(cfg); err != nil {
		t.Fatal(err)
	}
	a.cap.Send(dptest.EchoRequest(src, dst, 1, 3, 56))
	mustRecv(t, b.inj)
	st := a.w.WireGuardStats()
	if len(st.Peers) != 1 || st.Peers[0].LastHandshake != hs {
		t.Errorf("after removing c: %+v (handshake before %v)", st.Peers, hs)
	}
	if s := a.w.Stats(); s.Peers[0].TxPackets != 3 {
		t.Errorf("b's counters not kept across reloads: %+v", s.Peers[0])
	}
	bad := cfg
	bad.ListenPort++
	if err := a.w.Reconfigure(bad); err == nil {
		t.Error("listen port change accepted")
	}
}

// TestWireGuardPrivateKeyRotation: B takes a new private key by
// Reconfigure and A the matching public key; traffic goes on after a new
// handshake.
func TestWireGuardPrivateKeyRotation(t *testing.T) {
	a, b := wgPair(t)
	src, dst := netip.MustParseAddr("192.168.111.2"), netip.MustParseAddr("11.11.11.100")
	a.cap.Send(dptest.EchoRequest(src, dst, 1, 1, 56))
	mustRecv(t, b.inj)
	nk := mustKey(t)
	bcfg := b.w.cfg
	bcfg.PrivateKey = Key(nk)
	if err := b.w.Reconfigure(bcfg); err != nil {
		t.Fatal(err)
	}
	acfg := a.w.cfg
	acfg.PeerKeys = []PeerKeys{{Public: Key(nk.PublicKey()), Preshared: acfg.PeerKeys[0].Preshared}}
	if err := a.w.Reconfigure(acfg); err != nil {
		t.Fatal(err)
	}
	if got := b.w.WireGuardStats().PublicKey; got != nk.PublicKey().String() {
		t.Errorf("B reports public key %s, want %s", got, nk.PublicKey())
	}
	// The first packets may go while the new handshake is under way.
	deadline := time.Now().Add(10 * time.Second)
	for seq := uint16(2); ; seq++ {
		a.cap.Send(dptest.EchoRequest(src, dst, 1, seq, 56))
		if _, err := b.inj.Recv(500 * time.Millisecond); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("nothing carried after the key rotation")
		}
	}
}

// TestWireGuardInnerMTU: the inner packet limit the Router enforces
// towards each peer keeps wireguard-go's padding (to 16 bytes, capped at
// the device's MTU) within the peer's path.
func TestWireGuardInnerMTU(t *testing.T) {
	v4 := dataplane.PeerConfig{Name: "v4", Endpoint: netip.MustParseAddrPort("198.18.0.2:51820")}
	v6 := dataplane.PeerConfig{Name: "v6", Endpoint: netip.MustParseAddrPort("[2001:db8::2]:51820")}
	learned := dataplane.PeerConfig{Name: "learned"}
	for _, tc := range []struct {
		name   string
		peers  []dataplane.PeerConfig
		device int
		limits []int // the Router's inner limit per peer
	}{
		{"IPv4 only", []dataplane.PeerConfig{v4}, 1440, []int{1440}},
		{"IPv6 only", []dataplane.PeerConfig{v6}, 1420, []int{1420}},
		{"learned: IPv6 assumed", []dataplane.PeerConfig{learned}, 1420, []int{1420}},
		{"mixed: IPv6 rounded down below the device's MTU", []dataplane.PeerConfig{v4, v6, learned}, 1440, []int{1440, 1408, 1408}},
	} {
		mtu := deviceMTU(tc.peers)
		if mtu != tc.device {
			t.Errorf("%s: device MTU %d, want %d", tc.name, mtu, tc.device)
		}
		for i, p := range lanSide(dataplane.Config{Peers: tc.peers}, mtu).Peers {
			outer := outerIPv4UDP
			if p.Endpoint.IsValid() && !p.Endpoint.Addr().Is4() {
				outer = outerIPv6UDP
			}
			limit := p.PathMTU - outer
			if limit != tc.limits[i] {
				t.Errorf("%s: limit towards %s %d, want %d", tc.name, p.Name, limit, tc.limits[i])
			}
			// The largest packet allowed, padded as wireguard-go pads it,
			// fits the peer's real path.
			padded := min((limit+15)&^15, mtu)
			if padded > innerMTU(tc.peers[i]) {
				t.Errorf("%s: a %d-byte packet to %s is padded to %d, over its path's %d", tc.name, limit, p.Name, padded, innerMTU(tc.peers[i]))
			}
		}
	}
}

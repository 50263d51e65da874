package agent

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"tunnel-agent/dataplane"
	"tunnel-agent/dataplane/ebpf"
)

// TestAddProgramStats: the programs' per-peer counters and drops add to
// the engine's under the same names; what they passed up is not added
// (the engine counts those packets itself).
func TestAddProgramStats(t *testing.T) {
	eng := dataplane.Stats{
		Peers: []dataplane.PeerStats{{Name: "a", RxPackets: 1, RxBytes: 100, TxPackets: 2, TxBytes: 200},
			{Name: "b", TxPackets: 5}},
		Drops: map[string]uint64{"ttl_expired": 3, "not_from_peer": 1},
	}
	prog := ebpf.Stats{
		Peers:       []ebpf.PeerStats{{Name: "a", RxPackets: 10, RxBytes: 1000, TxPackets: 20, TxBytes: 2000}},
		Drops:       map[string]uint64{"src_not_allowed": 4, "bad_checksum": 2, "ttl_expired": 0},
		ToUserspace: map[string]uint64{"ttl_expired": 3, "unknown_sender": 1},
	}
	st := addProgramStats(eng, prog)
	if p := st.Peers[0]; p.RxPackets != 11 || p.RxBytes != 1100 || p.TxPackets != 22 || p.TxBytes != 2200 {
		t.Errorf("peer a: %+v", p)
	}
	if p := st.Peers[1]; p.TxPackets != 5 || p.RxPackets != 0 {
		t.Errorf("peer b: %+v", p)
	}
	want := map[string]uint64{"ttl_expired": 3, "not_from_peer": 1, "src_not_allowed": 4, "bad_checksum": 2}
	for r, n := range want {
		if st.Drops[r] != n {
			t.Errorf("drops[%s] = %d, want %d", r, st.Drops[r], n)
		}
	}
}

// TestEBPFPeers: learning peers take the endpoint the engine has now.
func TestEBPFPeers(t *testing.T) {
	ep := netip.MustParseAddrPort("198.18.0.9:5000")
	cfg := dataplane.Config{Peers: []dataplane.PeerConfig{{Name: "fixed", Endpoint: ep, PathMTU: 1400},
		{Name: "roaming"}}}
	learned := netip.MustParseAddrPort("198.18.0.10:6000")
	ps := ebpfPeers(cfg, map[string]netip.AddrPort{"fixed": learned, "roaming": learned})
	if ps[0].Endpoint != ep || ps[0].PathMTU != 1400 || ps[1].Endpoint != learned {
		t.Errorf("peers %+v", ps)
	}
}

// TestPrintEBPF: the status text names the hooks and the passes to
// userspace, in a stable order.
func TestPrintEBPF(t *testing.T) {
	var b strings.Builder
	printEBPF(&b, &EBPFStatus{WAN: "wan0", Repairs: 1,
		Hooks:       []ebpf.Hook{{Interface: "wan0", Program: "wan_ingress", Mode: ebpf.AttachTCX}, {Interface: "lan0", Program: "lan_ingress", Mode: ebpf.AttachTCX}},
		ToUserspace: map[string]uint64{"ttl_expired": 2, "keepalive": 5}})
	want := "ebpf: wan_ingress on wan0 (tcx), lan_ingress on lan0 (tcx); hooks put back 1\nebpf to userspace: keepalive=5 ttl_expired=2\n"
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}
}

// TestEBPFMapSizes: the programs' maps are sized for the site (a hub's
// thousands of peers and prefixes), with room for reloads that add some;
// a reload beyond that is refused before anything changes, saying to
// restart.
func TestEBPFMapSizes(t *testing.T) {
	small := ebpfConfig(netip.MustParseAddrPort("0.0.0.0:5000"), dataplane.Config{
		Peers: []dataplane.PeerConfig{{Name: "a", Prefixes: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16")}}}})
	if small.MaxPeers != 256 || small.MaxPrefixes != 4096 || small.MaxLocalPrefixes != 1024 {
		t.Errorf("a small site's maps: %d peers, %d prefixes, %d local; want the defaults 256, 4096, 1024",
			small.MaxPeers, small.MaxPrefixes, small.MaxLocalPrefixes)
	}
	hub := dataplane.Config{}
	for i := range 3000 {
		hub.Peers = append(hub.Peers, dataplane.PeerConfig{Name: fmt.Sprint("s", i), Prefixes: []netip.Prefix{
			netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), 0}), 24),
			netip.PrefixFrom(netip.AddrFrom4([4]byte{172, 16 + byte(i>>8), byte(i), 0}), 24)}})
	}
	c := ebpfConfig(netip.MustParseAddrPort("0.0.0.0:5000"), hub)
	if c.MaxPeers < 3000 || c.MaxPrefixes < 6000 {
		t.Fatalf("a hub of 3000 peers with 6000 prefixes: maps for %d peers and %d prefixes", c.MaxPeers, c.MaxPrefixes)
	}
	if err := fitsMaps(c, hub); err != nil {
		t.Errorf("the site it was sized for: %v", err)
	}
	grown := hub
	for i := range c.MaxPeers - 3000 + 1 {
		grown.Peers = append(grown.Peers, dataplane.PeerConfig{Name: fmt.Sprint("n", i)})
	}
	if err := fitsMaps(c, grown); err == nil || !strings.Contains(err.Error(), "restart") {
		t.Errorf("a reload beyond the maps: %v, want a refusal saying to restart", err)
	}
}

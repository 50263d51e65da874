package agent

import (
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

package dataplane_test

import (
	"bytes"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"tunnel-agent/dataplane"
	"tunnel-agent/dataplane/dptest"
)

// The tutorial's pair after a restart of either side, with no user traffic
// in between: west (the client, behind NAT, configured with east's
// endpoint) and east (the VPS, which knows west only as the Raspberry Pi's
// /32 and learns its endpoint). West's keepalive requests carry its LAN
// prefix, which names west at east even from an address east does not know.

// natRestartConfigs: west asks every 20 ms; east knows west by the Pi's
// address only, as configs/server.yaml does.
func natRestartConfigs() (west, east dataplane.Config) {
	west, east = westConfig(), eastConfig()
	west.Peers[0].Keepalive = 20 * time.Millisecond
	east.Peers[0].Prefixes = pfxs("192.168.111.2/32")
	return west, east
}

// eastReaches checks that a packet captured at east reaches west.
func eastReaches(t *testing.T, east, west *gateway, seq uint16) {
	t.Helper()
	reply := dptest.IPv4{Src: eastHost, Dst: westHost, Proto: 1, TTL: 64}.Marshal(dptest.ICMPEcho(40, seq, 56))
	east.capture.Send(reply)
	if got := recvInjected(t, west); !bytes.Equal(got, forwarded(reply)) {
		t.Fatalf("west injected\n% x\nwant\n% x", got, forwarded(reply))
	}
}

// waitEndpoint waits until east has west at ep.
func waitEndpoint(t *testing.T, east *gateway, ep netip.AddrPort) {
	t.Helper()
	waitFor(t, "east learns west at "+ep.String(), func() bool { return east.peerStats(t, "west").CurrentEndpoint == ep })
}

func TestRestartLearningSide(t *testing.T) {
	checkNoLeaks(t)
	nw := dptest.NewNetwork()
	natWest := ap("192.0.2.200:31000")
	nw.SetNAT(westOuter, natWest)
	wc, ec := natRestartConfigs()
	west := startGateway(t, nw, westOuter, wc)
	east := startGateway(t, nw, eastOuter, ec)

	// West never sends data: its keepalives alone teach east.
	waitEndpoint(t, east, natWest)
	eastReaches(t, east, west, 1)
	// Both sides see each other alive: west's requests, east's replies.
	waitFor(t, "liveness both ways", func() bool {
		return west.peerStats(t, "east").KeepalivesReceived > 0 && east.peerStats(t, "west").KeepalivesAnswered > 0
	})
	if s := west.peerStats(t, "east"); s.LastReceived.IsZero() {
		t.Fatalf("west never heard from east: %+v", s)
	}

	// The VPS restarts and forgets west's endpoint.
	if err := east.stop(); err != nil {
		t.Fatal(err)
	}
	east = startGateway(t, nw, eastOuter, ec)
	waitEndpoint(t, east, natWest)
	eastReaches(t, east, west, 2)

	// A forged keepalive naming no peer's prefix moves nothing.
	deliverFrom(east, "203.0.113.66:4444", dptestKeepalive(t, "8.8.8.0/24"))
	waitDrop(t, east, "not_from_peer", 1)
	if ep := east.peerStats(t, "west").CurrentEndpoint; ep != natWest {
		t.Fatalf("west moved to %v", ep)
	}
	checkOnlyDrops(t, east, map[string]uint64{"not_from_peer": 1})
	checkOnlyDrops(t, west, nil)
}

func TestRestartNATedSide(t *testing.T) {
	checkNoLeaks(t)
	nw := dptest.NewNetwork()
	before, after := ap("192.0.2.200:31000"), ap("192.0.2.201:45000") // the NAT's new mapping: another address
	nw.SetNAT(westOuter, before)
	wc, ec := natRestartConfigs()
	west := startGateway(t, nw, westOuter, wc)
	east := startGateway(t, nw, eastOuter, ec)
	waitEndpoint(t, east, before)

	// West restarts; meanwhile its NAT mapping expired and the new one is
	// on another public address (a carrier-grade NAT's pool).
	if err := west.stop(); err != nil {
		t.Fatal(err)
	}
	nw.SetNAT(westOuter, after)
	west = startGateway(t, nw, westOuter, wc)
	waitEndpoint(t, east, after)
	eastReaches(t, east, west, 1)
	checkOnlyDrops(t, east, nil)
}

// dptestKeepalive is a keepalive request carrying pfx, as an agent sends.
func dptestKeepalive(t *testing.T, p string) []byte {
	t.Helper()
	pp := netip.MustParsePrefix(p)
	b := []byte{0, 1, 0, 0, 't', 'a', 'k', 1, 4, byte(pp.Bits())}
	a := pp.Addr().As4()
	return append(append(b, a[:]...), make([]byte, 12)...)
}

// TestHubRelearnsSpokes: a relaying hub with many spokes behind NATs, each
// known to the hub by one host address inside its LAN. After the hub
// restarts, the spokes' keepalives alone teach it every endpoint again,
// and spoke-to-spoke traffic flows through it.
func TestHubRelearnsSpokes(t *testing.T) {
	checkNoLeaks(t)
	const n = 40
	nw := dptest.NewNetwork()
	hubOuter := ap("198.51.100.10:51820")
	host := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{10, 0, byte(i), 2}) }
	hubCfg := dataplane.Config{LocalPrefixes: pfxs("192.168.0.0/24"), ICMPSource: ip("192.168.0.1"), Relay: true}
	spokes := make([]*gateway, n)
	nat := make([]netip.AddrPort, n)
	for i := range n {
		hubCfg.Peers = append(hubCfg.Peers, dataplane.PeerConfig{Name: fmt.Sprint("spoke", i),
			Prefixes: []netip.Prefix{netip.PrefixFrom(host(i), 32)}})
		inside := netip.AddrPortFrom(netip.AddrFrom4([4]byte{172, 16, byte(i), 1}), 60000)
		nat[i] = netip.AddrPortFrom(netip.AddrFrom4([4]byte{192, 0, 2, byte(100 + i)}), uint16(30000+i))
		nw.SetNAT(inside, nat[i])
		spokes[i] = startGateway(t, nw, inside, dataplane.Config{
			Peers: []dataplane.PeerConfig{{Name: "hub", Endpoint: hubOuter, Keepalive: 20 * time.Millisecond,
				Prefixes: pfxs("10.0.0.0/8", "192.168.0.0/24")}},
			LocalPrefixes: []netip.Prefix{netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 0, byte(i), 0}), 24)},
		})
	}
	hub := startGateway(t, nw, hubOuter, hubCfg)
	allLearned := func() bool {
		for i, p := range hub.eng.Stats().Peers {
			if p.CurrentEndpoint != nat[i] {
				return false
			}
		}
		return true
	}
	waitFor(t, "hub learns every spoke", allLearned)
	if err := hub.stop(); err != nil {
		t.Fatal(err)
	}
	hub = startGateway(t, nw, hubOuter, hubCfg)
	waitFor(t, "restarted hub learns every spoke", allLearned)

	for _, c := range [][2]int{{0, n - 1}, {n - 1, 0}, {7, 21}} {
		pkt := dptest.UDP(dptest.IPv4{Src: host(c[0]), Dst: host(c[1]), TTL: 64}, 1, 2, make([]byte, 56))
		spokes[c[0]].capture.Send(pkt)
		want := forwarded(forwarded(pkt)) // a hop at the spoke, one at the hub
		if got := recvInjected(t, spokes[c[1]]); !bytes.Equal(got, want) {
			t.Fatalf("spoke%d → spoke%d: got\n% x\nwant\n% x", c[0], c[1], got, want)
		}
	}
	checkOnlyDrops(t, hub, nil)
	for _, p := range hub.eng.Stats().Peers {
		if p.KeepalivesReceived == 0 || p.KeepalivesAnswered == 0 {
			t.Fatalf("%s: %+v", p.Name, p)
		}
	}
}

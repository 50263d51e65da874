package dataplane_test

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"sync"
	"testing"
	"time"

	"tunnel-agent/dataplane"
	"tunnel-agent/dataplane/dptest"
)

// The tutorial's topology, outer addresses from documentation ranges:
// "west" (the client behind NAT, LAN 192.168.111.0/24) and "east" (the
// server, LAN 11.11.11.0/24).
var (
	westOuter = ap("192.0.2.1:60000")
	eastOuter = ap("198.51.100.1:50000")
	westHost  = ip("192.168.111.2")
	eastHost  = ip("11.11.11.100")
)

const timeout = 5 * time.Second

// westConfig knows east's endpoint, as the tutorial's client does.
func westConfig() dataplane.Config {
	return dataplane.Config{
		Peers:         []dataplane.PeerConfig{{Name: "east", Endpoint: eastOuter, Prefixes: pfxs("11.11.11.0/24")}},
		LocalPrefixes: pfxs("192.168.111.0/24"),
		ICMPSource:    ip("192.168.111.1"),
	}
}

// eastConfig learns west's endpoint (west may be behind NAT).
func eastConfig() dataplane.Config {
	return dataplane.Config{
		Peers:         []dataplane.PeerConfig{{Name: "west", Prefixes: pfxs("192.168.111.0/24")}},
		LocalPrefixes: pfxs("11.11.11.0/24"),
		ICMPSource:    ip("11.11.11.1"),
	}
}

// forwarded is what pkt should look like after one router hop.
func forwarded(pkt []byte) []byte {
	out := bytes.Clone(pkt)
	out[8]--
	binary.BigEndian.PutUint16(out[10:], 0)
	binary.BigEndian.PutUint16(out[10:], dptest.Checksum(out[:int(out[0]&0xf)*4]))
	return out
}

// recvInjected waits for the next packet injected by g.
func recvInjected(t *testing.T, g *gateway) []byte {
	t.Helper()
	p, err := g.injector.Recv(timeout)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestBackToBackPing(t *testing.T) {
	checkNoLeaks(t)
	nw := dptest.NewNetwork()
	west := startGateway(t, nw, westOuter, westConfig())
	east := startGateway(t, nw, eastOuter, eastConfig())

	// East cannot answer before west has shown where it is.
	reply := dptest.IPv4{Src: eastHost, Dst: westHost, Proto: 1, TTL: 64}.Marshal(dptest.ICMPEcho(40, 1, 56))
	east.capture.Send(reply)
	waitDrop(t, east, "no_endpoint", 1)

	echo := dptest.EchoRequest(westHost, eastHost, 40, 1, 56) // the tutorial's 84 bytes
	west.capture.Send(echo)
	if got := recvInjected(t, east); !bytes.Equal(got, forwarded(echo)) {
		t.Fatalf("east injected\n% x\nwant\n% x", got, forwarded(echo))
	}
	if ep := east.peerStats(t, "west").CurrentEndpoint; ep != westOuter {
		t.Fatalf("east learned %v, want %v", ep, westOuter)
	}
	if len(east.logs.find("peer endpoint learned", "peer", "west", "endpoint", westOuter.String(), "previous", "none")) != 1 {
		t.Fatal("endpoint learning not logged once")
	}

	east.capture.Send(reply)
	if got := recvInjected(t, west); !bytes.Equal(got, forwarded(reply)) {
		t.Fatalf("west injected\n% x\nwant\n% x", got, forwarded(reply))
	}
	checkPeer(t, west, "east", 1, 84, 1, 84)
	checkPeer(t, east, "west", 1, 84, 1, 84)
	checkOnlyDrops(t, west, nil)
	checkOnlyDrops(t, east, map[string]uint64{"no_endpoint": 1})
}

// checkPeer compares a peer's packet and byte counters.
func checkPeer(t *testing.T, g *gateway, name string, txP, txB, rxP, rxB uint64) {
	t.Helper()
	waitFor(t, name+" counters", func() bool {
		s := g.peerStats(t, name)
		return s.TxPackets == txP && s.TxBytes == txB && s.RxPackets == rxP && s.RxBytes == rxB
	})
	if s := g.peerStats(t, name); rxP > 0 && s.LastReceived.IsZero() {
		t.Errorf("%s: last received not set", name)
	}
}

// checkOnlyDrops asserts that exactly the given drops were counted.
func checkOnlyDrops(t *testing.T, g *gateway, want map[string]uint64) {
	t.Helper()
	for reason, n := range g.drops() {
		if n != want[reason] {
			t.Errorf("drop %s = %d, want %d", reason, n, want[reason])
		}
	}
}

// TestBackToBackBulk sends many packets both ways at once and checks that
// each direction delivers all of them, in order, with exact counters.
func TestBackToBackBulk(t *testing.T) {
	checkNoLeaks(t)
	nw := dptest.NewNetwork()
	west := startGateway(t, nw, westOuter, westConfig())
	east := startGateway(t, nw, eastOuter, eastConfig())
	west.capture.Send(dptest.EchoRequest(westHost, eastHost, 1, 0, 56)) // teaches east
	recvInjected(t, east)

	const n = 500
	var wg sync.WaitGroup
	wg.Go(func() { sendSeq(west, westHost, eastHost, n) })
	wg.Go(func() { sendSeq(east, eastHost, westHost, n) })
	stats := func() { _ = west.eng.Stats(); _ = east.eng.Stats() } // races with the path
	for i := range n {
		stats()
		expectSeq(t, east, i)
		expectSeq(t, west, i)
	}
	wg.Wait()
	checkPeer(t, west, "east", n+1, (n+1)*84, n, n*84)
	checkPeer(t, east, "west", n, n*84, n+1, (n+1)*84)
	checkOnlyDrops(t, west, nil)
	checkOnlyDrops(t, east, nil)
}

// sendSeq captures n pings with sequence numbers 0..n-1 at g.
func sendSeq(g *gateway, src, dst netip.Addr, n int) {
	for i := range n {
		g.capture.Send(dptest.EchoRequest(src, dst, 2, uint16(i), 56))
	}
}

// expectSeq checks that the next packet injected at g is ping number seq.
func expectSeq(t *testing.T, g *gateway, seq int) {
	t.Helper()
	p := recvInjected(t, g)
	if got := binary.BigEndian.Uint16(p[26:]); len(p) != 84 || got != uint16(seq) || p[8] != 63 {
		t.Fatalf("got seq %d (len %d, ttl %d), want %d", got, len(p), p[8], seq)
	}
}

// TestBackToBackNATRebinding moves west behind a NAT whose mapping then
// changes: east re-learns, and its replies follow.
func TestBackToBackNATRebinding(t *testing.T) {
	checkNoLeaks(t)
	nw := dptest.NewNetwork()
	west := startGateway(t, nw, westOuter, westConfig())
	east := startGateway(t, nw, eastOuter, eastConfig())
	echo := dptest.EchoRequest(westHost, eastHost, 3, 1, 56)
	reply := dptest.IPv4{Src: eastHost, Dst: westHost, Proto: 1, TTL: 64}.Marshal(dptest.ICMPEcho(3, 1, 56))
	for i, outside := range []netip.AddrPort{ap("203.0.113.7:41000"), ap("203.0.113.7:42000")} {
		nw.SetNAT(westOuter, outside)
		west.capture.Send(echo)
		recvInjected(t, east)
		if ep := east.peerStats(t, "west").CurrentEndpoint; ep != outside {
			t.Fatalf("round %d: east has %v, want %v", i, ep, outside)
		}
		east.capture.Send(reply)
		recvInjected(t, west)
	}
	if n := len(east.logs.find("peer endpoint learned", "endpoint", "203.0.113.7:42000", "previous", "203.0.113.7:41000")); n != 1 {
		t.Fatalf("re-learning logged %d times, want 1", n)
	}
	checkOnlyDrops(t, east, nil)
}

package dataplane_test

import (
	"bytes"
	"net/netip"
	"testing"

	"tunnel-agent/dataplane/dptest"
)

// TestLearning walks the "roaming" peer through learning, sending to the
// learned endpoint, keepalives, re-learning and attempts that must not
// move it.
func TestLearning(t *testing.T) {
	g, _, nw := fixture(t)
	r1, r2 := nw.Listen(ap("203.0.113.50:7000")), nw.Listen(ap("203.0.113.60:7001"))
	toRoam := udp4("192.168.1.5", "10.2.0.9", 64, false, 100)
	fromRoam := udp4("10.2.0.9", "192.168.1.5", 63, false, 100)

	g.capture.Send(toRoam)
	waitDrop(t, g, "no_endpoint", 1)

	// First contact: the endpoint is learned and the packet delivered.
	r1.WriteBatch([][]byte{fromRoam}, []netip.AddrPort{gwOuter})
	if got := recvInjected(t, g); !bytes.Equal(got, fromRoam) {
		t.Fatalf("injected % x", got)
	}
	expectEndpoint(t, g, r1.LocalAddr())
	expectLearnLog(t, g, r1.LocalAddr().String(), "none")
	expectDatagram(t, g, r1, toRoam)

	// A keepalive from the learned endpoint counts.
	r1.WriteBatch([][]byte{{}}, []netip.AddrPort{gwOuter})
	waitFor(t, "keepalive counted", func() bool { return g.peerStats(t, "roaming").KeepalivesReceived == 1 })

	// Re-learning: the peer shows up elsewhere (NAT rebinding).
	r2.WriteBatch([][]byte{udp4("10.2.3.4", "192.168.1.6", 63, false, 60)}, []netip.AddrPort{gwOuter})
	recvInjected(t, g)
	expectEndpoint(t, g, r2.LocalAddr())
	expectLearnLog(t, g, r2.LocalAddr().String(), r1.LocalAddr().String())
	expectDatagram(t, g, r2, toRoam)

	// A keepalive from the old endpoint is a stranger's; and neither an
	// invalid packet nor a keepalive from a new address moves the peer.
	r1.WriteBatch([][]byte{{}}, []netip.AddrPort{gwOuter})
	deliverFrom(g, "203.0.113.70:1", udp4("10.2.0.9", "8.8.8.8", 63, false, 100))
	deliverFrom(g, "203.0.113.70:1", udp4("10.1.0.9", "192.168.1.5", 63, false, 100)) // fixed's
	deliverFrom(g, "203.0.113.70:1", nil)
	waitDrop(t, g, "not_from_peer", 4)
	expectEndpoint(t, g, r2.LocalAddr())

	// A valid packet from the old endpoint moves the peer back.
	r1.WriteBatch([][]byte{fromRoam}, []netip.AddrPort{gwOuter})
	recvInjected(t, g)
	expectEndpoint(t, g, r1.LocalAddr())
	expectLearnLog(t, g, r1.LocalAddr().String(), r2.LocalAddr().String())

	s := g.peerStats(t, "roaming")
	if s.RxPackets != 3 || s.TxPackets != 2 || s.KeepalivesReceived != 1 || s.ConfiguredEndpoint.IsValid() {
		t.Fatalf("roaming stats %+v", s)
	}
	checkOnlyDrops(t, g, map[string]uint64{"no_endpoint": 1, "not_from_peer": 4})
}

func deliverFrom(g *gateway, from string, pkt []byte) {
	g.transport.Deliver(dptest.Datagram{From: ap(from), Data: pkt})
}

// expectEndpoint checks the roaming peer's current endpoint.
func expectEndpoint(t *testing.T, g *gateway, want netip.AddrPort) {
	t.Helper()
	if got := g.peerStats(t, "roaming").CurrentEndpoint; got != want {
		t.Fatalf("roaming is at %v, want %v", got, want)
	}
}

// expectLearnLog checks that the change to ep was logged exactly once.
func expectLearnLog(t *testing.T, g *gateway, ep, previous string) {
	t.Helper()
	if n := len(g.logs.find("peer endpoint learned", "peer", "roaming", "endpoint", ep, "previous", previous)); n != 1 {
		t.Fatalf("change to %s logged %d times, want 1", ep, n)
	}
}

// expectDatagram captures pkt at g and checks that r receives it.
func expectDatagram(t *testing.T, g *gateway, r *dptest.Transport, pkt []byte) {
	t.Helper()
	g.capture.Send(pkt)
	d, err := r.Recv(timeout)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(d.Data, forwarded(pkt)) {
		t.Fatalf("peer got % x", d.Data)
	}
}

// TestLearningIPv4MappedSender checks that a dual-stack socket's view of
// an IPv4 sender (::ffff:a.b.c.d) matches the IPv4 endpoint.
func TestLearningIPv4MappedSender(t *testing.T) {
	g, _, _ := fixture(t)
	deliverFrom(g, "[::ffff:203.0.113.1]:50000", udp4("10.1.0.9", "192.168.1.5", 63, false, 100))
	recvInjected(t, g)
	checkOnlyDrops(t, g, nil)
}

// TestKeepaliveRelearnsNATPort: a NAT moves the learned peer's flow to a
// new port of the same address. Its next keepalive re-teaches the port, so
// traffic towards the peer resumes before it sends any data; a keepalive
// from another address still teaches nothing.
func TestKeepaliveRelearnsNATPort(t *testing.T) {
	g, _, nw := fixture(t)
	before, after := nw.Listen(ap("203.0.113.50:7000")), nw.Listen(ap("203.0.113.50:7123"))
	before.WriteBatch([][]byte{udp4("10.2.0.9", "192.168.1.5", 63, false, 100)}, []netip.AddrPort{gwOuter})
	recvInjected(t, g)
	expectEndpoint(t, g, before.LocalAddr())

	deliverFrom(g, "203.0.113.99:7000", nil) // another address: not_from_peer
	waitDrop(t, g, "not_from_peer", 1)
	after.WriteBatch([][]byte{{}}, []netip.AddrPort{gwOuter})
	waitFor(t, "keepalive counted", func() bool { return g.peerStats(t, "roaming").KeepalivesReceived == 1 })
	expectEndpoint(t, g, after.LocalAddr())
	expectLearnLog(t, g, after.LocalAddr().String(), before.LocalAddr().String())
	expectDatagram(t, g, after, udp4("192.168.1.5", "10.2.0.9", 64, false, 100))
	checkOnlyDrops(t, g, map[string]uint64{"not_from_peer": 1})
}

// TestOnLearn: Config.OnLearn hears of each endpoint the engine learns,
// with the peer's name, and of nothing else.
func TestOnLearn(t *testing.T) {
	checkNoLeaks(t)
	nw := dptest.NewNetwork()
	type learned struct {
		peer string
		ep   netip.AddrPort
	}
	got := make(chan learned, 4)
	cfg := fixtureConfig()
	cfg.OnLearn = func(peer string, ep netip.AddrPort) { got <- learned{peer, ep} }
	g := startGateway(t, nw, gwOuter, cfg)
	r1, r2 := nw.Listen(ap("203.0.113.50:7000")), nw.Listen(ap("203.0.113.60:7001"))
	fromRoam := udp4("10.2.0.9", "192.168.1.5", 63, false, 100)
	for _, r := range []*dptest.Transport{r1, r1, r2} {
		r.WriteBatch([][]byte{fromRoam}, []netip.AddrPort{gwOuter})
		recvInjected(t, g)
	}
	for _, want := range []learned{{"roaming", r1.LocalAddr()}, {"roaming", r2.LocalAddr()}} {
		if l := <-got; l != want {
			t.Fatalf("OnLearn got %v, want %v", l, want)
		}
	}
	if len(got) != 0 {
		t.Fatalf("OnLearn called again: %v", <-got)
	}
}

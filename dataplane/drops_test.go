package dataplane_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	"tunnel-agent/dataplane"
	"tunnel-agent/dataplane/dptest"
)

// The single-gateway fixture: this gateway serves 192.168.1.0/24; peer
// "fixed" is configured at fixedOuter with path MTU 1400 and peer
// "roaming" learns its endpoint.
var (
	gwOuter    = ap("192.0.2.1:60000")
	fixedOuter = ap("203.0.113.1:50000")
	lanHost    = ip("192.168.1.5")
	gwLAN      = ip("192.168.1.1")
	fixedHost  = ip("10.1.0.9")
	roamHost   = ip("10.2.0.9")
	stranger   = ap("203.0.113.99:1234")
)

func fixtureConfig() dataplane.Config {
	return dataplane.Config{
		Peers: []dataplane.PeerConfig{
			{Name: "fixed", Endpoint: fixedOuter, Prefixes: pfxs("10.1.0.0/16"), PathMTU: 1400},
			{Name: "roaming", Prefixes: pfxs("10.2.0.0/16")},
		},
		LocalPrefixes: pfxs("192.168.1.0/24"),
		ICMPSource:    gwLAN,
	}
}

// fixture starts the gateway and a transport standing in for "fixed".
func fixture(t *testing.T) (*gateway, *dptest.Transport, *dptest.Network) {
	t.Helper()
	checkNoLeaks(t)
	nw := dptest.NewNetwork()
	g := startGateway(t, nw, gwOuter, fixtureConfig())
	return g, nw.Listen(fixedOuter), nw
}

// udp4 is a small UDP packet.
func udp4(src, dst string, ttl uint8, df bool, size int) []byte {
	return dptest.UDP(dptest.IPv4{Src: ip(src), Dst: ip(dst), TTL: ttl, DF: df}, 1000, 2000, make([]byte, size-28))
}

// notIP is 40 bytes with version nibble 5: neither IPv4 nor IPv6.
var notIP = append([]byte{0x50, 0, 0, 0, 0, 0, 59, 64}, make([]byte, 32)...)

// badChecksum is a valid-looking packet whose header checksum is off.
func badChecksum(pkt []byte) []byte {
	pkt = bytes.Clone(pkt)
	pkt[10] ^= 0x55
	return pkt
}

// TestCaptureSideDrops covers every drop of the LAN→tunnel direction and
// the ICMP errors it generates.
func TestCaptureSideDrops(t *testing.T) {
	g, fixed, _ := fixture(t)
	want := map[string]uint64{}
	capture := func(reason string, pkt []byte) {
		t.Helper()
		g.capture.Send(pkt)
		want[reason]++
		waitDrop(t, g, reason, want[reason])
	}
	capture("not_ipv4", notIP)
	capture("too_short", []byte{0x45, 0, 0, 20})
	capture("too_short", udp4("192.168.1.5", "10.1.0.9", 64, false, 100)[:99])
	capture("bad_header", badChecksum(udp4("192.168.1.5", "10.1.0.9", 64, false, 100)))
	capture("no_route", udp4("192.168.1.5", "8.8.8.8", 64, false, 100))
	capture("no_endpoint", udp4("192.168.1.5", "10.2.0.9", 64, false, 100))

	expired := udp4("192.168.1.5", "10.1.0.9", 1, false, 100)
	capture("ttl_expired", expired)
	checkICMP(t, recvInjected(t, g), 11, 0, 0, expired)
	capture("ttl_expired", udp4("192.168.1.5", "10.1.0.9", 0, false, 100))
	checkICMP(t, recvInjected(t, g), 11, 0, 0, udp4("192.168.1.5", "10.1.0.9", 0, false, 100))

	big := udp4("192.168.1.5", "10.1.0.9", 64, true, 1373) // path MTU 1400 - 28 = 1372
	capture("too_big", big)
	checkICMP(t, recvInjected(t, g), 3, 4, 1372, big)

	// No ICMP about an ICMP error, nor to a non-unicast source.
	capture("ttl_expired", dptest.IPv4{Src: lanHost, Dst: fixedHost, Proto: 1, TTL: 1}.Marshal([]byte{3, 1, 0, 0, 0, 0, 0, 0}))
	capture("ttl_expired", udp4("0.0.0.0", "10.1.0.9", 1, false, 100))

	g.transport.SetWriteError(errors.New("network is down"))
	capture("send_error", udp4("192.168.1.5", "10.1.0.9", 64, false, 100))
	g.transport.SetWriteError(nil)

	checkOnlyDrops(t, g, want)
	if s := g.eng.Stats(); s.ICMPSent != 3 || s.ICMPRateLimited != 0 {
		t.Fatalf("icmp sent %d, rate limited %d; want 3, 0", s.ICMPSent, s.ICMPRateLimited)
	}
	for reason := range want {
		if n := len(g.logs.find("packet dropped", "reason", reason)); n != 1 {
			t.Errorf("%s logged %d times, want once", reason, n)
		}
	}
	if len(g.logs.find("packet dropped", "reason", "send_error", "peer", "fixed", "err", "network is down")) != 1 {
		t.Error("send_error log lacks peer or error")
	}
	if d, err := fixed.Recv(0); err == nil {
		t.Fatalf("a dropped packet reached the peer: % x", d.Data)
	}
}

// checkICMP checks an ICMP error from the gateway about orig.
func checkICMP(t *testing.T, msg []byte, typ, code byte, mtu uint16, orig []byte) {
	t.Helper()
	if dptest.Checksum(msg[:20]) != 0 || dptest.Checksum(msg[20:]) != 0 {
		t.Fatalf("bad checksum in ICMP error % x", msg)
	}
	if !bytes.Equal(msg[12:16], gwLAN.AsSlice()) || !bytes.Equal(msg[16:20], orig[12:16]) || msg[9] != 1 {
		t.Fatalf("ICMP error addressed wrong: % x", msg[:20])
	}
	if msg[20] != typ || msg[21] != code || binary.BigEndian.Uint16(msg[26:]) != mtu {
		t.Fatalf("ICMP type/code/mtu %d/%d/%d, want %d/%d/%d", msg[20], msg[21],
			binary.BigEndian.Uint16(msg[26:]), typ, code, mtu)
	}
	if q := orig[:min(len(orig), 548)]; !bytes.Equal(msg[28:], q) {
		t.Fatalf("ICMP error quotes\n% x\nwant\n% x", msg[28:], q)
	}
}

// TestCaptureSideSends covers what passes: a packet exactly at the path
// MTU with DF, and a larger one without DF (the outer datagram will be
// fragmented by the kernel), both with TTL decremented.
func TestCaptureSideSends(t *testing.T) {
	g, fixed, _ := fixture(t)
	for _, pkt := range [][]byte{
		udp4("192.168.1.5", "10.1.0.9", 64, true, 1372),
		udp4("192.168.1.5", "10.1.0.9", 2, false, 1500),
		// Ethernet padding after the total length is not sent.
		append(udp4("192.168.1.5", "10.1.0.9", 64, true, 28), 0, 0, 0, 0, 0, 0),
	} {
		g.capture.Send(pkt)
		d, err := fixed.Recv(timeout)
		if err != nil {
			t.Fatal(err)
		}
		want := forwarded(pkt[:binary.BigEndian.Uint16(pkt[2:])])
		if d.From != gwOuter || !bytes.Equal(d.Data, want) {
			t.Fatalf("peer got from %v\n% x\nwant\n% x", d.From, d.Data, want)
		}
	}
	checkPeer(t, g, "fixed", 3, 1372+1500+28, 0, 0)
	checkOnlyDrops(t, g, nil)
}

// TestTransportSideDrops covers every drop of the tunnel→LAN direction.
func TestTransportSideDrops(t *testing.T) {
	g, _, _ := fixture(t)
	want := map[string]uint64{}
	deliver := func(reason string, from string, pkt []byte) {
		t.Helper()
		g.transport.Deliver(dptest.Datagram{From: ap(from), Data: pkt})
		want[reason]++
		waitDrop(t, g, reason, want[reason])
	}
	const fixed = "203.0.113.1:50000"
	good := udp4("10.1.0.9", "192.168.1.5", 63, false, 100)

	deliver("not_from_peer", "203.0.113.99:1234", good)                                           // fixed does not learn
	deliver("not_from_peer", "203.0.113.1:50001", good)                                           // port matters
	deliver("not_from_peer", "203.0.113.99:1234", nil)                                            // keepalive
	deliver("not_from_peer", "203.0.113.99:1234", udp4("8.8.8.8", "192.168.1.5", 63, false, 100)) // no peer's
	deliver("not_from_peer", "203.0.113.99:1234", badChecksum(udp4("10.2.0.9", "192.168.1.5", 63, false, 100)))
	deliver("not_ipv4", fixed, notIP)
	deliver("too_short", fixed, []byte{0x45})
	deliver("too_short", fixed, good[:99])
	deliver("bad_header", fixed, append(bytes.Clone(good), 0)) // total length != datagram length
	deliver("bad_header", fixed, badChecksum(good))
	deliver("src_not_allowed", fixed, udp4("10.2.0.9", "192.168.1.5", 63, false, 100)) // roaming's
	deliver("src_not_allowed", fixed, udp4("8.8.8.8", "192.168.1.5", 63, false, 100))
	deliver("dst_not_allowed", fixed, udp4("10.1.0.9", "192.168.2.5", 63, false, 100))

	g.injector.SetError(errors.New("no route to host"))
	deliver("inject_error", fixed, good)
	g.injector.SetError(nil)

	g.transport.Deliver(dptest.Datagram{From: ap(fixed), Data: good})
	if got := recvInjected(t, g); !bytes.Equal(got, good) {
		t.Fatalf("injected\n% x\nwant (TTL untouched)\n% x", got, good)
	}
	checkPeer(t, g, "fixed", 0, 0, 2, 200) // the inject_error one was received too
	checkOnlyDrops(t, g, want)
	if len(g.logs.find("packet dropped", "reason", "not_from_peer", "addr", "203.0.113.99:1234")) != 1 {
		t.Error("not_from_peer not logged once with the sender")
	}
	if len(g.logs.find("packet dropped", "reason", "src_not_allowed", "peer", "fixed", "src", "10.2.0.9")) != 1 {
		t.Error("src_not_allowed not logged once with peer and source")
	}
}

// TestDropsLoggedOncePerInterval floods one reason: one log line, every
// packet counted.
func TestDropsLoggedOncePerInterval(t *testing.T) {
	g, _, _ := fixture(t)
	for range 300 {
		g.capture.Send(udp4("192.168.1.5", "8.8.8.8", 64, false, 100))
	}
	waitDrop(t, g, "no_route", 300)
	if n := len(g.logs.find("packet dropped", "reason", "no_route")); n != 1 {
		t.Fatalf("logged %d times", n)
	}
}

// TestICMPRateLimit floods expiring packets: ICMP stays within the burst.
func TestICMPRateLimit(t *testing.T) {
	g, _, _ := fixture(t)
	const n = 400
	for range n {
		g.capture.Send(udp4("192.168.1.5", "10.1.0.9", 1, false, 100))
	}
	waitDrop(t, g, "ttl_expired", n)
	s := g.eng.Stats()
	if s.ICMPSent+s.ICMPRateLimited != n || s.ICMPRateLimited == 0 || s.ICMPSent < 50 {
		t.Fatalf("icmp sent %d, rate limited %d", s.ICMPSent, s.ICMPRateLimited)
	}
	for range s.ICMPSent {
		recvInjected(t, g)
	}
}

package dataplane

import (
	"net/netip"
	"testing"

	"tunnel-agent/dataplane/dptest"
	"tunnel-agent/dataplane/internal/header"
)

// hubConfig: a hub serving a (configured), b (learning) and c (configured,
// path MTU 600), relaying between them.
func hubConfig() Config {
	return Config{
		Peers: []PeerConfig{
			{Name: "a", Endpoint: netip.MustParseAddrPort("198.51.100.1:5000"), Prefixes: []netip.Prefix{pfx("10.1.0.0/16"), pfx("fd00:1::/48")}},
			{Name: "b", Prefixes: []netip.Prefix{pfx("10.2.0.0/16")}},
			{Name: "c", Endpoint: netip.MustParseAddrPort("[2001:db8::3]:5000"), Prefixes: []netip.Prefix{pfx("10.3.0.0/16"), pfx("fd00:3::/48")}, PathMTU: 600},
		},
		LocalPrefixes: []netip.Prefix{pfx("192.168.0.0/24"), pfx("fd00:168::/64")},
		ICMPSource:    netip.MustParseAddr("192.168.0.1"),
		ICMPSource6:   netip.MustParseAddr("fd00:168::1"),
		Relay:         true,
	}
}

func TestRelay(t *testing.T) {
	a, stranger := netip.MustParseAddrPort("198.51.100.1:5000"), netip.MustParseAddrPort("203.0.113.7:999")
	udp := func(src, dst string, ttl uint8, df bool, size int) []byte {
		return dptest.UDP(dptest.IPv4{Src: netip.MustParseAddr(src), Dst: netip.MustParseAddr(dst), TTL: ttl, DF: df}, 1, 2, make([]byte, size-28))
	}
	udp6 := func(src, dst string, hops uint8, size int) []byte {
		return dptest.UDP6(dptest.IPv6{Src: netip.MustParseAddr(src), Dst: netip.MustParseAddr(dst), HopLimit: hops}, 1, 2, make([]byte, size-48))
	}
	cases := []struct {
		name  string
		from  netip.AddrPort
		pkt   []byte
		relay bool   // Config.Relay
		to    string // peer relayed to; "" = dropped
		drop  DropReason
		icmp  uint8 // type of the ICMP error queued back to the sender; 0 = none
	}{
		{"a to c", a, udp("10.1.0.5", "10.3.0.5", 9, true, 100), true, "c", DropNone, 0},
		{"a to c over IPv6", a, udp6("fd00:1::5", "fd00:3::5", 9, 100), true, "c", DropNone, 0},
		{"relay off", a, udp("10.1.0.5", "10.3.0.5", 9, true, 100), false, "", DropDstNotAllowed, 0},
		{"back to a", a, udp("10.1.0.5", "10.1.0.7", 9, true, 100), true, "", DropDstNotAllowed, 0},
		{"nobody's", a, udp("10.1.0.5", "10.9.0.7", 9, true, 100), true, "", DropDstNotAllowed, 0},
		{"b not learned", a, udp("10.1.0.5", "10.2.0.5", 9, true, 100), true, "", DropNoEndpoint, 0},
		{"spoofed source", a, udp("10.3.0.5", "10.2.0.5", 9, true, 100), true, "", DropSrcNotAllowed, 0},
		{"ttl", a, udp("10.1.0.5", "10.3.0.5", 1, true, 100), true, "", DropTTLExpired, icmpTypeTimeExceeded},
		{"hop limit", a, udp6("fd00:1::5", "fd00:3::5", 1, 100), true, "", DropTTLExpired, icmpv6TypeTimeExceeded},
		{"df too big", a, udp("10.1.0.5", "10.3.0.5", 9, true, 600-48+1), true, "", DropTooBig, icmpTypeDestUnreachable},
		{"big without df", a, udp("10.1.0.5", "10.3.0.5", 9, false, 1000), true, "c", DropNone, 0},
		{"IPv6 beyond 1280", a, udp6("fd00:1::5", "fd00:3::5", 9, 1281), true, "", DropTooBig, icmpv6TypePacketTooBig},
		{"b learned by relaying", stranger, udp("10.2.0.5", "10.1.0.5", 9, true, 100), true, "a", DropNone, 0},
		{"stranger, relay off", stranger, udp("10.2.0.5", "10.1.0.5", 9, true, 100), false, "", DropNotFromPeer, 0},
	}
	for _, c := range cases {
		cfg := hubConfig()
		cfg.Relay = c.relay
		e, err := newEngine(cfg)
		if err != nil {
			t.Fatal(err)
		}
		s := newTransportState(4)
		s.relay.reset()
		in := append([]byte(nil), c.pkt...)
		eps := e.receive(s, c.pkt, c.from, e.eps.Load(), batchTime{})
		if len(s.out) != 0 {
			t.Errorf("%s: delivered locally", c.name)
		}
		if got := droppedAs(e); got != c.drop {
			t.Errorf("%s: dropped as %v, want %v", c.name, got, c.drop)
		}
		if c.to == "" {
			checkRelayError(t, c.name, s, c.icmp, in)
			continue
		}
		if len(s.relay.bufs) != 1 || s.relay.peer[0].name != c.to || s.relay.to[0] != eps.cur[s.relay.peer[0].idx] {
			t.Errorf("%s: relay batch %v, want one packet to %s", c.name, s.relay.to, c.to)
			continue
		}
		checkRelayed(t, c.name, in, s.relay.bufs[0])
	}
}

// droppedAs is the one drop reason counted so far, or DropNone.
func droppedAs(e *Engine) DropReason {
	for r := range e.r.ctr.drops {
		if e.r.ctr.drops[r].Load() > 0 {
			return DropReason(r)
		}
	}
	return DropNone
}

// checkRelayed: the relayed packet is the input with TTL/hop limit - 1
// (and, for IPv4, a still valid header checksum).
func checkRelayed(t *testing.T, name string, in, out []byte) {
	t.Helper()
	if in[0]>>4 == 6 {
		if out[header.IPv6OffHopLimit] != in[header.IPv6OffHopLimit]-1 || string(out[8:]) != string(in[8:]) {
			t.Errorf("%s: relayed packet changed beyond the hop limit", name)
		}
		return
	}
	if _, r := parseIPv4(out); r != DropNone || out[header.IPv4OffTTL] != in[header.IPv4OffTTL]-1 || string(out[20:]) != string(in[20:]) {
		t.Errorf("%s: relayed packet invalid (%v) or changed beyond the TTL", name, r)
	}
}

// TestRelayZeroAllocs: relaying a batch allocates nothing.
func TestRelayZeroAllocs(t *testing.T) {
	e, err := newEngine(hubConfig())
	if err != nil {
		t.Fatal(err)
	}
	e.transport, e.r.injector = nullTransport{}, dptest.Discard{}
	pkt := relayPacket()
	s := newTransportState(32)
	for i := range 32 {
		s.sizes[i] = copy(s.bufs[i], pkt)
		s.from[i] = netip.MustParseAddrPort("198.51.100.1:5000")
	}
	run := func() {
		for i := range 32 {
			copy(s.bufs[i][:20], pkt[:20])
		}
		e.decapBatch(s, 32)
	}
	if n := testing.AllocsPerRun(100, run); n != 0 {
		t.Errorf("relay batch: %v allocs", n)
	}
	if got := e.r.peers[2].ctr.txPackets.Load(); got == 0 {
		t.Error("nothing relayed to c")
	}
}

// relayPacket is a 100-byte UDP packet from a's site to c's.
func relayPacket() []byte {
	return dptest.UDP(dptest.IPv4{Src: netip.MustParseAddr("10.1.0.5"), Dst: netip.MustParseAddr("10.3.0.5"), TTL: 64}, 1, 2, make([]byte, 72))
}

// FuzzRelay runs a hub's receive path on arbitrary datagrams from peer a
// (sender 0) or a stranger: exactly one outcome per datagram, and a relayed
// packet is valid, goes to another peer that owns its destination, with
// its TTL or hop limit one less.
func FuzzRelay(f *testing.F) {
	f.Add(relayPacket(), byte(0))
	f.Add(dptest.UDP6(dptest.IPv6{Src: netip.MustParseAddr("fd00:1::5"), Dst: netip.MustParseAddr("fd00:3::5"), HopLimit: 2}, 1, 2, nil), byte(0))
	f.Add(dptest.UDP(dptest.IPv4{Src: netip.MustParseAddr("10.2.0.5"), Dst: netip.MustParseAddr("10.1.0.5"), TTL: 9}, 1, 2, nil), byte(1))
	senders := []netip.AddrPort{netip.MustParseAddrPort("198.51.100.1:5000"), netip.MustParseAddrPort("203.0.113.7:999")}
	f.Fuzz(func(t *testing.T, data []byte, sender byte) {
		e, err := newEngine(hubConfig())
		if err != nil {
			t.Fatal(err)
		}
		s := newTransportState(1)
		s.relay.reset()
		e.receive(s, append([]byte(nil), data...), senders[int(sender)%2], e.eps.Load(), batchTime{})
		relayed := len(s.relay.bufs) - s.relay.icmpN // the rest are ICMP errors about drops
		if outcomes(e)+len(s.out)+relayed != 1 || (s.relay.icmpN > 0 && outcomes(e) != 1) {
			t.Fatalf("%d drops, %d delivered, %d relayed, %d ICMP errors", outcomes(e), len(s.out), relayed, s.relay.icmpN)
		}
		if s.relay.icmpN > 0 {
			checkRelayErrorValid(t, e, data, s.relay.bufs[0], s.relay.peer[0])
			return
		}
		if relayed == 0 {
			return
		}
		out, q := s.relay.bufs[0], s.relay.peer[0]
		src, dst, total, r := parseAny(out)
		pi, _ := e.r.routes.lookup(dst)
		si, _ := e.r.routes.lookup(src)
		if r != DropNone || total != len(out) || pi != q.idx || si == q.idx {
			t.Fatalf("relayed %v -> %v to %s: %v", src, dst, q.name, r)
		}
		checkRelayed(t, "fuzz", data, out)
	})
}

// checkRelayError: nothing relayed, except the ICMP error of type typ
// (0: none) back to peer a, quoting in, with the hub's ICMP source.
func checkRelayError(t *testing.T, name string, s *transportState, typ uint8, in []byte) {
	t.Helper()
	if typ == 0 {
		if len(s.relay.bufs) != 0 {
			t.Errorf("%s: relayed to %s", name, s.relay.peer[0].name)
		}
		return
	}
	if len(s.relay.bufs) != 1 || s.relay.peer[0].name != "a" {
		t.Fatalf("%s: %d packets queued, want one ICMP error to a", name, len(s.relay.bufs))
	}
	msg := s.relay.bufs[0]
	if in[0]>>4 == 6 {
		checkGenerated6(t, in, msg, map[uint8]DropReason{icmpv6TypeTimeExceeded: DropTTLExpired, icmpv6TypePacketTooBig: DropTooBig}[typ])
		return
	}
	checkGenerated(t, in, msg, map[uint8]DropReason{icmpTypeTimeExceeded: DropTTLExpired, icmpTypeDestUnreachable: DropTooBig}[typ])
	if msg[20] != typ || (typ == icmpTypeDestUnreachable && uint16(msg[26])<<8|uint16(msg[27]) != 600-48) {
		t.Errorf("%s: ICMP type %d, MTU field % x", name, msg[20], msg[26:28])
	}
}

// checkRelayErrorValid checks an ICMP error the relay path generated
// about in: well formed, back to the peer in came from (the owner of its
// source).
func checkRelayErrorValid(t *testing.T, e *Engine, in, msg []byte, to *peer) {
	t.Helper()
	src, dst, total, r := parseAny(msg)
	isrc, _, _, _ := parseAny(in)
	if pi, _ := e.r.routes.lookup(isrc); pi != to.idx {
		t.Fatalf("ICMP error about a packet from %v to %s", isrc, to.name)
	}
	if r != DropNone || total != len(msg) || dst != isrc || (src != hubConfig().ICMPSource && src != hubConfig().ICMPSource6) {
		t.Fatalf("ICMP error %v -> %v (%v) about a packet from %v", src, dst, r, isrc)
	}
}

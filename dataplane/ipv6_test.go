package dataplane

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"

	"tunnel-agent/dataplane/dptest"
	"tunnel-agent/dataplane/internal/header"
)

// TestCaptureSeedOutcomes6 pins what each IPv6 capture seed exercises,
// and the MTU a packet too big announces: the path MTU less 28 bytes
// towards an IPv4 endpoint, less 48 towards an IPv6 one.
func TestCaptureSeedOutcomes6(t *testing.T) {
	want := map[string]struct {
		reason DropReason
		icmp   bool
		mtu    uint32
	}{
		"v6-echo": {DropNone, false, 0}, "v6-hop-expired": {DropTTLExpired, true, 0},
		"v6-too-big": {DropTooBig, true, 1372}, "v6-outer-fits": {DropNone, false, 0},
		"v6-outer-big": {DropTooBig, true, 1452}, "v6-ext-icmp-err": {DropTTLExpired, false, 0},
		"v6-frag-expired": {DropTTLExpired, false, 0}, "v6-bad-ext": {DropBadHeader, false, 0},
		"v6-padded": {DropNone, false, 0}, "v6-truncated": {DropTooShort, false, 0},
	}
	for name, pkt := range captureSeeds6() {
		e := newFuzzEngine(t)
		icmp := make([]byte, icmpBufLen)
		v := forwardOf(e, bytes.Clone(pkt), icmp)
		w := want[name]
		if v.reason != w.reason || (v.icmp > 0) != w.icmp {
			t.Errorf("%s: %v icmp %d, want %v icmp %v", name, v.reason, v.icmp, w.reason, w.icmp)
			continue
		}
		if v.icmp > 0 {
			checkGenerated6(t, pkt, icmp[:v.icmp], v.reason)
			if mtu := binary.BigEndian.Uint32(icmp[44:]); w.mtu != 0 && mtu != w.mtu {
				t.Errorf("%s: packet too big says MTU %d, want %d", name, mtu, w.mtu)
			}
		}
		if v.pkt != nil {
			checkForwarded6(t, pkt, v)
		}
	}
}

// TestTransportSeedOutcomes6 pins what each IPv6 transport seed exercises.
func TestTransportSeedOutcomes6(t *testing.T) {
	want := map[string]DropReason{
		"v6-reply": DropNone, "v6-wrong-dst": DropDstNotAllowed, "v6-learn": DropNone,
		"v6-trailing": DropBadHeader, "v6-spoofed": DropSrcNotAllowed,
	}
	for name, s := range transportSeeds6() {
		e := newFuzzEngine(t)
		st := newTransportState(1)
		e.receive(st, s.pkt, fuzzSenders[s.sender], e.eps.Load(), batchTime{})
		got := DropNone
		for r := range e.r.ctr.drops {
			if e.r.ctr.drops[r].Load() > 0 {
				got = DropReason(r)
			}
		}
		if got != want[name] || (got == DropNone) != (len(st.out) == 1) {
			t.Errorf("%s: %v (%d accepted), want %v", name, got, len(st.out), want[name])
		}
	}
}

// TestPacketTooBigFloor: a path too small for 1280-byte packets plus the
// outer headers still carries them (the outer datagram is fragmented), and
// packet too big never announces less than 1280.
func TestPacketTooBigFloor(t *testing.T) {
	cfg := fuzzConfig()
	cfg.Peers[0].PathMTU = 1300 // east, IPv4 outer: 1272 < 1280
	e, err := newEngine(cfg)
	if err != nil {
		t.Fatal(err)
	}
	h := dptest.IPv6{Src: lanHost6, Dst: farHost6, NextHeader: 17, HopLimit: 9}
	icmp := make([]byte, icmpBufLen)
	if v := forwardOf(e, h.Marshal(make([]byte, 1280-40)), icmp); v.reason != DropNone {
		t.Fatalf("1280 bytes: %v", v.reason)
	}
	v := forwardOf(e, h.Marshal(make([]byte, 1281-40)), icmp)
	if v.reason != DropTooBig || v.icmp == 0 || binary.BigEndian.Uint32(icmp[44:]) != 1280 {
		t.Fatalf("1281 bytes: %v icmp %d", v.reason, v.icmp)
	}
}

func TestMayAnswerICMPv6(t *testing.T) {
	mk := func(src, dst string, next uint8, payload []byte) ([]byte, header.IPv6) {
		pkt := dptest.IPv6{Src: netip.MustParseAddr(src), Dst: netip.MustParseAddr(dst), NextHeader: next, HopLimit: 1}.Marshal(payload)
		h, r := parseIPv6(pkt)
		if r != DropNone {
			t.Fatal(r)
		}
		return pkt, h
	}
	cases := []struct {
		name     string
		src, dst string
		next     uint8
		payload  []byte
		typ      uint8
		want     bool
	}{
		{"udp", "fd00::1", "fd00::2", 17, nil, icmpv6TypeTimeExceeded, true},
		{"echo request", "fd00::1", "fd00::2", 58, []byte{128, 0, 0, 0}, icmpv6TypeTimeExceeded, true},
		{"icmpv6 error", "fd00::1", "fd00::2", 58, []byte{1, 0, 0, 0}, icmpv6TypeTimeExceeded, false},
		{"icmpv6 without header", "fd00::1", "fd00::2", 58, nil, icmpv6TypeTimeExceeded, false},
		{"unspecified source", "::", "fd00::2", 17, nil, icmpv6TypeTimeExceeded, false},
		{"multicast source", "ff02::1", "fd00::2", 17, nil, icmpv6TypeTimeExceeded, false},
		{"multicast dst, time exceeded", "fd00::1", "ff0e::1", 17, nil, icmpv6TypeTimeExceeded, false},
		{"multicast dst, too big", "fd00::1", "ff0e::1", 17, nil, icmpv6TypePacketTooBig, true},
	}
	for _, c := range cases {
		pkt, h := mk(c.src, c.dst, c.next, c.payload)
		if got := mayAnswerICMPv6(pkt, &h, c.typ); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}

func TestBuildICMPv6ErrorQuotesAtMost1280(t *testing.T) {
	orig := dptest.IPv6{Src: lanHost6, Dst: farHost6, NextHeader: 17, HopLimit: 64}.Marshal(make([]byte, 3000))
	buf := make([]byte, icmpv6MaxLen)
	n := buildICMPv6Error(buf, gatewayLAN6, orig, icmpv6TypePacketTooBig, 0, 1400)
	if n != header.IPv6MinMTU {
		t.Fatalf("length %d, want %d", n, header.IPv6MinMTU)
	}
	checkGenerated6(t, orig, buf[:n], DropTooBig)
	if binary.BigEndian.Uint32(buf[44:]) != 1400 {
		t.Fatal("MTU field")
	}
}

func TestICMPv6DisabledWithoutSource(t *testing.T) {
	cfg := fuzzConfig()
	cfg.ICMPSource6 = netip.Addr{}
	e, err := newEngine(cfg)
	if err != nil {
		t.Fatal(err)
	}
	v := forwardOf(e, captureSeeds6()["v6-hop-expired"], make([]byte, icmpBufLen))
	if v.reason != DropTTLExpired || v.icmp != 0 {
		t.Fatalf("%v icmp %d", v.reason, v.icmp)
	}
	cfg.ICMPSource6 = netip.MustParseAddr("ff02::1")
	if _, err := newEngine(cfg); err == nil {
		t.Fatal("multicast ICMPv6 source accepted")
	}
}

func TestHotPathZeroAllocs6(t *testing.T) {
	bc := newBenchCapture(t, 32, captureSeeds6()["v6-echo"])
	if n := testing.AllocsPerRun(100, bc.run); n != 0 {
		t.Errorf("IPv6 capture batch: %v allocs", n)
	}
}

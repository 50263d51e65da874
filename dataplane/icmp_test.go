package dataplane

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"tunnel-agent/dataplane/dptest"
)

var gatewayLAN = netip.MustParseAddr("192.168.111.1")

// expectICMP builds, byte by byte and with dptest's checksum, the ICMP
// error that the gateway should send about orig.
func expectICMP(typ, code byte, mtu uint16, orig []byte) []byte {
	quote := orig[:min(len(orig), 548)]
	n := 28 + len(quote)
	want := []byte{
		0x45, 0xc0, byte(n >> 8), byte(n), 0, 0, 0, 0, 64, 1, 0, 0,
		192, 168, 111, 1, orig[12], orig[13], orig[14], orig[15],
		typ, code, 0, 0, 0, 0, byte(mtu >> 8), byte(mtu),
	}
	want = append(want, quote...)
	binary.BigEndian.PutUint16(want[10:], dptest.Checksum(want[:20]))
	binary.BigEndian.PutUint16(want[22:], dptest.Checksum(want[20:]))
	return want
}

func TestBuildTimeExceeded(t *testing.T) {
	orig := dptest.IPv4{Src: lanHost, Dst: farHost, Proto: 1, TTL: 1, DF: true}.Marshal(dptest.ICMPEcho(40, 1, 56))
	buf := make([]byte, icmpMaxLen)
	n := buildICMPv4Error(buf, gatewayLAN, orig, icmpTypeTimeExceeded, icmpCodeTTLExceeded, 0)
	want := expectICMP(11, 0, 0, orig)
	if !bytes.Equal(buf[:n], want) {
		t.Fatalf("got\n% x\nwant\n% x", buf[:n], want)
	}
	checkICMPValid(t, buf[:n])
}

func TestBuildFragNeededTruncatesTo576(t *testing.T) {
	orig := dptest.IPv4{Src: lanHost, Dst: farHost, Proto: 17, TTL: 64, DF: true}.Marshal(make([]byte, 1380))
	buf := make([]byte, icmpMaxLen)
	n := buildICMPv4Error(buf, gatewayLAN, orig, icmpTypeDestUnreachable, icmpCodeFragNeeded, 1372)
	if n != 576 {
		t.Fatalf("length %d, want 576", n)
	}
	if want := expectICMP(3, 4, 1372, orig); !bytes.Equal(buf[:n], want) {
		t.Fatalf("got\n% x\nwant\n% x", buf[:n], want)
	}
	if mtu := binary.BigEndian.Uint16(buf[26:]); mtu != 1372 {
		t.Fatalf("next-hop MTU %d", mtu)
	}
	checkICMPValid(t, buf[:n])
}

// checkICMPValid checks both checksums and that the header parses.
func checkICMPValid(t *testing.T, msg []byte) {
	t.Helper()
	if h, r := parseIPv4(msg); r != DropNone || h.TotalLen != len(msg) || h.Proto != 1 {
		t.Fatalf("ICMP error does not parse: %+v %v", h, r)
	}
	if c := dptest.Checksum(msg[20:]); c != 0 {
		t.Fatalf("ICMP checksum does not verify (%#04x)", c)
	}
}

func TestMayAnswerICMP(t *testing.T) {
	base := dptest.IPv4{Src: lanHost, Dst: farHost, Proto: 17, TTL: 1}
	with := func(f func(h *dptest.IPv4)) []byte { h := base; f(&h); return h.Marshal(make([]byte, 8)) }
	icmp := func(typ byte) []byte {
		h := base
		h.Proto = 1
		return h.Marshal([]byte{typ, 0, 0, 0, 0, 0, 0, 0})
	}
	src := func(s string) []byte { return with(func(h *dptest.IPv4) { h.Src = netip.MustParseAddr(s) }) }
	noType := base
	noType.Proto = 1
	cases := []struct {
		name string
		pkt  []byte
		want bool
	}{
		{"udp", with(func(*dptest.IPv4) {}), true},
		{"first fragment", with(func(h *dptest.IPv4) { h.MF = true }), true},
		{"non-first fragment", with(func(h *dptest.IPv4) { h.FragOffset = 1 }), false},
		{"src 0.0.0.0", src("0.0.0.0"), false},
		{"src loopback", src("127.0.0.1"), false},
		{"src multicast", src("224.0.0.5"), false},
		{"src class E", src("240.0.0.1"), false},
		{"src broadcast", src("255.255.255.255"), false},
		{"dst multicast", with(func(h *dptest.IPv4) { h.Dst = netip.MustParseAddr("239.1.1.1") }), false},
		{"echo request", icmp(8), true},
		{"echo reply", icmp(0), true},
		{"dest unreachable", icmp(3), false},
		{"time exceeded", icmp(11), false},
		{"redirect", icmp(5), false},
		{"unknown type", icmp(200), false},
		{"icmp without type byte", noType.Marshal(nil), false},
	}
	for _, c := range cases {
		pkt := c.pkt
		h, r := parseIPv4(pkt)
		if r != DropNone {
			t.Fatalf("%s: does not parse: %v", c.name, r)
		}
		if got := mayAnswerICMP(pkt[:h.TotalLen], &h); got != c.want {
			t.Errorf("%s: got %v, want %v", c.name, got, c.want)
		}
	}
}

func TestTokenBucket(t *testing.T) {
	b := newTokenBucket(10*time.Millisecond, 5)
	now := int64(time.Hour)
	for i := range 5 {
		if !b.allow(now) {
			t.Fatalf("burst event %d refused", i)
		}
	}
	if b.allow(now) {
		t.Fatal("6th event of a burst of 5 allowed")
	}
	if b.allow(now + int64(9*time.Millisecond)) {
		t.Fatal("allowed before one interval passed")
	}
	if !b.allow(now + int64(10*time.Millisecond)) {
		t.Fatal("refused after one interval")
	}
	// A long pause refills at most the burst.
	now += int64(time.Minute)
	got := 0
	for range 20 {
		if b.allow(now) {
			got++
		}
	}
	if got != 5 {
		t.Fatalf("after a pause %d allowed, want 5", got)
	}
}

func TestTokenBucketSustainedRate(t *testing.T) {
	b := newTokenBucket(icmpInterval, icmpBurst)
	got := 0
	for ms := range int64(10_000) { // 10 s, ten attempts per ms
		for range 10 {
			if b.allow(ms * int64(time.Millisecond)) {
				got++
			}
		}
	}
	if want := 100*10 + icmpBurst; got < want-2 || got > want+2 {
		t.Fatalf("%d allowed in 10 s, want about %d", got, want)
	}
}

package afpacket

import (
	"math/rand/v2"
	"net/netip"
	"testing"

	"golang.org/x/net/bpf"

	"tunnel-agent/dataplane/dptest"
)

// testIPv6 is an IPv6/UDP packet to dst, with optional extension headers.
func testIPv6(dst string, ext ...dptest.IPv6Ext) []byte {
	h := dptest.IPv6{Src: netip.MustParseAddr("fd00::1"), Dst: netip.MustParseAddr(dst), HopLimit: 64, Ext: ext}
	return dptest.UDP6(h, 1, 2, make([]byte, 8))
}

func TestCaptureMatchProgramIPv6(t *testing.T) {
	vm := matchVM(t, mustPrefixes(t, "2001:db8:1::/48", "2001:db8:2:3::7/128", "fd00:8000::/17", "198.19.0.0/16"))
	for _, c := range []struct {
		pkt  []byte
		want bool
	}{
		{testIPv6("2001:db8:1::9"), true},
		{testIPv6("2001:db8:1:ffff:ffff:ffff:ffff:ffff"), true},
		{testIPv6("2001:db8:2::9"), false},
		{testIPv6("2001:db8:2:3::7"), true},
		{testIPv6("2001:db8:2:3::8"), false},
		{testIPv6("fd00:ffff::1"), true},
		{testIPv6("fd00:7fff::1"), false},
		{testIPv4("198.19.1.1", 0), true},
		{testIPv4("198.20.1.1", 0), false},
		// Extension headers do not move the destination address.
		{testIPv6("2001:db8:1::9", dptest.IPv6Ext{Type: dptest.ExtHopByHop}, dptest.FragmentHeader(0, true, 1)), true},
		{testIPv6("2001:db8:9::9", dptest.IPv6Ext{Type: dptest.ExtRouting, Body: make([]byte, 24)}), false},
		{testIPv6("2001:db8:9::9")[:39], true}, // a runt: kept for the engine to count
	} {
		if got := accepts(t, vm, c.pkt); got != c.want {
			t.Errorf("% x: accepted=%v, want %v", c.pkt[:min(len(c.pkt), 40)], got, c.want)
		}
	}
	// An IPv4 packet is not matched against IPv6 prefixes, nor the reverse.
	v4 := testIPv4("32.1.13.184", 40) // 2001:db8 as IPv4 at offset 16
	if accepts(t, matchVM(t, mustPrefixes(t, "2001:db8::/32")), v4) {
		t.Error("IPv4 packet matched an IPv6 prefix")
	}
	if accepts(t, matchVM(t, mustPrefixes(t, "0.0.0.0/0")), testIPv6("::1")) {
		t.Error("IPv6 packet matched an IPv4 prefix")
	}
	all := matchVM(t, mustPrefixes(t, "::/0"))
	if !accepts(t, all, testIPv6("2001:db8::1")) || !accepts(t, all, testIPv6("::1")[:39]) {
		t.Error("::/0 wrong")
	}
}

// TestCaptureMatchProgramIPv6Random checks random prefix lists of every
// length against netip's own containment.
func TestCaptureMatchProgramIPv6Random(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 7))
	randAddr := func() netip.Addr {
		var b [16]byte
		for i := range b {
			b[i] = byte(r.IntN(4)) // few distinct values, so that matches happen
		}
		return netip.AddrFrom16(b)
	}
	var ps []netip.Prefix
	for range 200 {
		ps = append(ps, netip.PrefixFrom(randAddr(), 1+r.IntN(128)).Masked())
	}
	vm := matchVM(t, ps)
	for range 2000 {
		a := randAddr()
		if r.IntN(2) == 0 { // an address inside some prefix
			p := ps[r.IntN(len(ps))]
			b, pb := a.As16(), p.Addr().As16()
			for i := range p.Bits() {
				mask := byte(0x80 >> (i % 8))
				b[i/8] = b[i/8]&^mask | pb[i/8]&mask
			}
			a = netip.AddrFrom16(b)
		}
		want := false
		for _, p := range ps {
			want = want || p.Contains(a)
		}
		if got := accepts(t, vm, testIPv6(a.String())); got != want {
			t.Fatalf("%v: accepted=%v, want %v", a, got, want)
		}
	}
}

// TestCaptureFilterIPv6EtherType: the whole filter keeps IPv6 frames
// (EtherType 0x86dd) for an IPv6 prefix.
func TestCaptureFilterIPv6EtherType(t *testing.T) {
	raw, err := Filter(mustPrefixes(t, "2001:db8::/32", "198.19.0.0/16"))
	if err != nil {
		t.Fatal(err)
	}
	prog, _ := bpf.Disassemble(raw)
	vm, err := bpf.NewVM(withAncillary(prog, linuxPacketHost, etherTypeIPv6))
	if err != nil {
		t.Fatal(err)
	}
	if !accepts(t, vm, testIPv6("2001:db8::5")) || accepts(t, vm, testIPv6("2001:db9::5")) {
		t.Error("IPv6 destinations misjudged")
	}
}

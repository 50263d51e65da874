package header

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"tunnel-agent/dataplane/dptest"
)

var (
	src6 = netip.MustParseAddr("fd00:111::5")
	dst6 = netip.MustParseAddr("fd00:11::9")
)

// jumbo sets the payload length of pkt to 0, as a jumbogram has it.
func jumbo(pkt []byte) []byte {
	binary.BigEndian.PutUint16(pkt[4:], 0)
	return pkt
}

// parseCase is one packet for ParseIPv6 and what it should say of it.
type parseCase struct {
	name   string
	pkt    []byte
	want   Fault
	proto  uint8
	l4Off  int
	frag   bool
	firstF bool
}

func TestParseIPv6(t *testing.T) {
	base := dptest.IPv6{Src: src6, Dst: dst6, NextHeader: 17, HopLimit: 9}
	withExt := func(ext ...dptest.IPv6Ext) dptest.IPv6 { h := base; h.Ext = ext; return h }
	cases := []parseCase{
		{"plain", base.Marshal(make([]byte, 8)), OK, 17, 40, false, true},
		{"padded", append(base.Marshal(make([]byte, 8)), 0, 0, 0), OK, 17, 40, false, true},
		{"hop-by-hop and dest opts", withExt(dptest.IPv6Ext{Type: 0}, dptest.IPv6Ext{Type: 60, Body: make([]byte, 24)}).Marshal(make([]byte, 8)), OK, 17, 40 + 8 + 24, false, true},
		{"first fragment", withExt(dptest.FragmentHeader(0, true, 1)).Marshal(make([]byte, 8)), OK, 17, 48, true, true},
		{"later fragment", withExt(dptest.FragmentHeader(3, false, 1)).Marshal(make([]byte, 8)), OK, 17, 0, true, false},
		{"routing header", withExt(dptest.IPv6Ext{Type: 43, Body: make([]byte, 24)}).Marshal(nil), OK, 17, 64, false, true},
		{"hop-by-hop not first", withExt(dptest.IPv6Ext{Type: 60}, dptest.IPv6Ext{Type: 0}).Marshal(nil), Malformed, 0, 0, false, true},
		{"too short", base.Marshal(nil)[:39], TooShort, 0, 0, false, true},
		{"truncated payload", base.Marshal(make([]byte, 8))[:47], TooShort, 0, 0, false, true},
		{"jumbogram", jumbo(withExt(dptest.IPv6Ext{Type: 0}).Marshal(nil)), Malformed, 0, 0, false, true},
		{"extension past the end", withExt(dptest.IPv6Ext{Type: 60}).Marshal(nil)[:47], TooShort, 0, 0, false, true},
	}
	// A payload length that cuts an extension header short.
	cut := withExt(dptest.IPv6Ext{Type: 60, Body: make([]byte, 16)}).Marshal(nil)
	binary.BigEndian.PutUint16(cut[4:], 8)
	cases = append(cases, parseCase{"extension longer than payload", cut, Malformed, 0, 0, false, true})
	// A chain longer than ipv6MaxExtHeaders.
	var long []dptest.IPv6Ext
	for range ipv6MaxExtHeaders + 1 {
		long = append(long, dptest.IPv6Ext{Type: 60})
	}
	cases = append(cases, parseCase{"endless chain", withExt(long...).Marshal(nil), Malformed, 0, 0, false, true})
	for _, c := range cases {
		h, r := ParseIPv6(c.pkt)
		if r != c.want {
			t.Errorf("%s: %v, want %v", c.name, r, c.want)
			continue
		}
		if r != OK {
			continue
		}
		if h.Proto != c.proto || h.L4Off != c.l4Off || h.Fragment != c.frag || h.FirstFragment() != c.firstF ||
			h.Src != src6 || h.Dst != dst6 || h.HopLimit != 9 {
			t.Errorf("%s: %+v", c.name, h)
		}
	}
}

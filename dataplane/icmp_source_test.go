package dataplane

import (
	"net/netip"
	"testing"

	"tunnel-agent/dataplane/dptest"
)

// TestNoICMPToNonHosts: an expiring packet whose source is not one host
// (issue 12: a LAN broadcast source, for which injecting the error failed)
// is dropped without an error, and counted as icmp_bad_source; a unicast
// source still gets its error. Directed broadcasts are recognised from the
// local prefixes and the LAN's own subnets.
func TestNoICMPToNonHosts(t *testing.T) {
	cfg := fuzzConfig() // local 192.168.111.0/24, fd00:111::/64
	cfg.LocalPrefixes = append(cfg.LocalPrefixes, pfx("10.50.0.0/16"))
	cfg.LANPrefixes = []netip.Prefix{pfx("10.50.7.1/24"), pfx("192.168.111.1/32")} // the LAN's own subnet inside a local prefix
	for _, c := range []struct {
		src   string
		icmp  bool
		count bool // counted as a bad source
	}{
		{"192.168.111.2", true, false},
		{"192.168.111.255", false, true}, // the LAN's broadcast
		{"192.168.111.0", false, true},   // its network address
		{"10.50.7.255", false, true},     // a LAN subnet inside a wider local prefix
		{"10.50.255.255", false, true},
		{"10.50.7.9", true, false},
		{"255.255.255.255", false, true},
		{"224.0.0.1", false, true},
		{"0.0.0.0", false, true},
		{"127.0.0.1", false, true},
		{"240.0.0.1", false, true},
		{"fd00:111::5", true, false},
		{"fd00:111::", false, true}, // subnet-router anycast
		{"ff02::1", false, true},
		{"::", false, true},
		{"::1", false, true},
	} {
		e, err := newEngine(cfg)
		if err != nil {
			t.Fatal(err)
		}
		src := netip.MustParseAddr(c.src)
		var pkt []byte
		if src.Is4() {
			pkt = dptest.UDP(dptest.IPv4{Src: src, Dst: farHost, TTL: 1}, 1, 2, make([]byte, 8))
		} else {
			pkt = dptest.UDP6(dptest.IPv6{Src: src, Dst: farHost6, HopLimit: 1}, 1, 2, make([]byte, 8))
		}
		v := forwardOf(e, pkt, make([]byte, icmpBufLen))
		if v.reason != DropTTLExpired || (v.icmp > 0) != c.icmp || (e.r.ctr.icmpBadSource.Load() == 1) != c.count {
			t.Errorf("source %s: %v, ICMP %d bytes, bad sources counted %d; want ICMP %v, counted %v",
				c.src, v.reason, v.icmp, e.r.ctr.icmpBadSource.Load(), c.icmp, c.count)
		}
	}
}

// TestNoICMPToBroadcastDestination: a packet to a local subnet's broadcast
// address is not answered either (RFC 1812 4.3.2.7), but its source is a
// host, so it is not counted as a bad source.
func TestNoICMPToBroadcastDestination(t *testing.T) {
	cfg := fuzzConfig()
	cfg.Peers[0].Prefixes = append(cfg.Peers[0].Prefixes, pfx("192.168.200.0/24"))
	cfg.LocalPrefixes = append(cfg.LocalPrefixes, pfx("192.168.200.0/24"))
	cfg.LocalPrefixes = cfg.LocalPrefixes[1:] // 192.168.200.0/24 is local, not 192.168.111.0/24
	e, err := newEngine(cfg)
	if err != nil {
		t.Fatal(err)
	}
	pkt := dptest.UDP(dptest.IPv4{Src: lanHost, Dst: netip.MustParseAddr("192.168.200.255"), TTL: 1}, 1, 2, nil)
	v := forwardOf(e, pkt, make([]byte, icmpBufLen))
	if v.reason != DropTTLExpired || v.icmp != 0 || e.r.ctr.icmpBadSource.Load() != 0 {
		t.Errorf("%v, ICMP %d bytes, bad sources %d; want no ICMP, none counted", v.reason, v.icmp, e.r.ctr.icmpBadSource.Load())
	}
}

func TestNewNotHosts(t *testing.T) {
	m := newNotHosts([]netip.Prefix{pfx("10.1.2.3/24"), pfx("10.9.0.0/31"), pfx("10.8.0.1/32"), pfx("fd00:1::7/64"), pfx("fd00:2::1/127")})
	for _, a := range []string{"10.1.2.0", "10.1.2.255", "fd00:1::"} {
		if _, ok := m[netip.MustParseAddr(a)]; !ok {
			t.Errorf("%s missing", a)
		}
	}
	if len(m) != 3 {
		t.Errorf("%d addresses (%v), want 3: /31, /32 and /127 have no broadcast or anycast", len(m), m)
	}
}

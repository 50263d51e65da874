package dataplane

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"

	"github.com/gaissmai/bart"
)

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }

func addr(s string) netip.Addr { return netip.MustParseAddr(s) }

// tenPrefixPeers is a small nested set: default route, a /8 with more
// specific /16, /24 and /32 inside, and a few siblings.
func tenPrefixPeers() []PeerConfig {
	return []PeerConfig{
		{Name: "default", Prefixes: []netip.Prefix{pfx("0.0.0.0/0")}},
		{Name: "ten", Prefixes: []netip.Prefix{pfx("10.0.0.0/8"), pfx("172.16.0.0/12")}},
		{Name: "ten-one", Prefixes: []netip.Prefix{pfx("10.1.0.0/16"), pfx("10.1.2.3/32")}},
		{Name: "ten-one-two", Prefixes: []netip.Prefix{pfx("10.1.2.0/24"), pfx("192.168.0.0/16")}},
		{Name: "host", Prefixes: []netip.Prefix{pfx("11.11.11.100/32"), pfx("11.11.11.0/24"), pfx("2001:db8::/32")}},
	}
}

func TestPeerTableLPM(t *testing.T) {
	pt, err := newPeerTable(tenPrefixPeers())
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string]int{
		"8.8.8.8": 0, "10.9.9.9": 1, "172.31.255.255": 1, "172.32.0.1": 0,
		"10.1.9.9": 2, "10.1.2.3": 2, "10.1.2.4": 3, "192.168.1.1": 3,
		"11.11.11.100": 4, "11.11.11.1": 4, "2001:db8::1": 4,
	}
	for a, want := range cases {
		if got, ok := pt.lookup(addr(a)); !ok || got != want {
			t.Errorf("%s: got %d %v, want %d", a, got, ok, want)
		}
	}
	if _, ok := pt.lookup(addr("2001:db9::1")); ok {
		t.Error("IPv6 address outside every prefix matched")
	}
}

func TestPeerTableRejects(t *testing.T) {
	dup := []PeerConfig{
		{Name: "a", Prefixes: []netip.Prefix{pfx("10.0.0.0/8")}},
		{Name: "b", Prefixes: []netip.Prefix{pfx("10.1.2.3/8")}}, // same prefix once masked
	}
	if _, err := newPeerTable(dup); err == nil || !strings.Contains(err.Error(), `peer "a"`) {
		t.Errorf("duplicate prefix: err %v", err)
	}
	bad := []PeerConfig{{Name: "a", Prefixes: []netip.Prefix{{}}}}
	if _, err := newPeerTable(bad); err == nil {
		t.Error("invalid prefix accepted")
	}
	same := []PeerConfig{{Name: "a", Prefixes: []netip.Prefix{pfx("10.0.0.0/8"), pfx("10.0.0.0/8")}}}
	if _, err := newPeerTable(same); err != nil {
		t.Errorf("same prefix twice in one peer: %v", err)
	}
}

func TestPrefixSet(t *testing.T) {
	s, err := newPrefixSet([]netip.Prefix{pfx("192.168.111.0/24"), pfx("11.11.11.100/32")})
	if err != nil {
		t.Fatal(err)
	}
	for a, want := range map[string]bool{"192.168.111.2": true, "192.168.112.2": false,
		"11.11.11.100": true, "11.11.11.101": false} {
		if got := s.contains(addr(a)); got != want {
			t.Errorf("%s: %v", a, got)
		}
	}
	if _, err := newPrefixSet([]netip.Prefix{{}}); err == nil {
		t.Error("invalid prefix accepted")
	}
}

// manyPrefixPeers returns n distinct random IPv4 prefixes (/8 to /32)
// spread over 64 peers, and the prefixes with their peer for reference.
func manyPrefixPeers(n int) ([]PeerConfig, map[netip.Prefix]int) {
	rng := rand.New(rand.NewPCG(5, 6))
	peers := make([]PeerConfig, 64)
	for i := range peers {
		peers[i].Name = fmt.Sprint("peer", i)
	}
	ref := make(map[netip.Prefix]int, n)
	for len(ref) < n {
		a := netip.AddrFrom4([4]byte{byte(rng.Uint32()), byte(rng.Uint32()), byte(rng.Uint32()), byte(rng.Uint32())})
		p := netip.PrefixFrom(a, 8+rng.IntN(25)).Masked()
		if _, dup := ref[p]; !dup {
			i := len(ref) % len(peers)
			ref[p] = i
			peers[i].Prefixes = append(peers[i].Prefixes, p)
		}
	}
	return peers, ref
}

// bruteLPM is the reference: the longest prefix in ref containing a.
func bruteLPM(ref map[netip.Prefix]int, a netip.Addr) (int, bool) {
	best, peer := -1, 0
	for p, i := range ref {
		if p.Bits() > best && p.Contains(a) {
			best, peer = p.Bits(), i
		}
	}
	return peer, best >= 0
}

func TestPeerTable100k(t *testing.T) {
	peers, ref := manyPrefixPeers(100_000)
	pt, err := newPeerTable(peers)
	if err != nil {
		t.Fatal(err)
	}
	if pt.size() != len(ref) {
		t.Fatalf("table holds %d prefixes, want %d", pt.size(), len(ref))
	}
	rng := rand.New(rand.NewPCG(7, 8))
	probes := make([]netip.Addr, 0, 300)
	for p := range ref { // addresses inside prefixes, at random offsets
		if len(probes) == 200 {
			break
		}
		b := p.Addr().As4()
		b[3] |= byte(rng.Uint32()) & byte(0xff>>max(0, p.Bits()-24))
		probes = append(probes, netip.AddrFrom4(b))
	}
	for len(probes) < cap(probes) { // and random ones
		probes = append(probes, netip.AddrFrom4([4]byte{byte(rng.Uint32()), byte(rng.Uint32()), byte(rng.Uint32()), byte(rng.Uint32())}))
	}
	for _, a := range probes {
		got, gok := pt.lookup(a)
		want, wok := bruteLPM(ref, a)
		if got != want || gok != wok {
			t.Fatalf("%v: got %d %v, want %d %v", a, got, gok, want, wok)
		}
	}
}

// TestPrefixHashMatchesBart: the table used on 32-bit platforms answers
// every lookup as bart does, over random nested tables of both families
// (all lengths, /0 and full-length included) and probes inside and
// outside their prefixes, zones and IPv4-mapped addresses included.
func TestPrefixHashMatchesBart(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	randAddr := func(v6 bool) netip.Addr { return randNestedAddr(r, v6) }
	for round := range 50 {
		var ref bart.Table[int]
		var h prefixHash
		var probes []netip.Addr
		for i := range 1 + r.IntN(300) {
			a := randAddr(r.IntN(2) == 0)
			p := netip.PrefixFrom(a, r.IntN(a.BitLen()+1)).Masked()
			ref.Insert(p, i)
			h.insert(p, i)
			probes = append(probes, p.Addr(), a, randAddr(a.Is6()))
		}
		probes = append(probes, netip.Addr{}, addr("::ffff:10.1.2.3"), addr("2001:db8::1%eth0"))
		for _, a := range probes {
			wv, wok := ref.Lookup(a)
			if v, ok := h.lookup(a); v != wv || ok != wok {
				t.Fatalf("round %d: lookup(%v) = %d %v, bart says %d %v", round, a, v, ok, wv, wok)
			}
		}
		for p, wv := range ref.All() {
			if v, ok := h.get(p); !ok || v != wv {
				t.Fatalf("round %d: get(%v) = %d %v, want %d", round, p, v, ok, wv)
			}
		}
	}
}

// TestPrefixHashZeroAllocs: lookups allocate nothing (on 32-bit
// platforms this is what the engine's zero-allocation tests rely on).
func TestPrefixHashZeroAllocs(t *testing.T) {
	var h prefixHash
	for _, p := range []string{"10.0.0.0/8", "10.1.0.0/16", "2001:db8::/32", "2001:db8:1::/48"} {
		h.insert(pfx(p), 1)
	}
	probes := []netip.Addr{addr("10.1.2.3"), addr("11.0.0.1"), addr("2001:db8:1::1"), addr("2001:db9::1")}
	if n := testing.AllocsPerRun(100, func() {
		for _, a := range probes {
			h.lookup(a)
		}
	}); n != 0 {
		t.Fatalf("%v allocs", n)
	}
}

// randNestedAddr returns a random address in a small range of its family
// (10.0.0.0/14, fd00::/14), so that random prefixes of it nest often.
func randNestedAddr(r *rand.Rand, v6 bool) netip.Addr {
	if v6 {
		var b [16]byte
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		b[0], b[1] = 0xfd, b[1]&3
		return netip.AddrFrom16(b)
	}
	return netip.AddrFrom4([4]byte{10, byte(r.IntN(4)), byte(r.Uint32()), byte(r.Uint32())})
}

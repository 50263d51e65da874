package dataplane

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
	"time"
)

// tutorialAccepts is the tutorial's receive check (and e2e/tutorialpeer's):
// a datagram is injected only if it is at least an IPv4 header long, its
// length equals the inner total length and its version is 4.
func tutorialAccepts(d []byte) bool {
	return len(d) >= 20 && len(d) == int(binary.BigEndian.Uint16(d[2:4])) && d[0]>>4 == 4
}

func TestKeepaliveMessage(t *testing.T) {
	local := []netip.Prefix{pfx("192.168.111.0/24"), pfx("fd00:111::/64")}
	for typ, want := range map[byte]int{kaTypeRequest: 44, kaTypeReply: 44} {
		b := buildKeepalive(typ, local)
		m, ok := parseKeepalive(b)
		if len(b) != want || !isKeepalive(b) || !ok || m.typ != typ || m.prefixes() != 2 {
			t.Fatalf("type %d: % x: len %d ok %v %+v", typ, b, len(b), ok, m)
		}
		for i, p := range local {
			if got, ok := m.prefix(i); !ok || got != p {
				t.Errorf("prefix %d: %v %v, want %v", i, got, ok, p)
			}
		}
		if tutorialAccepts(b) || tutorialAccepts(b[:26]) {
			t.Error("the tutorial's receiver would inject a keepalive")
		}
		if _, why := parseIPv4(b); why == DropNone {
			t.Error("parses as IPv4")
		}
	}
	// At most kaMaxPrefixes prefixes, host bits cleared.
	many := make([]netip.Prefix, 12)
	for i := range many {
		many[i] = netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i), 0, 7}), 16)
	}
	b := buildKeepalive(kaTypeRequest, many)
	if m, ok := parseKeepalive(b); !ok || len(b) != kaMaxLen || m.prefixes() != kaMaxPrefixes {
		t.Fatalf("12 prefixes: len %d ok %v", len(b), ok)
	} else if p, _ := m.prefix(3); p != pfx("10.3.0.0/16") {
		t.Errorf("prefix 3 is %v", p)
	}
	// A reply answering a shorter request is cut to its size.
	if r := replyFor(buildKeepalive(kaTypeReply, local), 26); len(r) != 26 {
		t.Errorf("reply to a 26-byte request: %d bytes", len(r))
	} else if m, ok := parseKeepalive(r); !ok || m.prefixes() != 1 {
		t.Errorf("cut reply does not parse")
	}
}

func TestKeepaliveMalformed(t *testing.T) {
	good := buildKeepalive(kaTypeRequest, []netip.Prefix{pfx("10.1.0.0/16")})
	spoil := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(good)) }
	cases := map[string][]byte{
		"header only":    good[:kaHeaderLen],
		"partial prefix": good[:len(good)-1],
		"trailing byte":  append(bytes.Clone(good), 0),
		"nine prefixes":  append(buildKeepalive(kaTypeRequest, slices.Repeat([]netip.Prefix{pfx("10.1.0.0/16")}, 8)), good[kaHeaderLen:]...),
		"type 0":         spoil(func(b []byte) []byte { b[kaOffType] = 0; return b }),
		"type 3":         spoil(func(b []byte) []byte { b[kaOffType] = 3; return b }),
		"length field":   spoil(func(b []byte) []byte { b[3] = byte(len(b)); return b }),
		"family 5":       spoil(func(b []byte) []byte { b[kaHeaderLen] = 5; return b }),
		"IPv4 /33":       spoil(func(b []byte) []byte { b[kaHeaderLen+1] = 33; return b }),
		"IPv4 padding":   spoil(func(b []byte) []byte { b[len(b)-1] = 1; return b }),
		"IPv6 /129":      spoil(func(b []byte) []byte { b[kaHeaderLen], b[kaHeaderLen+1] = 6, 129; return b }),
	}
	for name, b := range cases {
		if !isKeepalive(b) {
			t.Errorf("%s: not recognised as a keepalive", name)
		}
		if _, ok := parseKeepalive(b); ok {
			t.Errorf("%s: parsed", name)
		}
	}
	for _, b := range [][]byte{nil, {0, 1, 0, 0, 't', 'a', 'k'}, {0, 1, 0, 0, 't', 'a', 'k', 2}, {0x45, 1, 0, 0, 't', 'a', 'k', 1}} {
		if isKeepalive(b) {
			t.Errorf("% x taken for a keepalive", b)
		}
	}
}

// attributionConfig: peers known by narrower and wider prefixes than
// their sites' LANs, two peers side by side, one with an endpoint.
func attributionConfig() Config {
	return Config{
		Peers: []PeerConfig{
			{Name: "pi", Prefixes: []netip.Prefix{pfx("192.168.111.2/32")}},
			{Name: "wide", Prefixes: []netip.Prefix{pfx("10.1.0.0/16")}},
			{Name: "left", Prefixes: []netip.Prefix{pfx("172.16.1.0/24")}},
			{Name: "right", Prefixes: []netip.Prefix{pfx("172.16.2.0/24")}},
			{Name: "v6", Prefixes: []netip.Prefix{pfx("fd00:2::5/128")}},
			{Name: "fixed", Endpoint: netip.MustParseAddrPort("198.51.100.1:5000"), Prefixes: []netip.Prefix{pfx("10.5.0.0/16")}},
		},
		LocalPrefixes: []netip.Prefix{pfx("11.11.11.0/24"), pfx("fd00:11::/64")},
	}
}

func TestKeepaliveAttribution(t *testing.T) {
	e, err := newEngine(attributionConfig())
	if err != nil {
		t.Fatal(err)
	}
	owners := map[string]string{
		"192.168.111.2/32": "pi",    // rule 1: one of its prefixes
		"192.168.111.0/24": "pi",    // rule 2: the site's LAN around it
		"192.168.0.0/16":   "pi",    // still LAN-sized
		"192.0.0.0/8":      "",      // too wide to name anyone
		"0.0.0.0/0":        "",      // too wide, and several peers inside
		"172.16.0.0/16":    "",      // two peers inside
		"172.16.1.0/24":    "left",  // rule 1
		"10.1.2.0/24":      "wide",  // rule 3: inside its prefix
		"10.5.0.0/16":      "fixed", // rule 1 (a configured peer)
		"10.9.0.0/16":      "",      // nobody's
		"fd00:2::/64":      "v6",    // rule 2, IPv6
		"fd00:2::/48":      "v6",
		"fd00::/16":        "",
		"fd00:3::/64":      "",
	}
	for p, want := range owners {
		pi, ok := e.prefixOwner(pfx(p))
		got := ""
		if ok {
			got = e.r.peers[pi].name
		}
		if got != want {
			t.Errorf("%s names %q, want %q", p, got, want)
		}
	}
	msgs := map[string]struct {
		pfxs []string
		want string
	}{
		"LAN and a stranger's":  {[]string{"192.168.111.0/24", "10.9.0.0/16"}, "pi"},
		"two peers":             {[]string{"192.168.111.0/24", "10.1.0.0/16"}, ""},
		"same peer twice":       {[]string{"172.16.1.0/25", "172.16.1.128/25"}, "left"},
		"nobody's":              {[]string{"8.8.0.0/16"}, ""},
		"wide then IPv6 inside": {[]string{"0.0.0.0/0", "fd00:2::/64"}, "v6"},
	}
	for name, c := range msgs {
		var ps []netip.Prefix
		for _, s := range c.pfxs {
			ps = append(ps, pfx(s))
		}
		m, _ := parseKeepalive(buildKeepalive(kaTypeRequest, ps))
		got := ""
		if p, ok := e.keepalivePeer(m); ok {
			got = p.name
		}
		if got != c.want {
			t.Errorf("%s: names %q, want %q", name, got, c.want)
		}
	}
}

// TestKeepaliveReceive covers what the transport direction does with each
// kind of keepalive, from known and unknown addresses.
func TestKeepaliveReceive(t *testing.T) {
	fixed, stranger := netip.MustParseAddrPort("198.51.100.1:5000"), netip.MustParseAddrPort("203.0.113.7:999")
	req := func(ps ...string) []byte {
		var pp []netip.Prefix
		for _, s := range ps {
			pp = append(pp, pfx(s))
		}
		return buildKeepalive(kaTypeRequest, pp)
	}
	reply := func(ps ...string) []byte { b := req(ps...); b[kaOffType] = kaTypeReply; return b }
	cases := []struct {
		name    string
		from    netip.AddrPort
		pkt     []byte
		peer    string // counted for this peer; "" = dropped
		learned bool   // and learned at from
		answer  bool   // a reply queued back to from
		drop    DropReason
	}{
		{"request from a configured endpoint", fixed, req("10.5.0.0/16"), "fixed", false, true, DropNone},
		{"its prefixes do not matter", fixed, req("8.8.0.0/16"), "fixed", false, true, DropNone},
		{"reply from a configured endpoint", fixed, reply("10.5.0.0/16"), "fixed", false, false, DropNone},
		{"old zero-length keepalive", fixed, []byte{}, "fixed", false, false, DropNone},
		{"malformed", fixed, req("10.5.0.0/16")[:20], "", false, false, DropBadKeepalive},
		{"request teaches a NAT'd peer", stranger, req("192.168.111.0/24"), "pi", true, true, DropNone},
		{"so does a reply", stranger, reply("fd00:2::/64"), "v6", true, false, DropNone},
		{"a configured peer is not moved", stranger, req("10.5.0.0/16"), "", false, false, DropNotFromPeer},
		{"forged: nobody's prefix", stranger, req("8.8.0.0/16"), "", false, false, DropNotFromPeer},
		{"forged: too wide", stranger, req("0.0.0.0/0"), "", false, false, DropNotFromPeer},
		{"old keepalive from a stranger", stranger, []byte{}, "", false, false, DropNotFromPeer},
	}
	for _, c := range cases {
		e, err := newEngine(attributionConfig())
		if err != nil {
			t.Fatal(err)
		}
		s := newTransportState(4)
		in := bytes.Clone(c.pkt)
		eps := e.receive(s, c.pkt, c.from, e.eps.Load(), batchTime{wall: 1})
		if got := droppedAs(e); got != c.drop {
			t.Errorf("%s: dropped as %v, want %v", c.name, got, c.drop)
		}
		if len(s.out) != 0 {
			t.Errorf("%s: injected", c.name)
		}
		for i := range e.r.peers {
			p := &e.r.peers[i]
			counted := p.ctr.keepalivesRx.Load() == 1 && p.ctr.lastRx.Load() == 1
			if counted != (p.name == c.peer) {
				t.Errorf("%s: peer %s counted %v", c.name, p.name, counted)
			}
			if learned := !p.configured.IsValid() && eps.cur[i] == c.from; learned != (c.learned && p.name == c.peer) {
				t.Errorf("%s: peer %s at %v", c.name, p.name, eps.cur[i])
			}
		}
		if !c.answer {
			if len(s.relay.bufs) != 0 {
				t.Errorf("%s: answered % x", c.name, s.relay.bufs[0])
			}
			continue
		}
		if len(s.relay.bufs) != 1 || s.relay.to[0] != c.from || s.relay.peer[0].name != c.peer {
			t.Errorf("%s: replies %d to %v", c.name, len(s.relay.bufs), s.relay.to)
			continue
		}
		r := s.relay.bufs[0]
		m, ok := parseKeepalive(r)
		if !ok || m.typ != kaTypeReply || len(r) > len(in) {
			t.Errorf("%s: reply % x to a %d-byte request", c.name, r, len(in))
		} else if p, _ := m.prefix(0); p != pfx("11.11.11.0/24") {
			t.Errorf("%s: reply names %v", c.name, p)
		}
	}
}

// TestKeepaliveReplyLimit: a flood of requests naming one peer gets
// kaReplyBurst replies at once and one per kaReplyInterval after; each
// request held back is counted.
func TestKeepaliveReplyLimit(t *testing.T) {
	e, err := newEngine(attributionConfig())
	if err != nil {
		t.Fatal(err)
	}
	fixed := netip.MustParseAddrPort("198.51.100.1:5000")
	replies := func(n int, now time.Duration) int {
		s := newTransportState(n)
		for range n {
			e.receive(s, buildKeepalive(kaTypeRequest, []netip.Prefix{pfx("10.5.0.0/16")}), fixed, e.eps.Load(), batchTime{mono: int64(now)})
		}
		return len(s.relay.bufs)
	}
	if got := replies(20, 0); got != kaReplyBurst {
		t.Fatalf("%d replies to a burst of 20, want %d", got, kaReplyBurst)
	}
	if got := replies(20, kaReplyInterval); got != 1 {
		t.Fatalf("%d replies one interval later, want 1", got)
	}
	if got := e.r.ctr.kaRepliesLimited.Load(); got != 34 {
		t.Fatalf("%d counted as rate limited, want 34", got)
	}
}

// TestKeepaliveZeroAllocs: a batch of keepalives from a peer's endpoint,
// answered, and a batch of strangers' keepalives naming peers (attributed,
// then refused or already learned) allocate nothing, on 64-bit and 32-bit
// platforms alike. (Moving an endpoint allocates its new snapshot; that
// happens once per move, not per packet.)
func TestKeepaliveZeroAllocs(t *testing.T) {
	for _, name := range []string{"ka-request", "ka-configured"} {
		seed := transportSeeds()[name]
		bt := newBenchTransport(t, 32)
		for i := range bt.s.sizes {
			bt.s.sizes[i] = copy(bt.s.bufs[i], seed.pkt)
			bt.s.from[i] = fuzzSenders[seed.sender]
		}
		if n := testing.AllocsPerRun(100, bt.run); n != 0 {
			t.Errorf("%s batch: %v allocs", name, n)
		}
	}
}

// TestCoverIndexMatchesBruteForce: the owners of the prefixes inside a
// prefix, found by the index, agree with a scan of every peer prefix,
// over random nested tables of both families.
func TestCoverIndexMatchesBruteForce(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	randPrefix := func(v6 bool) netip.Prefix {
		a := randNestedAddr(r, v6)
		return netip.PrefixFrom(a, 8+r.IntN(a.BitLen()-7)).Masked()
	}
	for round := range 200 {
		peers := make([]PeerConfig, 1+r.IntN(5))
		for i := range peers {
			for range 1 + r.IntN(6) {
				peers[i].Prefixes = append(peers[i].Prefixes, randPrefix(r.IntN(3) == 0))
			}
		}
		ix := newCoverIndex(peers)
		for range 50 {
			q := randPrefix(r.IntN(3) == 0)
			q = netip.PrefixFrom(q.Addr(), r.IntN(q.Bits()+1)).Masked()
			owners := map[int]bool{}
			for i, p := range peers {
				for _, pp := range p.Prefixes {
					if pp.Addr().Is4() == q.Addr().Is4() && pp.Bits() >= q.Bits() && q.Contains(pp.Addr()) {
						owners[i] = true
					}
				}
			}
			owner, found, unique := ix.inside(q)
			if found != (len(owners) > 0) || unique != (len(owners) == 1) || (unique && !owners[owner]) {
				t.Fatalf("round %d: inside(%v) = %d %v %v, brute force owners %v (peers %v)", round, q, owner, found, unique, owners, peers)
			}
		}
	}
}

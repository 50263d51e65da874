package dataplane

import (
	"bytes"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"tunnel-agent/dataplane/dptest"
	"tunnel-agent/dataplane/internal/header"
)

// fuzzConfig is the tutorial's client side plus a learning peer and a peer
// reached over IPv6, so that every branch of both directions is reachable.
func fuzzConfig() Config {
	return Config{
		Peers: []PeerConfig{
			{Name: "east", Endpoint: netip.MustParseAddrPort("198.51.100.1:50000"), Prefixes: []netip.Prefix{pfx("11.11.11.0/24"), pfx("fd00:11::/48")}, PathMTU: 1400},
			{Name: "roaming", Prefixes: []netip.Prefix{pfx("10.2.0.0/16"), pfx("fd00:2::/48")}},
			{Name: "v6", Endpoint: netip.MustParseAddrPort("[2001:db8::1]:50000"), Prefixes: []netip.Prefix{pfx("10.3.0.0/16"), pfx("fd00:3::/48")}},
		},
		LocalPrefixes: []netip.Prefix{pfx("192.168.111.0/24"), pfx("fd00:111::/64")},
		ICMPSource:    gatewayLAN,
		ICMPSource6:   gatewayLAN6,
	}
}

// fuzzSenders are the outer sources FuzzTransport picks from.
var fuzzSenders = []netip.AddrPort{
	netip.MustParseAddrPort("198.51.100.1:50000"),  // east
	netip.MustParseAddrPort("203.0.113.9:4000"),    // a stranger (or roaming's new home)
	netip.MustParseAddrPort("[2001:db8::1]:50000"), // v6
}

func newFuzzEngine(t testing.TB) *Engine {
	e, err := newEngine(fuzzConfig())
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// FuzzCapture runs the LAN→tunnel decision on arbitrary bytes and checks
// its invariants: a forwarded packet is the input trimmed to its total
// length with TTL-1 and a valid checksum; an ICMP error is well formed.
func FuzzCapture(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		e := newFuzzEngine(t)
		pkt, icmp := bytes.Clone(data), make([]byte, icmpBufLen)
		v := forwardOf(e, pkt, icmp)
		if v.reason >= numDropReasons || (v.reason == DropNone) != (v.pkt != nil) {
			t.Fatalf("verdict %+v", v)
		}
		if v.pkt != nil {
			checkForwarded(t, data, v)
		}
		if v.icmp > 0 {
			checkGenerated(t, data, icmp[:v.icmp], v.reason)
		}
	})
}

// checkForwarded checks a packet the engine decided to send.
func checkForwarded(t *testing.T, in []byte, v verdict) {
	if in[0]>>4 == 6 {
		checkForwarded6(t, in, v)
		return
	}
	h, r := parseIPv4(v.pkt)
	if r != DropNone || h.TotalLen != len(v.pkt) || v.peer == nil || !v.addr.IsValid() {
		t.Fatalf("forwarded packet invalid: %v %+v", r, h)
	}
	want := bytes.Clone(in[:len(v.pkt)])
	want[header.IPv4OffTTL]--
	copy(want[header.IPv4OffChecksum:], v.pkt[header.IPv4OffChecksum:header.IPv4OffChecksum+2])
	if !bytes.Equal(v.pkt, want) || in[header.IPv4OffTTL] < 2 {
		t.Fatalf("forwarded\n% x\nfrom\n% x", v.pkt, in)
	}
}

// checkGenerated checks an ICMP error generated about in.
func checkGenerated(t *testing.T, in, msg []byte, reason DropReason) {
	if in[0]>>4 == 6 {
		checkGenerated6(t, in, msg, reason)
		return
	}
	h, r := parseIPv4(msg)
	if r != DropNone || h.TotalLen != len(msg) || len(msg) > icmpMaxLen || header.Checksum(msg[20:], 0) != 0 {
		t.Fatalf("ICMP error invalid: %v % x", r, msg)
	}
	if reason != DropTTLExpired && reason != DropTooBig {
		t.Fatalf("ICMP error for %v", reason)
	}
	if !bytes.HasPrefix(in, msg[28:]) || !bytes.Equal(msg[16:20], in[12:16]) {
		t.Fatal("ICMP error does not quote the packet or goes elsewhere")
	}
}

// FuzzTransport runs the tunnel→LAN decision on an arbitrary datagram from
// one of fuzzSenders and checks that exactly one outcome is counted and
// that an accepted packet is the datagram itself, valid and allowed.
func FuzzTransport(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte, sender uint8) {
		e := newFuzzEngine(t)
		from := fuzzSenders[int(sender)%len(fuzzSenders)]
		s := newTransportState(1)
		eps := e.receive(s, bytes.Clone(data), from, e.eps.Load(), batchTime{})
		if outcomes(e)+len(s.out) != 1 {
			t.Fatalf("%d drops + %d accepted for one datagram", outcomes(e), len(s.out))
		}
		if len(s.out) == 1 {
			checkAccepted(t, e, data, s.out[0], s.peers[0], eps, from)
		}
		checkKeepaliveReplies(t, data, s, eps)
	})
}

// checkKeepaliveReplies: a keepalive reply answers only a well-formed
// request, goes back where it came from, to the peer now there, and is
// no longer than the request.
func checkKeepaliveReplies(t *testing.T, in []byte, s *transportState, eps *endpoints) {
	for i, b := range s.relay.bufs {
		if keepaliveType(b) != kaTypeReply {
			continue
		}
		m, ok := parseKeepalive(in)
		if !isKeepalive(in) || !ok || m.typ != kaTypeRequest || len(b) > len(in) {
			t.Fatalf("reply % x to % x", b, in)
		}
		if eps.cur[s.relay.peer[i].idx] != s.relay.to[i] {
			t.Fatalf("reply to %v, peer at %v", s.relay.to[i], eps.cur[s.relay.peer[i].idx])
		}
	}
}

// FuzzKeepalive: the keepalive parser never panics, and what it accepts
// re-encodes to a message that parses to the same prefixes.
func FuzzKeepalive(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		if !isKeepalive(data) {
			return
		}
		m, ok := parseKeepalive(data)
		if !ok {
			return
		}
		var ps []netip.Prefix
		for i := range m.prefixes() {
			p, ok := m.prefix(i)
			if !ok || p != p.Masked() {
				t.Fatalf("prefix %d of an accepted message: %v %v", i, p, ok)
			}
			ps = append(ps, p)
		}
		again, ok := parseKeepalive(buildKeepalive(m.typ, ps))
		if !ok || again.typ != m.typ || again.prefixes() != len(ps) {
			t.Fatalf("re-encoding of % x does not parse back", data)
		}
		for i, p := range ps {
			if q, _ := again.prefix(i); q != p {
				t.Fatalf("prefix %d: %v became %v", i, p, q)
			}
		}
	})
}

// outcomes counts drops and keepalives so far.
func outcomes(e *Engine) int {
	n := 0
	for i := range e.r.ctr.drops {
		n += int(e.r.ctr.drops[i].Load())
	}
	for i := range e.r.peers {
		n += int(e.r.peers[i].ctr.keepalivesRx.Load())
	}
	return n
}

// checkAccepted checks a packet the engine decided to inject.
func checkAccepted(t *testing.T, e *Engine, in, out []byte, p *peer, eps *endpoints, from netip.AddrPort) {
	src, dst, total, r := parseAny(out)
	if r != DropNone || !bytes.Equal(in, out) || total != len(in) {
		t.Fatalf("accepted invalid or modified packet: %v", r)
	}
	if pi, owned := e.r.routes.lookup(src); (!owned || pi != p.idx) && !relatedError(e, out, p) || !e.r.local.contains(dst) {
		t.Fatalf("accepted %v → %v from peer %s", src, dst, p.name)
	}
	if eps.cur[p.idx] != from {
		t.Fatalf("accepted from %v while peer is at %v", from, eps.cur[p.idx])
	}
}

// relatedError reports whether pkt is an ICMP error about a packet sent to
// p, which is admitted from any source no peer owns.
func relatedError(e *Engine, pkt []byte, p *peer) bool {
	if pkt[0]>>4 == 6 {
		h, _ := parseIPv6(pkt)
		return e.r.relatedError6(pkt, &h, p)
	}
	h, _ := parseIPv4(pkt)
	return e.r.relatedError4(pkt, &h, p)
}

var updateSeeds = flag.Bool("update-seeds", false, "rewrite testdata/fuzz seed corpora")

// TestFuzzSeeds keeps the checked-in seed corpora equal to fuzzSeeds;
// run with -update-seeds after changing them.
func TestFuzzSeeds(t *testing.T) {
	for name, body := range fuzzSeeds() {
		path := filepath.Join("testdata", "fuzz", name)
		if *updateSeeds {
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if got, err := os.ReadFile(path); err != nil || string(got) != body {
			t.Errorf("%s is stale or missing (%v): run go test -run TestFuzzSeeds -update-seeds", path, err)
		}
	}
}

// fuzzSeeds returns the seed corpus files by path under testdata/fuzz.
func fuzzSeeds() map[string]string {
	seeds := map[string]string{}
	for name, pkt := range captureSeeds() {
		seeds["FuzzCapture/"+name] = fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", pkt)
	}
	for name, pkt := range captureSeeds6() {
		seeds["FuzzCapture/"+name] = fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", pkt)
	}
	for name, s := range transportSeeds6() {
		seeds["FuzzTransport/"+name] = fmt.Sprintf("go test fuzz v1\n[]byte(%q)\nbyte(%q)\n", s.pkt, s.sender)
	}
	for name, s := range transportSeeds() {
		seeds["FuzzTransport/"+name] = fmt.Sprintf("go test fuzz v1\n[]byte(%q)\nbyte(%q)\n", s.pkt, s.sender)
		if isKeepalive(s.pkt) {
			seeds["FuzzKeepalive/"+name] = fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", s.pkt)
		}
	}
	return seeds
}

func captureSeeds() map[string][]byte {
	v4 := func(h dptest.IPv4, n int) []byte { return h.Marshal(make([]byte, n)) }
	east := dptest.IPv4{Src: lanHost, Dst: farHost, Proto: 17, TTL: 64}
	df, frag, opts, expired := east, east, east, east
	df.DF, frag.FragOffset, frag.TTL, opts.Options, expired.TTL = true, 100, 1, []byte{7, 3, 4, 0}, 1
	roam, v6 := east, east
	roam.Dst, v6.Dst = netip.MustParseAddr("10.2.0.9"), netip.MustParseAddr("10.3.0.9")
	return map[string][]byte{
		"tutorial-echo":  bytes.Clone(tutorial),
		"ttl-expired":    v4(expired, 30),
		"df-too-big":     v4(df, 1400),
		"big-no-df":      v4(east, 1400),
		"non-first-frag": v4(frag, 30),
		"options":        v4(opts, 8),
		"padded":         append(v4(east, 1), make([]byte, 17)...),
		"no-endpoint":    v4(roam, 8),
		"ipv6-outer":     v4(v6, 1400),
		"truncated":      bytes.Clone(tutorial[:50]),
		"ipv6":           append([]byte{0x60, 0, 0, 0, 0, 0, 59, 64}, make([]byte, 32)...),
		"not-ip":         append([]byte{0x50, 0, 0, 0, 0, 0, 59, 64}, make([]byte, 32)...),
	}
}

type transportSeed struct {
	pkt    []byte
	sender byte
}

func transportSeeds() map[string]transportSeed {
	reply := dptest.EchoRequest(farHost, lanHost, 40, 1, 56)
	reply[20] = 0 // echo reply; its checksum does not matter here
	roam := dptest.EchoRequest(netip.MustParseAddr("10.2.0.9"), lanHost, 1, 1, 56)
	kaEast := buildKeepalive(kaTypeRequest, []netip.Prefix{pfx("11.11.11.0/24"), pfx("fd00:11::/48")})
	kaRoam := buildKeepalive(kaTypeRequest, []netip.Prefix{pfx("10.2.0.0/16")})
	kaReply := buildKeepalive(kaTypeReply, []netip.Prefix{pfx("fd00:2::/64")})
	kaBad := bytes.Clone(kaRoam)
	kaBad[kaHeaderLen] = 5 // family
	return map[string]transportSeed{
		"ka-request":        {kaEast, 0},
		"ka-learn":          {kaRoam, 1},
		"ka-reply-learn":    {kaReply, 1},
		"ka-configured":     {kaEast, 1},
		"ka-bad-family":     {kaBad, 0},
		"ka-short":          {kaRoam[:kaHeaderLen+3], 2},
		"tutorial-reply":    {reply, 0},
		"learn-roaming":     {roam, 1},
		"keepalive":         {nil, 0},
		"keepalive-unknown": {nil, 1},
		"trailing-byte":     {append(bytes.Clone(reply), 0), 0},
		"wrong-peer":        {roam, 0},
		"truncated":         {reply[:83], 2},
		"total-len-zero":    {append([]byte{0x45, 0, 0, 0}, reply[4:]...), 0},
		"related-icmp":      {relatedICMPSeed(), 0},
	}
}

// relatedICMPSeed is a fragmentation-needed error from a router of east's
// site whose address is nobody's prefix, about a packet sent to east.
func relatedICMPSeed() []byte {
	buf := make([]byte, icmpBufLen)
	orig := dptest.EchoRequest(lanHost, farHost, 40, 1, 1400)
	return buf[:buildICMPv4Error(buf, netip.MustParseAddr("198.18.5.5"), orig, icmpTypeDestUnreachable, icmpCodeFragNeeded, 1372)]
}

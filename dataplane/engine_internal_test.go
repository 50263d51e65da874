package dataplane

import (
	"net/netip"
	"testing"

	"tunnel-agent/dataplane/dptest"
)

var (
	lanHost  = netip.MustParseAddr("192.168.111.2")
	farHost  = netip.MustParseAddr("11.11.11.100")
	tutorial = dptest.EchoRequest(lanHost, farHost, 40, 1, 56) // ping's "56(84) bytes"
)

// forwardOf runs the capture side's checks on pkt, with ICMP buffer icmp,
// and returns the verdict.
func forwardOf(e *Engine, pkt, icmp []byte) verdict {
	var v verdict
	e.r.forward(&v, pkt, e.eps.Load(), icmp, 0)
	return v
}

// TestEngineCountsWhatCaptureKeeps: the frames the capture's filter keeps
// whatever their destination so that the engine counts them (afpacket's
// TestCaptureKeepsMalformed) are dropped as not_ipv4 and too_short.
func TestEngineCountsWhatCaptureKeeps(t *testing.T) {
	v5 := dptest.IPv4{Src: lanHost, Dst: netip.MustParseAddr("192.0.2.9"), TTL: 64, Proto: 17}.Marshal(make([]byte, 12))
	v5[0] = 0x55
	runt := dptest.IPv4{Src: lanHost, Dst: netip.MustParseAddr("198.19.1.1"), TTL: 64, Proto: 17}.Marshal(nil)[:12]
	e := newFuzzEngine(t)
	for i, c := range []struct {
		pkt  []byte
		want DropReason
	}{{v5, DropNotIPv4}, {runt, DropTooShort}} {
		if v := forwardOf(e, c.pkt, make([]byte, icmpBufLen)); v.reason != c.want {
			t.Errorf("frame %d: the engine drops it as %v, want %v", i, v.reason, c.want)
		}
	}
}

// TestCaptureSeedOutcomes pins what each capture seed exercises.
func TestCaptureSeedOutcomes(t *testing.T) {
	want := map[string]struct {
		reason DropReason
		icmp   bool
	}{
		"tutorial-echo": {DropNone, false}, "ttl-expired": {DropTTLExpired, true},
		"df-too-big": {DropTooBig, true}, "big-no-df": {DropNone, false},
		"non-first-frag": {DropTTLExpired, false}, "options": {DropNone, false},
		"padded": {DropNone, false}, "no-endpoint": {DropNoEndpoint, false},
		"ipv6-outer": {DropNone, false}, "truncated": {DropTooShort, false},
		"ipv6": {DropNoRoute, false}, "not-ip": {DropNotIPv4, false},
	}
	for name, pkt := range captureSeeds() {
		e := newFuzzEngine(t)
		v := forwardOf(e, pkt, make([]byte, icmpBufLen))
		if w := want[name]; v.reason != w.reason || (v.icmp > 0) != w.icmp {
			t.Errorf("%s: %v icmp %d, want %v icmp %v", name, v.reason, v.icmp, w.reason, w.icmp)
		}
	}
}

// TestTransportSeedOutcomes pins what each transport seed exercises.
func TestTransportSeedOutcomes(t *testing.T) {
	want := map[string]DropReason{ // DropNone: accepted or keepalive
		"tutorial-reply": DropNone, "learn-roaming": DropNone, "keepalive": DropNone,
		"keepalive-unknown": DropNotFromPeer, "trailing-byte": DropBadHeader,
		"wrong-peer": DropSrcNotAllowed, "truncated": DropTooShort, "total-len-zero": DropBadHeader,
		"related-icmp": DropNone,
		"ka-request":   DropNone, "ka-learn": DropNone, "ka-reply-learn": DropNone,
		"ka-configured": DropNotFromPeer, "ka-bad-family": DropBadKeepalive, "ka-short": DropBadKeepalive,
	}
	for name, s := range transportSeeds() {
		e := newFuzzEngine(t)
		e.receive(newTransportState(1), s.pkt, fuzzSenders[s.sender], e.eps.Load(), batchTime{})
		got := DropNone
		for r := range e.r.ctr.drops {
			if e.r.ctr.drops[r].Load() > 0 {
				got = DropReason(r)
			}
		}
		if got != want[name] {
			t.Errorf("%s: %v, want %v", name, got, want[name])
		}
	}
}

// TestPathMTUByOuterFamily: the outer overhead is 28 bytes towards an IPv4
// endpoint and 48 towards an IPv6 one.
func TestPathMTUByOuterFamily(t *testing.T) {
	cases := []struct {
		dst  string
		size int
		want DropReason
		mtu  uint16
	}{
		{"11.11.11.9", 1372, DropNone, 0}, {"11.11.11.9", 1373, DropTooBig, 1372}, // east: 1400 - 28
		{"10.3.0.9", 1452, DropNone, 0}, {"10.3.0.9", 1453, DropTooBig, 1452}, // v6: 1500 - 48
	}
	for _, c := range cases {
		e := newFuzzEngine(t)
		h := dptest.IPv4{Src: lanHost, Dst: netip.MustParseAddr(c.dst), Proto: 17, TTL: 9, DF: true}
		icmp := make([]byte, icmpMaxLen)
		v := forwardOf(e, h.Marshal(make([]byte, c.size-20)), icmp)
		if v.reason != c.want || (v.icmp > 0 && uint16(icmp[26])<<8|uint16(icmp[27]) != c.mtu) {
			t.Errorf("%s size %d: %v (icmp %d)", c.dst, c.size, v.reason, v.icmp)
		}
	}
}

// TestICMPDisabledWithoutSource: no ICMPSource, no ICMP, still dropped.
func TestICMPDisabledWithoutSource(t *testing.T) {
	cfg := fuzzConfig()
	cfg.ICMPSource = netip.Addr{}
	e, err := newEngine(cfg)
	if err != nil {
		t.Fatal(err)
	}
	v := forwardOf(e, captureSeeds()["ttl-expired"], make([]byte, icmpMaxLen))
	if v.reason != DropTTLExpired || v.icmp != 0 {
		t.Fatalf("%v icmp %d", v.reason, v.icmp)
	}
}

// TestLogSlot: one line per interval, suppressed ones counted.
func TestLogSlot(t *testing.T) {
	var s logSlot
	if ok, n := s.allow(0); !ok || n != 0 {
		t.Fatal("first line refused")
	}
	for i := range 5 {
		if ok, _ := s.allow(int64(i)); ok {
			t.Fatal("second line within the interval allowed")
		}
	}
	if ok, n := s.allow(logEvery); !ok || n != 5 {
		t.Fatalf("after the interval: %v, %d suppressed; want true, 5", ok, n)
	}
}

// Per-packet work must not allocate: checked here on whole batches, and
// reported by the benchmarks in bench_test.go.
func TestHotPathZeroAllocs(t *testing.T) {
	bc := newBenchCapture(t, 32, tutorial)
	if n := testing.AllocsPerRun(100, bc.run); n != 0 {
		t.Errorf("capture batch: %v allocs", n)
	}
	bt := newBenchTransport(t, 32)
	if n := testing.AllocsPerRun(100, bt.run); n != 0 {
		t.Errorf("transport batch: %v allocs", n)
	}
	drops := newBenchCapture(t, 32, captureSeeds()["no-endpoint"]) // drop and log path
	if n := testing.AllocsPerRun(100, drops.run); n != 0 {
		t.Errorf("dropping batch: %v allocs", n)
	}
}

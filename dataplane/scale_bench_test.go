package dataplane

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"tunnel-agent/dataplane/dptest"
)

// Hub scale: 1,000 peers with 100 prefixes each, and smaller tables for
// comparison. docs/performance.md ("Hub scale") has the figures.

// scalePrefix is the k-th distinct prefix of a scale table: /24s from
// 10.0.0.0 up for IPv4, /48s under fd00::/16 for IPv6.
func scalePrefix(k int, v6 bool) netip.Prefix {
	if v6 {
		return netip.PrefixFrom(netip.AddrFrom16([16]byte{0xfd, 0, byte(k >> 16), byte(k >> 8), byte(k)}), 48)
	}
	v := 0x0a000000 + uint32(k)<<8
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), 0}), 24)
}

// scaleConfig is a hub with peers peers of per prefixes each, every peer
// with a configured endpoint, and relaying on.
func scaleConfig(peers, per int, v6 bool) Config {
	cfg := Config{LocalPrefixes: []netip.Prefix{pfx("192.168.0.0/24")}, ICMPSource: netip.MustParseAddr("192.168.0.1"), Relay: true}
	for i := range peers {
		pc := PeerConfig{Name: fmt.Sprintf("site%d", i), Keepalive: 25 * time.Second,
			Endpoint: netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)}), 50000)}
		for j := range per {
			pc.Prefixes = append(pc.Prefixes, scalePrefix(i*per+j, v6))
		}
		cfg.Peers = append(cfg.Peers, pc)
	}
	return cfg
}

// scaleAddrs returns n addresses inside random prefixes of the table.
func scaleAddrs(n, prefixes int, v6 bool) []netip.Addr {
	r := rand.New(rand.NewPCG(1, 2))
	out := make([]netip.Addr, n)
	for i := range out {
		a := scalePrefix(r.IntN(prefixes), v6).Addr()
		if v6 {
			b := a.As16()
			b[15] = byte(r.Uint32())
			out[i] = netip.AddrFrom16(b)
		} else {
			b := a.As4()
			b[3] = byte(1 + r.IntN(254))
			out[i] = netip.AddrFrom4(b)
		}
	}
	return out
}

var scaleSizes = []struct{ peers, per int }{{10, 1}, {100, 10}, {1000, 10}, {1000, 100}}

// BenchmarkPeerLookup is the per-packet longest-prefix match over every
// peer's prefixes (both directions do one), for growing tables.
func BenchmarkPeerLookup(b *testing.B) {
	for _, v6 := range []bool{false, true} {
		for _, sz := range scaleSizes {
			fam := map[bool]string{false: "v4", true: "v6"}[v6]
			b.Run(fmt.Sprintf("%s/peers=%d/prefixes=%d", fam, sz.peers, sz.peers*sz.per), func(b *testing.B) {
				e, err := newEngine(scaleConfig(sz.peers, sz.per, v6))
				if err != nil {
					b.Fatal(err)
				}
				addrs := scaleAddrs(4096, sz.peers*sz.per, v6)
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					if _, ok := e.r.routes.lookup(addrs[i&4095]); !ok {
						b.Fatal("miss")
					}
					i++
				}
			})
		}
	}
}

// BenchmarkHubCapture is the whole capture path (parse, route, TTL,
// encapsulate) on a hub with 1,000 peers and 100,000 prefixes, for
// packets to random peers.
func BenchmarkHubCapture(b *testing.B) {
	e, err := newEngine(scaleConfig(1000, 100, false))
	if err != nil {
		b.Fatal(err)
	}
	e.transport, e.r.injector = nullTransport{}, dptest.Discard{}
	s := newCaptureState(DefaultBatchSize)
	addrs := scaleAddrs(DefaultBatchSize, 100000, false)
	pkts := make([][]byte, DefaultBatchSize)
	for i := range pkts {
		pkts[i] = dptest.UDP(dptest.IPv4{Src: netip.MustParseAddr("192.168.0.5"), Dst: addrs[i], TTL: 64}, 1, 2, make([]byte, 56))
		s.sizes[i] = copy(s.bufs[i], pkts[i])
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(pkts[0]) * DefaultBatchSize))
	for b.Loop() {
		for i := range pkts {
			copy(s.bufs[i][:20], pkts[i][:20])
		}
		e.encapBatch(s, DefaultBatchSize)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*DefaultBatchSize), "ns/packet")
}

// BenchmarkHubMemory builds engines of growing size and reports the heap
// they hold: the LPM table, the per-peer state and the endpoint snapshot;
// with /learning, peers without endpoints, for which the engine also
// indexes the prefixes to attribute keepalives (keepalive_msg.go).
func BenchmarkHubMemory(b *testing.B) {
	for _, sz := range scaleSizes {
		for _, learning := range []bool{false, true} {
			name := fmt.Sprintf("peers=%d/prefixes=%d", sz.peers, sz.peers*sz.per)
			if learning {
				name += "/learning"
			}
			b.Run(name, func(b *testing.B) { benchHubMemory(b, sz.peers, sz.per, learning) })
		}
	}
}

// benchHubMemory reports the heap an engine of peers*per prefixes holds.
func benchHubMemory(b *testing.B, peers, per int, learning bool) {
	cfg := scaleConfig(peers, per, false)
	for i := range cfg.Peers {
		if learning {
			cfg.Peers[i].Endpoint = netip.AddrPort{}
		}
	}
	var heap uint64
	for b.Loop() {
		heap = heapOf(func() any {
			e, err := newEngine(cfg)
			if err != nil {
				b.Fatal(err)
			}
			return e
		})
	}
	b.ReportMetric(float64(heap)/(1<<20), "MiB")
	b.ReportMetric(float64(heap)/float64(peers*per), "B/prefix")
}

// heapOf returns the live heap that the value built by fn holds.
func heapOf(fn func() any) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	v := fn()
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(v)
	return after.HeapAlloc - before.HeapAlloc
}

// TestHubScaleZeroAllocs: the capture path of a 1,000-peer hub does not
// allocate either.
func TestHubScaleZeroAllocs(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a 100,000-prefix table")
	}
	e, err := newEngine(scaleConfig(1000, 100, false))
	if err != nil {
		t.Fatal(err)
	}
	e.transport, e.r.injector = nullTransport{}, dptest.Discard{}
	s := newCaptureState(8)
	for i, a := range scaleAddrs(8, 100000, false) {
		s.sizes[i] = copy(s.bufs[i], dptest.UDP(dptest.IPv4{Src: netip.MustParseAddr("192.168.0.5"), Dst: a, TTL: 255}, 1, 2, nil))
	}
	if n := testing.AllocsPerRun(20, func() { e.encapBatch(s, 8) }); n != 0 {
		t.Fatalf("%v allocs per batch", n)
	}
}

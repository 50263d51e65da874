package dataplane

import (
	"fmt"
	"net/netip"
	"testing"

	"tunnel-agent/dataplane/dptest"
)

// nullTransport (and dptest.Discard) accept everything, so benchmarks
// measure the engine alone.
type nullTransport struct{}

func (nullTransport) ReadBatch([][]byte, []int, []netip.AddrPort) (int, error) { select {} }
func (nullTransport) WriteBatch(b [][]byte, _ []netip.AddrPort) (int, error)   { return len(b), nil }
func (nullTransport) LocalAddr() netip.AddrPort                                { return netip.AddrPort{} }
func (nullTransport) Close() error                                             { return nil }

// benchEngine is the fuzz configuration with null I/O.
func benchEngine(tb testing.TB) *Engine {
	e := newFuzzEngine(tb)
	e.transport, e.r.injector = nullTransport{}, dptest.Discard{}
	return e
}

// benchCapture runs the capture side on a batch of copies of one packet.
type benchCapture struct {
	e   *Engine
	s   *captureState
	pkt []byte
}

func newBenchCapture(tb testing.TB, n int, pkt []byte) *benchCapture {
	bc := &benchCapture{e: benchEngine(tb), s: newCaptureState(n), pkt: pkt}
	for i := range n {
		bc.s.sizes[i] = copy(bc.s.bufs[i], pkt)
	}
	return bc
}

// run processes one batch. The TTL is restored first (forwarding
// decrements it in place) so every run forwards.
func (bc *benchCapture) run() {
	for i := range bc.s.sizes {
		copy(bc.s.bufs[i][:20], bc.pkt[:20])
	}
	bc.e.encapBatch(bc.s, len(bc.s.sizes))
}

// benchTransport runs the transport side on a batch of datagrams from
// the configured peer "east".
type benchTransport struct {
	e *Engine
	s *transportState
}

func newBenchTransport(tb testing.TB, n int) *benchTransport {
	bt := &benchTransport{e: benchEngine(tb), s: newTransportState(n)}
	reply := transportSeeds()["tutorial-reply"]
	for i := range n {
		bt.s.sizes[i] = copy(bt.s.bufs[i], reply.pkt)
		bt.s.from[i] = fuzzSenders[reply.sender]
	}
	return bt
}

func (bt *benchTransport) run() { bt.e.decapBatch(bt.s, len(bt.s.sizes)) }

// BenchmarkCapture: parse, route, TTL, encapsulate and hand to the
// transport, per packet, for the tutorial's 84-byte echo.
func BenchmarkCapture(b *testing.B) {
	bc := newBenchCapture(b, DefaultBatchSize, tutorial)
	b.ReportAllocs()
	b.SetBytes(int64(len(tutorial) * DefaultBatchSize))
	for b.Loop() {
		bc.run()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*DefaultBatchSize), "ns/pkt")
	if bc.e.r.peers[0].ctr.txPackets.Load() == 0 {
		b.Fatal("nothing forwarded")
	}
}

// BenchmarkTransport: sender lookup, validate and inject, per packet.
func BenchmarkTransport(b *testing.B) {
	bt := newBenchTransport(b, DefaultBatchSize)
	b.ReportAllocs()
	b.SetBytes(84 * DefaultBatchSize)
	for b.Loop() {
		bt.run()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*DefaultBatchSize), "ns/pkt")
	if bt.e.r.peers[0].ctr.rxPackets.Load() == 0 {
		b.Fatal("nothing accepted")
	}
}

// BenchmarkPrefixLookup: one longest-prefix match among n prefixes.
func BenchmarkPrefixLookup(b *testing.B) {
	for _, n := range []int{10, 100_000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			peers, ref := manyPrefixPeers(n)
			pt, err := newPeerTable(peers)
			if err != nil {
				b.Fatal(err)
			}
			probes := make([]netip.Addr, 0, 1024)
			for p := range ref {
				probes = append(probes, p.Addr())
				if len(probes) == cap(probes) {
					break
				}
			}
			for len(probes) < cap(probes) { // pad small tables with misses
				probes = append(probes, netip.AddrFrom4([4]byte{byte(len(probes)), 1, 2, 3}))
			}
			b.ReportAllocs()
			i, hits := 0, 0
			for b.Loop() {
				if _, ok := pt.lookup(probes[i&1023]); ok {
					hits++
				}
				i++
			}
			if hits == 0 {
				b.Fatal("no hits")
			}
		})
	}
}

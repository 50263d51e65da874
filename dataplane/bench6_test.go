package dataplane

import (
	"testing"

	"tunnel-agent/dataplane/dptest"
)

// BenchmarkCapture6 is BenchmarkCapture for the IPv6 ping (104 bytes):
// parse with the extension header walk, route, hop limit, encapsulate.
func BenchmarkCapture6(b *testing.B) {
	pkt := captureSeeds6()["v6-echo"]
	bc := newBenchCapture(b, DefaultBatchSize, pkt)
	b.ReportAllocs()
	b.SetBytes(int64(len(pkt) * DefaultBatchSize))
	for b.Loop() {
		bc.run()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*DefaultBatchSize), "ns/pkt")
	if bc.e.r.peers[0].ctr.txPackets.Load() == 0 {
		b.Fatal("nothing forwarded")
	}
}

// BenchmarkTransport6 is BenchmarkTransport for the IPv6 ping reply.
func BenchmarkTransport6(b *testing.B) {
	bt := newBenchTransport(b, DefaultBatchSize)
	reply := transportSeeds6()["v6-reply"]
	for i := range bt.s.sizes {
		bt.s.sizes[i] = copy(bt.s.bufs[i], reply.pkt)
		bt.s.from[i] = fuzzSenders[reply.sender]
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(reply.pkt) * DefaultBatchSize))
	for b.Loop() {
		bt.run()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*DefaultBatchSize), "ns/pkt")
	if bt.e.r.peers[0].ctr.rxPackets.Load() == 0 {
		b.Fatal("nothing accepted")
	}
}

// BenchmarkRelay: a hub relaying between two peers, per packet.
func BenchmarkRelay(b *testing.B) {
	e, err := newEngine(hubConfig())
	if err != nil {
		b.Fatal(err)
	}
	e.transport, e.r.injector = nullTransport{}, dptest.Discard{}
	pkt := relayPacket()
	s := newTransportState(DefaultBatchSize)
	for i := range DefaultBatchSize {
		s.sizes[i] = copy(s.bufs[i], pkt)
		s.from[i] = hubConfig().Peers[0].Endpoint
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(pkt) * DefaultBatchSize))
	for b.Loop() {
		for i := range DefaultBatchSize {
			copy(s.bufs[i][:20], pkt[:20])
		}
		e.decapBatch(s, DefaultBatchSize)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*DefaultBatchSize), "ns/pkt")
}

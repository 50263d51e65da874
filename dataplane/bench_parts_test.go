package dataplane

import "testing"

// The steps of the hot path on their own (BenchmarkCapture and
// BenchmarkTransport measure the whole encapsulation and decapsulation).

// BenchmarkParseIPv4: parse and check the header of a captured packet.
func BenchmarkParseIPv4(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, why := parseIPv4(tutorial); why != DropNone {
			b.Fatal(why)
		}
	}
}

// BenchmarkValidate: the receive-side checks of one inner packet (header,
// length, source routes back to the sender, destination local).
func BenchmarkValidate(b *testing.B) {
	e := benchEngine(b)
	pkt := transportSeeds()["tutorial-reply"].pkt
	from := &e.r.peers[0]
	b.ReportAllocs()
	for b.Loop() {
		var d dropInfo
		if r := e.r.admit(&d, pkt, from); r != DropNone {
			b.Fatal(r)
		}
	}
}

package afpacket

import (
	"bytes"
	"testing"

	"tunnel-agent/dataplane/dptest"
)

// TestSegmenterFinishes: the exported Segmenter finishes a batch as the
// capture does, a UDP GSO super-datagram cut and partial packets
// completed, in order.
func TestSegmenterFinishes(t *testing.T) {
	small := dptest.UDP6Segment(ip6With(nil), 1, 2, dptest.Pattern(10))
	small4 := dptest.TCP4(dptest.IPv4{Src: lanHost4, Dst: farHost4, TTL: 64}, dptest.TCP{Flags: dptest.TCPSyn}, nil)
	big := dptest.UDP6Segment(ip6With(nil), 443, 50000, dptest.Pattern(3*1200))
	s := NewSegmenter(1500)
	bufs, sizes := batchOf(5, BufferSize, small.Partial(), big.Partial(), small4.Partial())
	n := s.Finish(bufs, sizes, []Meta{{Partial: true}, {Partial: true, GSOType: GSOUDP, GSOSize: 1200}, {Partial: true}})
	if n != 5 {
		t.Fatalf("Finish: %d entries, want 5", n)
	}
	got := func(i int) []byte { return bufs[i][:sizes[i]] }
	if !bytes.Equal(got(0), small.Packet) || !bytes.Equal(got(4), small4.Packet) {
		t.Error("whole packets not completed, or moved out of order")
	}
	checkSegs6(t, big.Packet, big.L4, true, [][]byte{got(1), got(2), got(3)}, big.L4+8+1200)

	// Segments beyond the batch wait for Drain.
	bufs, sizes = batchOf(2, BufferSize, big.Partial())
	if n := s.Finish(bufs, sizes, []Meta{{Partial: true, GSOType: GSOUDP, GSOSize: 1200}}); n != 2 {
		t.Fatalf("Finish: %d entries, want 2", n)
	}
	first := [][]byte{bytes.Clone(got(0)), bytes.Clone(got(1))}
	if k := s.Drain(bufs, sizes); k != 1 {
		t.Fatalf("Drain: %d entries, want the staged segment", k)
	}
	checkSegs6(t, big.Packet, big.L4, true, append(first, got(0)), big.L4+8+1200)
	if s.Drain(bufs, sizes) != 0 || s.Dropped() != 0 || s.ReadLimit(8) >= 8 {
		t.Error("more staged, dropped, or the read limit not lowered after a super-packet")
	}
}

// TestChecksumPending tells a checksum left to offload from a finished
// one, right or wrong.
func TestChecksumPending(t *testing.T) {
	for _, tc := range []struct {
		name          string
		proto         uint8
		hdrLen, field int
	}{{"tcp", 6, 20, 16}, {"udp", 17, 8, 6}} {
		full, partial := l4Packet(tc.proto, tc.hdrLen, tc.field, "some payload")
		if ChecksumPending(full) {
			t.Errorf("%s: a finished checksum taken for a pending one", tc.name)
		}
		if !ChecksumPending(partial) {
			t.Errorf("%s: a pending checksum not recognised", tc.name)
		}
		wrong := bytes.Clone(full)
		wrong[20+tc.field] ^= 0x55
		if ChecksumPending(wrong) {
			t.Errorf("%s: a wrong checksum taken for a pending one", tc.name)
		}
	}
	v6 := dptest.UDP6Segment(ip6With(nil), 1, 2, dptest.Pattern(10))
	if ChecksumPending(v6.Packet) || !ChecksumPending(v6.Partial()) {
		t.Error("IPv6 UDP: pending checksum not told from a finished one")
	}
	noSum, _ := l4Packet(17, 8, 6, "x")
	noSum[26], noSum[27] = 0, 0
	if ChecksumPending(noSum) || ChecksumPending(nil) || ChecksumPending([]byte{0x45}) {
		t.Error("no checksum, or no packet, taken for a pending checksum")
	}
}

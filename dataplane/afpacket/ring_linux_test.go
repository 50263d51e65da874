package afpacket

import (
	"bytes"
	"testing"

	"golang.org/x/sys/unix"

	"tunnel-agent/dataplane/internal/vethtest"
)

// TestRingFillCopiesAndCounts runs the ring's batch fill over a synthetic
// ring (no socket, no root): frames are copied whole into the caller's
// buffers in order, cut or oversized ones dropped and counted, partial
// checksums marked (and completed when the batch is finished).
func TestRingFillCopiesAndCounts(t *testing.T) {
	full, partial := l4Packet(17, 8, 6, "partial checksum")
	r := newSynthRing(4096, 2)
	r.retire(t, 0,
		synthFrame{data: []byte("first")},
		synthFrame{data: []byte("cut"), wire: 9000},    // snaplen < len
		synthFrame{data: bytes.Repeat([]byte{1}, 200)}, // larger than the buffers
		synthFrame{data: partial, status: unix.TP_STATUS_CSUMNOTREADY},
	)
	r.retire(t, 1, synthFrame{data: []byte("next block")})
	c := &Capture{g: newGSOSplitter(1500)}
	rx := &rxRing{w: newRingWalker(r.mem, r.bsize, r.nblk), c: c}
	bufs, sizes := vethtest.Bufs(2, 64)

	rx.bufs, rx.sizes, rx.meta = bufs, sizes, c.g.metaFor(2)
	if !rx.fill(0) || rx.out != 2 {
		t.Fatalf("fill: %d packets, want 2", rx.out)
	}
	if !rx.meta[1].partial || c.g.expand(bufs, sizes, 2) != 2 {
		t.Fatalf("partial checksum not marked (%+v) or batch expanded", rx.meta)
	}
	if string(bufs[0][:sizes[0]]) != "first" || !bytes.Equal(bufs[1][:sizes[1]], full) {
		t.Errorf("batch 1: %q, %x (want the completed checksum %x)", bufs[0][:sizes[0]], bufs[1][:sizes[1]], full)
	}
	if c.truncated.Load() != 2 || r.status(0) != ringStatusKernel || r.status(1) != ringStatusUser {
		t.Errorf("truncated %d, status %d %d: want 2, block 0 back, block 1 not yet", c.truncated.Load(), r.status(0), r.status(1))
	}

	rx.out = 0
	if !rx.fill(0) || rx.out != 1 || string(bufs[0][:sizes[0]]) != "next block" || r.status(1) != ringStatusKernel {
		t.Fatalf("batch 2: %d packets, %q", rx.out, bufs[0][:sizes[0]])
	}
	rx.out = 0
	if rx.fill(0) {
		t.Fatal("fill on an empty ring reported packets")
	}
}

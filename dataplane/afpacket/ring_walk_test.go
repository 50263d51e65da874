package afpacket

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"testing"
	"unsafe"
)

// synthRing is a TPACKET_V3 ring in ordinary memory, laid out as the
// kernel lays it out for a SOCK_DGRAM socket (af_packet.c): the first
// frame header right after the 48-byte block descriptor, each frame 96
// bytes after its header, headers 8-byte aligned, the last frame's
// tp_next_offset 0.
type synthRing struct {
	mem   []byte
	bsize int
	nblk  int
}

const synthMac = 96 // TPACKET_ALIGN(TPACKET3_HDRLEN) + 16 for SOCK_DGRAM

// alignedBytes returns n zero bytes aligned for the walker's atomics.
func alignedBytes(n int) []byte {
	words := make([]uint64, (n+7)/8)
	return unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(words))), len(words)*8)[:n]
}

func newSynthRing(bsize, nblk int) *synthRing {
	return &synthRing{mem: alignedBytes(bsize * nblk), bsize: bsize, nblk: nblk}
}

func (r *synthRing) block(i int) []byte { return r.mem[i*r.bsize : (i+1)*r.bsize] }

// retire writes frames into block i and hands it to userspace. A frame
// with wire > len(frame) says the kernel cut it (snaplen < len).
func (r *synthRing) retire(t testing.TB, i int, frames ...synthFrame) {
	t.Helper()
	b := r.block(i)
	clear(b)
	ne := binary.NativeEndian
	off := ringBlockDescLen
	ne.PutUint32(b[ringBlockFirstPkt:], uint32(off))
	ne.PutUint32(b[ringBlockNumPkts:], uint32(len(frames)))
	for k, f := range frames {
		next := (synthMac + len(f.data) + 7) &^ 7
		if off+next > len(b) {
			t.Fatalf("block %d: frame %d does not fit", i, k)
		}
		h := b[off:]
		if k < len(frames)-1 {
			ne.PutUint32(h[ringPktNext:], uint32(next))
		}
		ne.PutUint32(h[ringPktSnaplen:], uint32(len(f.data)))
		ne.PutUint32(h[ringPktLen:], uint32(max(f.wire, len(f.data))))
		ne.PutUint32(h[ringPktStatus:], f.status|ringStatusUser)
		ne.PutUint16(h[ringPktMac:], synthMac)
		ne.PutUint16(h[ringPktNet:], synthMac) // no link-layer header
		copy(h[synthMac:], f.data)
		off += next
	}
	ne.PutUint32(b[ringBlockStatus:], ringStatusUser)
}

func (r *synthRing) status(i int) uint32 {
	return binary.NativeEndian.Uint32(r.block(i)[ringBlockStatus:])
}

type synthFrame struct {
	data   []byte
	wire   int // tp_len when larger than data
	status uint32
}

// frames returns count frames whose bytes are "<tag>-<n>" for n from
// first on.
func frames(tag string, first, count int) []synthFrame {
	out := make([]synthFrame, count)
	for i := range out {
		out[i].data = fmt.Appendf(nil, "%s-%d", tag, first+i)
	}
	return out
}

// walkN returns up to n packets' bytes (copied) and flushes, as one batch.
func walkN(w *ringWalker, n int) []string {
	var out []string
	for len(out) < n {
		p, ok := w.peek()
		if !ok {
			break
		}
		w.consume()
		out = append(out, string(p.data))
	}
	w.flush()
	return out
}

func TestRingWalkerInOrderAcrossBlocksAndWrap(t *testing.T) {
	r := newSynthRing(1024, 3)
	w := newRingWalker(r.mem, r.bsize, r.nblk)
	if got := walkN(w, 4); len(got) != 0 {
		t.Fatalf("empty ring returned %q", got)
	}
	r.retire(t, 0, frames("p", 0, 5)...)
	r.retire(t, 1, frames("p", 5, 5)...)

	// Batches of 3 end mid-block: block 0 stays the user's until its last
	// packet is taken, then goes back at once.
	if got := walkN(w, 3); fmt.Sprint(got) != "[p-0 p-1 p-2]" || r.status(0) != ringStatusUser {
		t.Fatalf("batch 1: %q, block 0 status %d", got, r.status(0))
	}
	if got := walkN(w, 3); fmt.Sprint(got) != "[p-3 p-4 p-5]" || r.status(0) != ringStatusKernel || r.status(1) != ringStatusUser {
		t.Fatalf("batch 2: %q, status %d %d", got, r.status(0), r.status(1))
	}
	if got := walkN(w, 4); fmt.Sprint(got) != "[p-6 p-7 p-8 p-9]" || r.status(1) != ringStatusKernel {
		t.Fatalf("batch 3: %q, block 1 status %d", got, r.status(1))
	}
	if got := walkN(w, 3); len(got) != 0 {
		t.Fatalf("drained ring returned %q", got)
	}

	// The kernel goes on with block 2, then wraps to block 0.
	r.retire(t, 2, frames("p", 10, 2)...)
	r.retire(t, 0, frames("p", 12, 2)...)
	if got := walkN(w, 10); fmt.Sprint(got) != "[p-10 p-11 p-12 p-13]" {
		t.Fatalf("after wrap: %q", got)
	}
	for i := range r.nblk {
		if r.status(i) != ringStatusKernel {
			t.Errorf("block %d not handed back", i)
		}
	}
	if w.bad != 0 {
		t.Errorf("bad = %d on a well-formed ring", w.bad)
	}
}

// A batch can stop before a packet it peeked at: the packet is returned
// again by the next peek, and its block stays the user's.
func TestRingWalkerPeekKeepsPosition(t *testing.T) {
	r := newSynthRing(1024, 2)
	w := newRingWalker(r.mem, r.bsize, r.nblk)
	r.retire(t, 0, frames("p", 0, 2)...)
	r.retire(t, 1, frames("p", 2, 1)...)
	for range 2 {
		if got := walkN(w, 1); fmt.Sprint(got) != "[p-0]" && fmt.Sprint(got) != "[p-1]" {
			t.Fatalf("got %q", got)
		}
	}
	for range 3 {
		if p, ok := w.peek(); !ok || string(p.data) != "p-2" {
			t.Fatalf("peek = %q, %v; want p-2 every time", p.data, ok)
		}
		w.flush()
	}
	if r.status(0) != ringStatusKernel || r.status(1) != ringStatusUser {
		t.Fatalf("status %d %d: want block 0 back, block 1 held", r.status(0), r.status(1))
	}
	w.consume()
	w.flush()
	if r.status(1) != ringStatusKernel {
		t.Fatal("block 1 not handed back after its last packet was consumed")
	}
}

func TestRingWalkerWaitsForKernelBlock(t *testing.T) {
	r := newSynthRing(1024, 2)
	w := newRingWalker(r.mem, r.bsize, r.nblk)
	r.retire(t, 1, frames("late", 0, 1)...) // block 1 retired before block 0: cannot happen, must not be read first
	if got := walkN(w, 4); len(got) != 0 {
		t.Fatalf("walker skipped the kernel's block 0: %q", got)
	}
	r.retire(t, 0, frames("first", 0, 1)...)
	if got := walkN(w, 4); fmt.Sprint(got) != "[first-0 late-0]" {
		t.Fatalf("got %q", got)
	}
}

func TestRingWalkerPacketFields(t *testing.T) {
	r := newSynthRing(1024, 2)
	w := newRingWalker(r.mem, r.bsize, r.nblk)
	r.retire(t, 0, synthFrame{data: []byte("cut"), wire: 9000, status: 8})
	p, ok := w.peek()
	if !ok || string(p.data) != "cut" || p.wireLen != 9000 || p.status != 8|ringStatusUser {
		t.Fatalf("packet %q wire %d status %#x ok %v", p.data, p.wireLen, p.status, ok)
	}
}

// TestRingWalkerGarbage: each broken block ends (counted) without a read
// outside it, and the walker carries on with the next one.
func TestRingWalkerGarbage(t *testing.T) {
	ne := binary.NativeEndian
	tests := []struct {
		name  string
		spoil func(b []byte)
		good  int // packets of the block still returned
	}{
		{"first packet beyond block", func(b []byte) { ne.PutUint32(b[ringBlockFirstPkt:], 1<<31) }, 0},
		{"first packet inside descriptor", func(b []byte) { ne.PutUint32(b[ringBlockFirstPkt:], 8) }, 0},
		{"header straddles end", func(b []byte) { ne.PutUint32(b[ringBlockFirstPkt:], uint32(len(b)-20)) }, 0},
		{"snaplen beyond block", func(b []byte) { ne.PutUint32(b[ringBlockDescLen+ringPktSnaplen:], 1<<20) }, 0},
		{"snaplen negative on 32 bits", func(b []byte) { ne.PutUint32(b[ringBlockDescLen+ringPktSnaplen:], 0xffffffff) }, 0},
		{"mac inside header", func(b []byte) { ne.PutUint16(b[ringBlockDescLen+ringPktMac:], 4) }, 0},
		{"mac beyond block", func(b []byte) { ne.PutUint16(b[ringBlockDescLen+ringPktMac:], 0xffff) }, 0},
		{"next offset 0 mid-block", func(b []byte) { ne.PutUint32(b[ringBlockDescLen+ringPktNext:], 0) }, 1},
		{"next offset beyond block", func(b []byte) { ne.PutUint32(b[ringBlockDescLen+ringPktNext:], 1<<30) }, 1},
		{"num_pkts huge", func(b []byte) { ne.PutUint32(b[ringBlockNumPkts:], 1<<31) }, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newSynthRing(1024, 3)
			w := newRingWalker(r.mem, r.bsize, r.nblk)
			r.retire(t, 0, frames("a", 0, 3)...)
			r.retire(t, 1, frames("b", 0, 1)...)
			tt.spoil(r.block(0))
			got := walkN(w, 10)
			want := append(frameNames(frames("a", 0, tt.good)), "b-0")
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("got %q, want %q", got, want)
			}
			if w.bad != 1 || r.status(0) != ringStatusKernel || r.status(1) != ringStatusKernel {
				t.Errorf("bad %d, status %d %d: want 1 and both blocks back", w.bad, r.status(0), r.status(1))
			}
		})
	}
}

func TestRingWalkerEmptyRetiredBlock(t *testing.T) {
	r := newSynthRing(1024, 2)
	w := newRingWalker(r.mem, r.bsize, r.nblk)
	r.retire(t, 0)
	r.retire(t, 1, frames("x", 0, 1)...)
	if got := walkN(w, 4); fmt.Sprint(got) != "[x-0]" || w.bad != 0 {
		t.Fatalf("got %q, bad %d", got, w.bad)
	}
}

func frameNames(fs []synthFrame) []string {
	out := []string{}
	for _, f := range fs {
		out = append(out, string(f.data))
	}
	return out
}

// FuzzRingWalker walks arbitrary bytes as a ring of 256-byte blocks: it
// must never panic, return bytes outside the block being walked, or
// return more packets than the blocks can hold.
func FuzzRingWalker(f *testing.F) {
	r := newSynthRing(256, 2)
	r.retire(f, 0, frames("seed", 0, 2)...)
	r.retire(f, 1, synthFrame{data: []byte("x"), wire: 70000, status: 8})
	f.Add(bytes.Clone(r.mem))
	f.Add(bytes.Clone(r.mem[:256]))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		const bsize = 256
		nblk := len(data) / bsize
		if nblk == 0 {
			return
		}
		mem := alignedBytes(nblk * bsize)
		copy(mem, data)
		w := newRingWalker(mem, bsize, nblk)
		base := uintptr(unsafe.Pointer(&mem[0]))
		limit := nblk*bsize/ringPktHdrLen + 1
		for n := 0; ; n++ {
			p, ok := w.peek()
			if !ok {
				break
			}
			w.consume()
			if n > limit {
				t.Fatalf("more than %d packets from %d blocks", limit, nblk)
			}
			if len(p.data) > 0 {
				at := int(uintptr(unsafe.Pointer(&p.data[0])) - base)
				if at/bsize != w.blk || (at+len(p.data)-1)/bsize != w.blk {
					t.Fatalf("packet at %d+%d outside its block", at, len(p.data))
				}
			}
		}
		w.flush()
	})
}

package afpacket

import (
	"bytes"
	"testing"

	"tunnel-agent/dataplane/dptest"
)

// batchOf copies pkts into n buffers of bufSize bytes.
func batchOf(n, bufSize int, pkts ...[]byte) ([][]byte, []int) {
	bufs, sizes := make([][]byte, n), make([]int, n)
	for i := range bufs {
		bufs[i] = make([]byte, bufSize)
	}
	for i, p := range pkts {
		sizes[i] = copy(bufs[i], p)
	}
	return bufs, sizes
}

func TestExpandKeepsOrder(t *testing.T) {
	const mtu = 1420
	small1, small2 := superPacket(false, 10), superPacket(true, 20)
	big4, big6 := superPacket(false, 3001), superPacket(true, 4000)
	g := newGSOSplitter(mtu)
	bufs, sizes := batchOf(16, BufferSize, small1, big4, small2, big6)
	n := g.expand(bufs, sizes, 4)
	if n != 1+3+1+3 {
		t.Fatalf("expand returned %d entries, want 8", n)
	}
	got := func(i int) []byte { return bufs[i][:sizes[i]] }
	if !bytes.Equal(got(0), small1) || !bytes.Equal(got(4), small2) {
		t.Fatal("small packets moved out of order or changed")
	}
	checkSegments(t, big4, [][]byte{got(1), got(2), got(3)}, mtu)
	checkSegments(t, big6, [][]byte{got(5), got(6), got(7)}, mtu)
	if !g.seen || g.readLimit(16) != 1 || g.dropped.Load() != 0 {
		t.Errorf("seen %v, readLimit %d, dropped %d", g.seen, g.readLimit(16), g.dropped.Load())
	}
	bufs, sizes = batchOf(16, BufferSize, small1)
	if g.expand(bufs, sizes, 1) != 1 || g.seen || g.readLimit(16) != 16 {
		t.Error("a batch without super-packets did not restore the full read")
	}
}

func TestExpandStagesRemainder(t *testing.T) {
	const mtu = 1420
	small, big := superPacket(false, 10), superPacket(false, 10000) // 8 segments
	g := newGSOSplitter(mtu)
	bufs, sizes := batchOf(3, BufferSize, small, big, small)
	if n := g.expand(bufs, sizes, 3); n != 3 {
		t.Fatalf("expand returned %d, want 3", n)
	}
	if g.dropped.Load() != 1 {
		t.Errorf("dropped %d, want 1 (the packet after the super-packet)", g.dropped.Load())
	}
	var segs [][]byte
	segs = append(segs, bytes.Clone(bufs[1][:sizes[1]]), bytes.Clone(bufs[2][:sizes[2]]))
	for range 10 {
		n := g.drain(bufs, sizes)
		if n == 0 {
			break
		}
		for i := range n {
			segs = append(segs, bytes.Clone(bufs[i][:sizes[i]]))
		}
	}
	checkSegments(t, big, segs, mtu)
}

func TestExpandSmallBuffersPassThrough(t *testing.T) {
	big := superPacket(false, 3000)
	g := newGSOSplitter(1420)
	bufs, sizes := batchOf(4, len(big), big)
	bufs[3] = bufs[3][:100]
	if n := g.expand(bufs, sizes, 1); n != 1 || !bytes.Equal(bufs[0][:sizes[0]], big) {
		t.Error("segmented into buffers smaller than the MTU")
	}
}

func BenchmarkExpand64K(b *testing.B) {
	big := superPacket(false, 65535-52)
	g := newGSOSplitter(1420)
	bufs, sizes := batchOf(64, BufferSize)
	b.ReportAllocs()
	b.SetBytes(int64(len(big)))
	for b.Loop() {
		sizes[0] = copy(bufs[0], big)
		g.expand(bufs, sizes, 1)
	}
}

// FuzzExpand: any batch, with any GSO information, expands without
// panicking into entries no larger than the MTU (or, for UDP GSO, than the
// headers plus gso_size) unless they were passed through unchanged.
func FuzzExpand(f *testing.F) {
	f.Add(superPacket(false, 3001), superPacket(true, 10), uint16(1420), uint8(0), uint16(0), false)
	f.Add(superPacket(true, 5000), superPacket(false, 3000)[:200], uint16(1280), uint8(0), uint16(0), false)
	f.Add([]byte{0x45, 0, 0xff, 0xff}, []byte{0x60}, uint16(60), uint8(0), uint16(0), false)
	p6, _ := superTCP6(extHeaders["hbh+rt+d"], 4000)
	f.Add(p6, superPacket(false, 10), uint16(1500), uint8(vnetGSOTCPv6), uint16(1000), true)
	udp := dptest.UDP6Segment(ip6With(extHeaders["dstopts"]), 1, 2, dptest.Pattern(5000)).Partial()
	f.Add(udp, udp[:100], uint16(1500), uint8(vnetGSOUDPL4), uint16(1200), true)
	udp4 := dptest.UDP4(dptest.IPv4{Src: lanHost4, Dst: farHost4, TTL: 64}, 1, 2, dptest.Pattern(3000)).Partial()
	f.Add(udp4, udp4, uint16(1500), uint8(vnetGSOUDPL4), uint16(1), true)
	g := newGSOSplitter(1420)
	bufs, sizes := batchOf(4, BufferSize)
	f.Fuzz(func(t *testing.T, a, b []byte, mtu uint16, gsoType uint8, gsoSize uint16, partial bool) {
		g.mtu, g.seen, g.staged = int(mtu), false, false
		sizes[0], sizes[1] = copy(bufs[0], a), copy(bufs[1], b)
		m := g.metaFor(2)
		m[0] = frameMeta{partial: partial, gsoType: gsoType, gsoSize: gsoSize}
		m[1] = frameMeta{partial: partial}
		n := g.expand(bufs, sizes, 2)
		for range 1 << 16 { // up to 65535 one-byte datagrams, 4 per call
			if g.drain(bufs, sizes) == 0 {
				break
			}
		}
		if n < 0 || n > 4 || g.staged {
			t.Fatalf("expand returned %d, staged %v", n, g.staged)
		}
		for i := range n {
			if sizes[i] > max(int(mtu), 100+int(gsoSize)) && sizes[i] != len(a) && sizes[i] != len(b) {
				t.Fatalf("entry %d: %d bytes, more than the MTU %d", i, sizes[i], mtu)
			}
		}
	})
}

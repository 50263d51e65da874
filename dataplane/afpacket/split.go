package afpacket

import "sync/atomic"

// gsoSplitter finishes a received batch: it completes the partial
// checksums of the packets that stay whole, and expands the super-packets
// into segments in place, in order (see segment.go). A super-packet
// whose segments do not all fit the batch is copied to a preallocated
// staging buffer and its remaining segments are returned by the next call
// (drain); packets received after it that find no room are dropped and
// counted. While super-packets arrive, readLimit shrinks the number of
// packets read at once so that their segments fit and nothing is dropped.
//
// The reader records what it knows of each packet of the batch in meta
// (metaFor) before calling expand.
type gsoSplitter struct {
	mtu     int
	meta    []frameMeta // per packet of the batch being finished
	stage   []byte
	st      superPkt
	next    int  // next segment of stage to return
	staged  bool // stage holds segments still to return
	seen    bool // the last batch held a super-packet
	maxSegs int  // most segments of one packet in that batch
	dropped atomic.Uint64
}

func newGSOSplitter(mtu int) *gsoSplitter {
	return &gsoSplitter{mtu: mtu, stage: make([]byte, BufferSize)}
}

// metaFor returns the per-packet records for a batch of n packets, all
// zero (nothing known). It allocates only when n exceeds every batch
// before.
func (g *gsoSplitter) metaFor(n int) []frameMeta {
	if cap(g.meta) < n {
		g.meta = make([]frameMeta, n)
	}
	g.meta = g.meta[:n]
	clear(g.meta)
	return g.meta
}

// readLimit is how many of n buffers to receive into: all of them, or after
// a batch with super-packets as many as can hold the largest's segments.
func (g *gsoSplitter) readLimit(n int) int {
	if !g.seen || g.mtu <= 128 {
		return n
	}
	// 120: largest IPv4+TCP header; maxSegs: smaller segments (gso_size)
	return max(1, n/max(65535/(g.mtu-120)+1, g.maxSegs))
}

// drain returns staged segments into bufs, or 0 if there are none.
func (g *gsoSplitter) drain(bufs [][]byte, sizes []int) int {
	if !g.staged {
		return 0
	}
	out := 0
	for ; out < len(bufs) && g.next < g.st.count(); out++ {
		if len(bufs[out]) < g.st.segLen() {
			break
		}
		sizes[out] = g.st.segment(bufs[out], g.stage, g.next)
		g.next++
	}
	g.staged = g.next < g.st.count()
	return out
}

// segments returns how many entries packet pkt (with what the reader
// knows of it, m) becomes.
func (g *gsoSplitter) segments(pkt []byte, m frameMeta) (superPkt, int) {
	if s, ok := parseSuper(pkt, g.mtu, m); ok {
		return s, s.count()
	}
	return superPkt{}, 1
}

// metaAt returns the record of packet j of the batch (zero if the reader
// kept none).
func (g *gsoSplitter) metaAt(j int) frameMeta {
	if j < len(g.meta) {
		return g.meta[j]
	}
	return frameMeta{}
}

// expand finishes the first m packets of bufs (sizes given): it completes
// the partial checksums of those that stay whole and splits the
// super-packets, and returns the number of entries now filled. Working
// from the last packet back, every packet only moves towards the end,
// over slots whose packets were already moved.
func (g *gsoSplitter) expand(bufs [][]byte, sizes []int, m int) int {
	total, most, seg := 0, 1, 0
	for j := range m {
		pkt := bufs[j][:sizes[j]]
		s, k := g.segments(pkt, g.metaAt(j))
		if k == 1 && g.metaAt(j).partial {
			completeChecksum(pkt)
		}
		total, most, seg = total+k, max(most, k), max(seg, s.segLen())
	}
	g.seen = total > m && fits(bufs, seg)
	if !g.seen {
		if total > m { // super-packets that stay whole: complete them too
			g.completeSupers(bufs, sizes, m)
		}
		return m
	}
	g.maxSegs = most
	end := total
	for j := m - 1; j >= 0; j-- {
		s, k := g.segments(bufs[j][:sizes[j]], g.metaAt(j))
		pos := end - k
		end = pos
		switch {
		case pos >= len(bufs):
			g.dropped.Add(1)
		case k == 1:
			if pos != j {
				sizes[pos] = copy(bufs[pos], bufs[j][:sizes[j]])
			}
		default:
			g.split(bufs, sizes, j, pos, s)
		}
	}
	return min(total, len(bufs))
}

// completeSupers completes the partial checksums of the super-packets
// among the first m packets (expand completed the others already).
func (g *gsoSplitter) completeSupers(bufs [][]byte, sizes []int, m int) {
	for j := range m {
		pkt := bufs[j][:sizes[j]]
		if _, k := g.segments(pkt, g.metaAt(j)); k > 1 && g.metaAt(j).partial {
			completeChecksum(pkt)
		}
	}
}

// fits reports whether every buffer can take a segment of size bytes.
func fits(bufs [][]byte, size int) bool {
	for _, b := range bufs {
		if len(b) < size {
			return false
		}
	}
	return true
}

// split writes the segments of super-packet bufs[j] to bufs[pos:], staging
// those beyond the batch. Segment 0 goes last: pos may equal j.
func (g *gsoSplitter) split(bufs [][]byte, sizes []int, j, pos int, s superPkt) {
	src := bufs[j][:sizes[j]]
	fit := min(s.count(), len(bufs)-pos)
	if fit < s.count() {
		copy(g.stage, src)
		g.st, g.next, g.staged = s, fit, true
	}
	for i := fit - 1; i >= 0; i-- {
		sizes[pos+i] = s.segment(bufs[pos+i], src, i)
	}
}

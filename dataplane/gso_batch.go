package dataplane

import "sync/atomic"

// gsoSplitter expands the TCP super-packets of a received batch into
// segments in place, in order (see gso_segment.go). A super-packet whose
// segments do not all fit the batch is copied to a preallocated staging
// buffer and its remaining segments are returned by the next call (drain);
// packets received after it that find no room are dropped and counted.
// While super-packets arrive, readLimit shrinks the number of packets read
// at once so that their segments fit and nothing is dropped.
type gsoSplitter struct {
	mtu     int
	stage   []byte
	st      tcpSuper
	next    int  // next segment of stage to return
	staged  bool // stage holds segments still to return
	seen    bool // the last batch held a super-packet
	dropped atomic.Uint64
}

func newGSOSplitter(mtu int) *gsoSplitter {
	return &gsoSplitter{mtu: mtu, stage: make([]byte, CaptureBufferSize)}
}

// readLimit is how many of n buffers to receive into: all of them, or after
// a batch with super-packets as many as can hold the largest's segments.
func (g *gsoSplitter) readLimit(n int) int {
	if !g.seen || g.mtu <= 128 {
		return n
	}
	return max(1, n/(65535/(g.mtu-120)+1)) // 120: largest IPv4+TCP header
}

// drain returns staged segments into bufs, or 0 if there are none.
func (g *gsoSplitter) drain(bufs [][]byte, sizes []int) int {
	if !g.staged {
		return 0
	}
	out := 0
	for ; out < len(bufs) && g.next < g.st.count(); out++ {
		if len(bufs[out]) < g.mtu {
			break
		}
		sizes[out] = g.st.segment(bufs[out], g.stage, g.next)
		g.next++
	}
	g.staged = g.next < g.st.count()
	return out
}

// segments returns how many entries packet pkt becomes.
func (g *gsoSplitter) segments(pkt []byte) (tcpSuper, int) {
	if s, ok := parseSuper(pkt, g.mtu); ok {
		return s, s.count()
	}
	return tcpSuper{}, 1
}

// expand splits the super-packets among the first m packets of bufs (sizes
// given) and returns the number of entries now filled. Working from the
// last packet back, every packet only moves towards the end, over slots
// whose packets were already moved.
func (g *gsoSplitter) expand(bufs [][]byte, sizes []int, m int) int {
	total := 0
	for j := range m {
		_, k := g.segments(bufs[j][:sizes[j]])
		total += k
	}
	g.seen = total > m && g.fits(bufs)
	if !g.seen {
		return m
	}
	end := total
	for j := m - 1; j >= 0; j-- {
		s, k := g.segments(bufs[j][:sizes[j]])
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

// fits reports whether every buffer can take a full segment.
func (g *gsoSplitter) fits(bufs [][]byte) bool {
	for _, b := range bufs {
		if len(b) < g.mtu {
			return false
		}
	}
	return true
}

// split writes the segments of super-packet bufs[j] to bufs[pos:], staging
// those beyond the batch. Segment 0 goes last: pos may equal j.
func (g *gsoSplitter) split(bufs [][]byte, sizes []int, j, pos int, s tcpSuper) {
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

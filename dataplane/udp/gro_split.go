package udp

import "net/netip"

// UDP generic receive offload (UDP_GRO) hands the reader a message of L
// bytes with a segment size g: it carries ceil(L/g) datagrams of g bytes,
// the last one L-(k-1)*g bytes, all from one sender. This file holds the
// splitting of such messages into a batch, independent of the socket
// (gro_linux.go receives them).

// GROStats counts what UDP_GRO coalesced on a transport.
type GROStats struct {
	Enabled  bool   // the kernel accepted UDP_GRO on the socket
	Messages uint64 // messages received that carried more than one datagram
	Segments uint64 // datagrams those messages carried
}

// groBufSize is the buffer a GRO message always fits: the kernel coalesces
// at most 64 KiB including the IP and UDP headers (gro_max_size), and a
// UDP_SEGMENT sender at most one UDP payload. It equals maxPacketSize, the
// engine's receive buffer size.
const groBufSize = 0xffff

// groMsg is one received message: n bytes, segment size seg (0 when the
// kernel gave none) and the sender.
type groMsg struct {
	n, seg int
	from   netip.AddrPort
}

// segments is how many datagrams the message carries: one if it has no
// segment size or a segment size of at least n (a zero-length datagram
// is one datagram too).
func (m groMsg) segments() int {
	if m.seg <= 0 || m.seg >= m.n {
		return 1
	}
	return (m.n + m.seg - 1) / m.seg
}

// segment returns datagram i (< segments()) of the message held in data
// (at least n bytes).
func (m groMsg) segment(data []byte, i int) []byte {
	if m.seg <= 0 || m.seg >= m.n {
		return data[:m.n]
	}
	start := i * m.seg
	return data[start:min(start+m.seg, m.n)]
}

// suffix is the message made of datagrams first.. of m, whose bytes start
// at offset first*seg.
func (m groMsg) suffix(first int) (groMsg, int) {
	if first == 0 {
		return m, 0
	}
	off := first * m.seg
	return groMsg{n: m.n - off, seg: m.seg, from: m.from}, off
}

// groStaged is a message staged in groQueue.arena at off.
type groStaged struct {
	groMsg
	off int
}

// groQueue holds datagrams received but not yet returned, in order: the
// part of a batch that did not fit the caller's buffers. While it is not
// empty the reader returns from it instead of reading the socket. Its
// arrays are reused; they grow (allocate) only when a batch stages more
// than they ever held.
type groQueue struct {
	arena []byte
	msgs  []groStaged
	head  int // next message of msgs to return
	next  int // next datagram of msgs[head]
	limit int // messages to read next time, 0 for a whole batch
}

func newGROQueue() groQueue {
	return groQueue{arena: make([]byte, 0, groBufSize), msgs: make([]groStaged, 0, 64)}
}

// groPlainRead bounds the messages read after a batch without coalesced
// ones: any of them may turn out to carry up to 64 KiB, which fills its
// whole buffer and is staged beyond the batch, so reading a whole batch
// of 32 could touch 2 MiB of buffers and stage 2 MiB more (measured: +8
// MB of RSS in the bench). Eight bound both at 512 KiB and still batch
// plain datagrams 8 to a syscall.
const groPlainRead = 8

// readLimit is how many of n buffers to receive messages into: after a
// batch with coalesced messages as many as should hold their datagrams,
// so that little is staged, otherwise up to groPlainRead.
func (q *groQueue) readLimit(n int) int {
	if q.limit > 0 {
		return min(n, q.limit)
	}
	return min(n, groPlainRead)
}

// adapt sets the read limit after a batch for n buffers in which one
// message carried most datagrams.
func (q *groQueue) adapt(n, most int) {
	q.limit = 0
	if most > 1 {
		q.limit = max(1, n/most)
	}
}

// pending reports whether staged datagrams remain.
func (q *groQueue) pending() bool { return q.head < len(q.msgs) }

// reset empties the queue (keeping its arrays).
func (q *groQueue) reset() {
	q.arena, q.msgs, q.head, q.next = q.arena[:0], q.msgs[:0], 0, 0
}

// push stages datagrams first.. of m, whose bytes are in data.
func (q *groQueue) push(m groMsg, data []byte, first int) {
	s, off := m.suffix(first)
	q.msgs = append(q.msgs, groStaged{groMsg: s, off: len(q.arena)})
	q.arena = append(q.arena, data[off:m.n]...)
}

// recvArea returns groBufSize bytes of the empty queue's arena to receive
// one message into; pushReceived then stages it without a copy.
func (q *groQueue) recvArea() []byte {
	q.reset()
	if cap(q.arena) < groBufSize {
		q.arena = make([]byte, 0, groBufSize)
	}
	return q.arena[:groBufSize]
}

// pushReceived stages m, received into recvArea.
func (q *groQueue) pushReceived(m groMsg) {
	q.arena = q.arena[:m.n]
	q.msgs = append(q.msgs, groStaged{groMsg: m})
}

// drain copies staged datagrams into bufs in order and returns how many it
// filled, and how many it dropped for not fitting the buffer they came to.
func (q *groQueue) drain(bufs [][]byte, sizes []int, from []netip.AddrPort) (out, dropped int) {
	for out < len(bufs) && q.pending() {
		s := &q.msgs[q.head]
		if seg := s.segment(q.arena[s.off:], q.next); len(seg) <= len(bufs[out]) {
			sizes[out], from[out] = copy(bufs[out], seg), s.from
			out++
		} else {
			dropped++
		}
		if q.next++; q.next == s.segments() {
			q.head, q.next = q.head+1, 0
		}
	}
	if !q.pending() {
		q.reset()
	}
	return out, dropped
}

// expand splits the messages received into bufs (msgs[j] in bufs[j]) into
// their datagrams, in order, in bufs, and returns how many entries it
// filled. Datagrams beyond len(bufs) are staged in q first. Every buffer
// must hold groBufSize bytes. Working from the last fitting message back,
// each datagram only moves towards the end, over slots whose messages were
// already moved or staged (message j starts at or after slot j).
func (q *groQueue) expand(bufs [][]byte, sizes []int, from []netip.AddrPort, msgs []groMsg) int {
	last, fit, total := q.stageOverflow(bufs, msgs)
	end := min(total, len(bufs))
	for j := last; j >= 0; j-- {
		k := msgs[j].segments()
		if j == last {
			k = fit
		}
		end -= k
		splitInto(bufs, sizes, from, j, end, k, msgs[j])
	}
	return min(total, len(bufs))
}

// stageOverflow stages the datagrams of msgs that fall beyond len(bufs).
// It returns the index of the last message with datagrams that fit (-1 if
// none), how many of its datagrams fit, and the total number of datagrams.
func (q *groQueue) stageOverflow(bufs [][]byte, msgs []groMsg) (last, fit, total int) {
	last = -1
	for j, m := range msgs {
		k, room := m.segments(), len(bufs)-total
		if room > 0 {
			last, fit = j, min(k, room)
		}
		if k > room {
			q.push(m, bufs[j], max(room, 0))
		}
		total += k
	}
	return last, fit, total
}

// splitInto writes the first k datagrams of message m (in bufs[j]) to
// bufs[pos:pos+k], pos >= j. Datagram 0 may land in bufs[j] itself, at
// offset 0 where it already is; the others go to later slots.
func splitInto(bufs [][]byte, sizes []int, from []netip.AddrPort, j, pos, k int, m groMsg) {
	src := bufs[j]
	for i := k - 1; i >= 0; i-- {
		sizes[pos+i] = copy(bufs[pos+i], m.segment(src, i))
		from[pos+i] = m.from
	}
}

package udp

import (
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"

	"tunnel-agent/dataplane/internal/mmsg"
)

// UDP generic receive offload (UDP_GRO, Linux 5.0+) on the tunnel socket.
//
// Without it, a UDP_SEGMENT super-datagram that reaches the socket whole
// (over a veth, or from the loopback) is cut back into its datagrams by
// the kernel, each queued with its own wakeup and returned in its own
// recvmmsg slot. With it the kernel queues such a message whole, and on a
// real NIC also coalesces consecutive datagrams of one flow; recvmmsg then
// returns it in one slot with a UDP_GRO control message giving the segment
// size, and ReadBatch splits it (gro_split.go). If the kernel refuses the
// option, the socket reads datagram by datagram as before.
//
// Caller buffers of at least groBufSize bytes (the engine's) receive the
// messages directly and are split in place; with smaller buffers a GRO
// message would be truncated, so one message at a time is received into
// the reader's own buffer and copied out.

// groCtrlLen is the control buffer of each received message: room for the
// UDP_GRO message (an int) and a spare one, so that another option set on
// the socket later cannot crowd it out.
var groCtrlLen = 2 * unix.CmsgSpace(int(unsafe.Sizeof(int32(0))))

// groReader is the receive state of a transport with UDP_GRO on; guarded
// by Transport.rmu except the counters.
type groReader struct {
	q    groQueue
	msgs []groMsg  // the messages of the last recvmmsg that are kept
	one  [1][]byte // the buffer list for one message into q
	// counters
	messages, segments atomic.Uint64
}

func newGROReader() *groReader {
	return &groReader{q: newGROQueue(), msgs: make([]groMsg, mmsg.MaxBatch)}
}

var groRefused sync.Once

// enableGRO asks for UDP_GRO on fd and reports whether the kernel took it.
// Kernels without it answer ENOPROTOOPT (before 5.0) or EINVAL; any error
// leaves the socket reading datagram by datagram, noted once at debug level.
func enableGRO(fd int) bool {
	err := unix.SetsockoptInt(fd, unix.SOL_UDP, unix.UDP_GRO, 1)
	if err != nil {
		groRefused.Do(func() {
			slog.Debug("udp: kernel refused UDP_GRO; receiving datagram by datagram", "err", err)
		})
	}
	return err == nil
}

// GROStats returns the transport's UDP_GRO counters.
func (t *Transport) GROStats() GROStats {
	if t.gro == nil {
		return GROStats{}
	}
	return GROStats{Enabled: true, Messages: t.gro.messages.Load(), Segments: t.gro.segments.Load()}
}

// groSegmentSize returns the segment size from the UDP_GRO message in the
// ancillary data ctrl (an int), or 0 if there is none.
func groSegmentSize(ctrl []byte) int {
	return int(int32(mmsg.CmsgUint32(ctrl, unix.SOL_UDP, unix.UDP_GRO)))
}

// readGRO is ReadBatch with UDP_GRO; the caller holds t.rmu. Staged
// datagrams are returned first, without reading the socket.
func (t *Transport) readGRO(bufs [][]byte, sizes []int, from []netip.AddrPort) (int, error) {
	g := t.gro
	for {
		if g.q.pending() {
			out, dropped := g.q.drain(bufs, sizes, from)
			t.countTruncated(dropped)
			if out > 0 {
				return out, nil
			}
			continue
		}
		if !largeBuffers(bufs) {
			if err := t.receiveStaged(); err != nil {
				return 0, err
			}
			continue
		}
		if out, err := t.receiveInPlace(bufs, sizes, from); out > 0 || err != nil {
			return out, err
		}
	}
}

// largeBuffers reports whether every buffer holds any GRO message.
func largeBuffers(bufs [][]byte) bool {
	for _, b := range bufs {
		if len(b) < groBufSize {
			return false
		}
	}
	return true
}

func (t *Transport) countTruncated(n int) {
	if n > 0 {
		t.truncated.Add(uint64(n))
	}
}

// receiveInPlace reads messages into bufs and splits them there; the
// datagrams beyond the batch are staged. After a batch with coalesced
// messages it reads only as many as should fit.
func (t *Transport) receiveInPlace(bufs [][]byte, sizes []int, from []netip.AddrPort) (int, error) {
	g := t.gro
	got, err := t.r.Read(bufs[:g.q.readLimit(len(bufs))], true)
	if err != nil {
		return 0, t.opError("read", err)
	}
	k, most := t.collect(bufs, got)
	g.q.adapt(len(bufs), most)
	return g.q.expand(bufs, sizes, from, g.msgs[:k]), nil
}

// receiveStaged reads one message into the queue's own buffer.
func (t *Transport) receiveStaged() error {
	g := t.gro
	g.one[0] = g.q.recvArea()
	got, err := t.r.Read(g.one[:], true)
	if err != nil {
		return t.opError("read", err)
	}
	if k, _ := t.collect(g.one[:], got); k == 1 {
		g.q.pushReceived(g.msgs[0])
	}
	return nil
}

// collect describes the got messages the last read left in bufs as g.msgs,
// dropping (and counting) truncated ones; message j ends up in bufs[j]. It
// returns how many were kept and the most datagrams one carried.
func (t *Transport) collect(bufs [][]byte, got int) (k, most int) {
	g, m := t.gro, &t.r.Msgs
	for i := range got {
		h := &m.Hdrs[i]
		size, seg := int(h.Len), groSegmentSize(m.Control(i))
		// A truncated control buffer may have lost the segment size.
		if h.Hdr.Flags&unix.MSG_TRUNC != 0 || (seg == 0 && h.Hdr.Flags&unix.MSG_CTRUNC != 0) ||
			!mmsg.Compact(bufs, i, k, size) {
			t.truncated.Add(1)
			continue
		}
		g.msgs[k] = groMsg{n: size, seg: seg, from: mmsg.AddrPortFromRaw(&m.Names[i])}
		if c := g.msgs[k].segments(); c > 1 {
			g.messages.Add(1)
			g.segments.Add(uint64(c))
			most = max(most, c)
		}
		k++
	}
	return k, most
}

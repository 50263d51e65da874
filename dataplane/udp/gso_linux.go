package udp

import (
	"errors"
	"net/netip"
	"unsafe"

	"golang.org/x/sys/unix"

	"tunnel-agent/dataplane/internal/mmsg"
)

// UDP generic segmentation offload (UDP_SEGMENT, Linux 4.18+) on sends.
//
// A run of consecutive datagrams of one batch to the same destination with
// the same size (the last may be shorter) goes to the kernel as ONE message:
// the datagrams are its iovecs, and a UDP_SEGMENT control message tells the
// kernel to cut the payload back into datagrams of that size. The stack is
// then traversed once per run instead of once per datagram, and the split
// happens as late as possible (in the device, or in software just before
// it). The receiver sees the same datagrams as without GSO.
//
// The kernel refuses GSO with EIO when the outgoing device cannot checksum
// (tx checksum offload off); then GSO is switched off for the socket and
// the run is resent datagram by datagram. Any other error on a GSO message
// (EINVAL for a segment that does not fit the path, say) also resends that
// run without GSO, keeping GSO for the next batches.
const (
	gsoMaxSegments = 64    // UDP_MAX_SEGMENTS on older kernels
	gsoMaxBytes    = 65000 // under the 65507-byte limit of one UDP payload
)

// gsoCtrlLen is the room for one UDP_SEGMENT control message.
var gsoCtrlLen = unix.CmsgSpace(2)

// gsoBatch holds the arrays of one GSO sendmmsg, reused across calls.
type gsoBatch struct {
	hdrs  []unix.Mmsghdr
	iovs  []unix.Iovec // one per datagram, in batch order
	names []unix.RawSockaddrInet6
	ctrl  []byte
	segs  []int // datagrams carried by header k
}

func newGSOBatch() *gsoBatch {
	return &gsoBatch{
		hdrs: make([]unix.Mmsghdr, mmsg.MaxBatch), iovs: make([]unix.Iovec, mmsg.MaxBatch),
		names: make([]unix.RawSockaddrInet6, mmsg.MaxBatch), ctrl: make([]byte, mmsg.MaxBatch*gsoCtrlLen),
		segs: make([]int, mmsg.MaxBatch),
	}
}

// runLen returns how many datagrams from bufs[0] on form one GSO run.
func runLen(bufs [][]byte, to []netip.AddrPort) int {
	size := len(bufs[0])
	if size == 0 {
		return 1 // a keepalive: gso_size 0 is invalid
	}
	n, total := 1, size
	for n < len(bufs) && n < gsoMaxSegments && to[n] == to[0] &&
		len(bufs[n]) > 0 && len(bufs[n]) <= size && total+len(bufs[n]) <= gsoMaxBytes {
		total += len(bufs[n])
		n++
		if len(bufs[n-1]) < size {
			break // a shorter datagram ends the run
		}
	}
	return n
}

// buildGSO prepares the headers of t.g for bufs (at most maxBatch) and
// returns their number. It stops before a destination that the socket's
// family cannot express, and then also returns that error.
func (t *Transport) buildGSO(bufs [][]byte, to []netip.AddrPort) (int, error) {
	g, k := t.g, 0
	for i := 0; i < len(bufs); k++ {
		n := runLen(bufs[i:], to[i:])
		h := &g.hdrs[k]
		h.Hdr, h.Len = unix.Msghdr{}, 0
		if !mmsg.PutSockaddr(&g.names[k], &h.Hdr, t.fam, t.mapped(to[i])) {
			return k, errBadDest(to[i])
		}
		for j := range n {
			g.iovs[i+j].Base = unsafe.SliceData(bufs[i+j])
			g.iovs[i+j].SetLen(len(bufs[i+j]))
		}
		h.Hdr.Iov = &g.iovs[i]
		h.Hdr.SetIovlen(n)
		if n > 1 {
			g.putSegment(k, h, len(bufs[i]))
		}
		g.segs[k] = n
		i += n
	}
	return k, nil
}

// putSegment attaches the UDP_SEGMENT control message (segment size) to h.
func (g *gsoBatch) putSegment(k int, h *unix.Mmsghdr, size int) {
	c := g.ctrl[k*gsoCtrlLen : (k+1)*gsoCtrlLen]
	cm := (*unix.Cmsghdr)(unsafe.Pointer(&c[0]))
	cm.Level, cm.Type = unix.SOL_UDP, unix.UDP_SEGMENT
	cm.SetLen(unix.CmsgLen(2))
	*(*uint16)(unsafe.Pointer(&c[unix.CmsgLen(0)])) = uint16(size)
	h.Hdr.Control = &c[0]
	h.Hdr.SetControllen(gsoCtrlLen)
}

// datagrams is the number of datagrams carried by the first k headers.
func (g *gsoBatch) datagrams(k int) int {
	n := 0
	for _, s := range g.segs[:k] {
		n += s
	}
	return n
}

// writeGSO is WriteBatch with GSO; the caller holds t.wmu.
func (t *Transport) writeGSO(bufs [][]byte, to []netip.AddrPort) (int, error) {
	total := 0
	for len(bufs) > 0 {
		chunk := min(len(bufs), mmsg.MaxBatch)
		nh, bad := t.buildGSO(bufs[:chunk], to[:chunk])
		sent, err := t.gw.WriteMsgs(t.g.hdrs[:nh])
		done := t.g.datagrams(sent)
		total += done
		if err != nil && sent < nh && t.g.segs[sent] > 1 {
			// The kernel refused this run as one message: send it plainly.
			if errors.Is(err, unix.EIO) {
				t.gso.Store(false)
			}
			n := t.g.segs[sent]
			plain, perr := t.writePlain(bufs[done:done+n], to[done:done+n])
			if total += plain; perr != nil {
				return total, perr
			}
			bufs, to = bufs[done+n:], to[done+n:]
			continue
		}
		if err == nil {
			err = bad
		}
		if err != nil {
			return total, t.opError("write", err)
		}
		bufs, to = bufs[chunk:], to[chunk:]
	}
	return total, nil
}

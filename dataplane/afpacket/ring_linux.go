package afpacket

import (
	"encoding/binary"
	"net"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// rxRing is the TPACKET_V3 receive ring of a Capture opened with
// Options.Ring: the kernel writes the frames that pass the filter
// into blocks of memory mapped into the process, and read copies them out
// of the blocks it has handed over (ringWalker), with no syscall while
// blocks are ready. When none is, read waits in the runtime poller on the
// socket: packet_poll reports it readable once a block is retired, and
// closing the socket wakes the wait, as on the socket path.
//
// Hand-written: no maintained pure-Go library maps a TPACKET_V3 ring
// (gopacket's afpacket needs cgo; mdlayher/packet has no ring).
//
// read is serialised by the Capture's mutex, and unmap takes the
// same mutex after the socket is closed, so no reader touches the memory
// once it is unmapped.
type rxRing struct {
	mem []byte // nil once unmapped
	w   *ringWalker
	rc  syscall.RawConn
	c   *Capture              // link headers, super-packet cutting, counters
	fn  func(fd uintptr) bool // fill, bound once: read allocates nothing

	bufs  [][]byte // per-call state of read
	sizes []int
	meta  []frameMeta
	out   int
}

// setupRing switches fd to TPACKET_V3 and maps a receive ring of the
// geometry o (defaults applied). It runs before bind, so the ring sees
// every frame from the first one on.
func setupRing(fd int, o Options) (*rxRing, error) {
	if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_VERSION, unix.TPACKET_V3); err != nil {
		return nil, os.NewSyscallError("setsockopt PACKET_VERSION", err)
	}
	// One "frame" per block: V3 packs frames of any size into a block, but
	// the kernel still checks frame_size*frame_nr against the blocks.
	req := unix.TpacketReq3{
		Block_size: uint32(o.RingBlockSize), Block_nr: uint32(o.RingBlocks),
		Frame_size: uint32(o.RingBlockSize), Frame_nr: uint32(o.RingBlocks),
		Retire_blk_tov: o.retireMillis(),
	}
	if err := unix.SetsockoptTpacketReq3(fd, unix.SOL_PACKET, unix.PACKET_RX_RING, &req); err != nil {
		return nil, os.NewSyscallError("setsockopt PACKET_RX_RING", err)
	}
	mem, err := unix.Mmap(fd, 0, o.RingBlockSize*o.RingBlocks, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, os.NewSyscallError("mmap packet ring", err)
	}
	return &rxRing{mem: mem, w: newRingWalker(mem, o.RingBlockSize, o.RingBlocks)}, nil
}

// init binds the ring to the socket's poller and to its capture (link
// headers, super-packet cutting, counters).
func (r *rxRing) init(rc syscall.RawConn, c *Capture) {
	r.rc, r.c = rc, c
	r.fn = r.fill
}

// read copies frames into bufs, blocking until at least one, and records
// what their headers say in meta.
func (r *rxRing) read(bufs [][]byte, sizes []int, meta []frameMeta) (int, error) {
	if r.mem == nil {
		return 0, net.ErrClosed
	}
	r.bufs, r.sizes, r.meta, r.out = bufs, sizes, meta, 0
	err := r.rc.Read(r.fn)
	r.bufs, r.sizes, r.meta = nil, nil, nil
	return r.out, err
}

// fill copies the ready frames into r.bufs and reports whether there was
// at least one; false makes the poller wait for the next retired block.
//
// It takes only as many frames as the batch holds once super-packets are
// cut into segments (gsoSplitter.expand), leaving the rest in the ring for
// the next batch, so cutting never drops what follows a super-packet. A
// super-packet with more segments than the whole batch is taken alone;
// expand returns its remaining segments later.
func (r *rxRing) fill(uintptr) bool {
	room := len(r.bufs)
	for r.out < len(r.bufs) {
		p, ok := r.w.peek()
		if !ok {
			break
		}
		pkt, m, ok := r.frame(p)
		k := 1
		if ok {
			_, k = r.c.g.segments(pkt, m)
		}
		if k > room && r.out > 0 {
			break
		}
		r.w.consume()
		if r.take(p, pkt, m, ok) {
			room -= k
		}
	}
	r.w.flush()
	return r.out > 0
}

// frame returns the IP packet of ring frame p (past its link-layer
// header) and what its headers say; ok is false when the link-layer
// header is not the expected length or the virtio-net header is missing.
func (r *rxRing) frame(p ringPacket) (pkt []byte, m frameMeta, ok bool) {
	l := r.c.link
	if len(p.head) < ringPktHdrLen+l.vnetLen || len(p.data) < l.linkLen ||
		int(binary.NativeEndian.Uint16(p.head[ringPktNet:]))-len(p.head) != l.linkLen {
		return nil, m, false
	}
	if l.vnetLen > 0 {
		m = parseVnet(p.head[len(p.head)-l.vnetLen:])
	}
	m.partial = m.partial || p.status&unix.TP_STATUS_CSUMNOTREADY != 0
	return p.data[l.linkLen:], m, true
}

// take copies the IP packet pkt of frame p into the next buffer, or drops
// and counts it if the kernel cut it (snaplen < len), it does not fit, or
// frame could not take it apart (!ok).
func (r *rxRing) take(p ringPacket, pkt []byte, m frameMeta, ok bool) bool {
	buf := r.bufs[r.out]
	switch {
	case !ok:
		r.c.unreadable.Add(1)
		return false
	case len(p.data) < p.wireLen || len(pkt) > len(buf):
		r.c.truncated.Add(1)
		return false
	}
	r.sizes[r.out] = copy(buf, pkt)
	r.meta[r.out] = m
	r.out++
	return true
}

// unmap releases the ring's memory. The socket must be closed and no read
// running (the caller holds the capture's mutex).
func (r *rxRing) unmap() {
	if r == nil || r.mem == nil {
		return
	}
	_ = unix.Munmap(r.mem)
	r.mem, r.w = nil, nil
}

// readRing is ReadBatch on the ring: as many frames as the batch holds
// once super-packets are cut, then the cutting.
func (c *Capture) readRing(bufs [][]byte, sizes []int) (int, error) {
	got, err := c.rx.read(bufs, sizes, c.g.metaFor(len(bufs)))
	if err != nil {
		return 0, c.readError(err)
	}
	return c.g.expand(bufs, sizes, got), nil
}

package dataplane

import (
	"net"
	"os"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"
)

// rxRing is the TPACKET_V3 receive ring of a PacketCapture opened with
// CaptureOptions.Ring: the kernel writes the frames that pass the filter
// into blocks of memory mapped into the process, and read copies them out
// of the blocks it has handed over (ringWalker), with no syscall while
// blocks are ready. When none is, read waits in the runtime poller on the
// socket: packet_poll reports it readable once a block is retired, and
// closing the socket wakes the wait, as on the socket path.
//
// Hand-written: no maintained pure-Go library maps a TPACKET_V3 ring
// (gopacket's afpacket needs cgo; mdlayher/packet has no ring).
//
// read is serialised by the PacketCapture's mutex, and unmap takes the
// same mutex after the socket is closed, so no reader touches the memory
// once it is unmapped.
type rxRing struct {
	mem       []byte // nil once unmapped
	w         *ringWalker
	rc        syscall.RawConn
	g         *gsoSplitter // for the segment count of super-packets
	truncated *atomic.Uint64
	fn        func(fd uintptr) bool // fill, bound once: read allocates nothing

	bufs  [][]byte // per-call state of read
	sizes []int
	out   int
}

// setupRing switches fd to TPACKET_V3 and maps a receive ring of the
// geometry o (defaults applied). It runs before bind, so the ring sees
// every frame from the first one on.
func setupRing(fd int, o CaptureOptions) (*rxRing, error) {
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

// init binds the ring to the socket's poller and the capture's
// super-packet cutting and counter.
func (r *rxRing) init(rc syscall.RawConn, g *gsoSplitter, truncated *atomic.Uint64) {
	r.rc, r.g, r.truncated = rc, g, truncated
	r.fn = r.fill
}

// read copies frames into bufs, blocking until at least one.
func (r *rxRing) read(bufs [][]byte, sizes []int) (int, error) {
	if r.mem == nil {
		return 0, net.ErrClosed
	}
	r.bufs, r.sizes, r.out = bufs, sizes, 0
	err := r.rc.Read(r.fn)
	r.bufs, r.sizes = nil, nil
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
		k := 1
		if r.g != nil {
			_, k = r.g.segments(p.data)
		}
		if k > room && r.out > 0 {
			break
		}
		r.w.consume()
		if r.take(p) {
			room -= k
		}
	}
	r.w.flush()
	return r.out > 0
}

// take copies one frame into the next buffer, or drops and counts it if
// the kernel cut it (snaplen < len) or it does not fit.
func (r *rxRing) take(p ringPacket) bool {
	buf := r.bufs[r.out]
	if len(p.data) < p.wireLen || len(p.data) > len(buf) {
		r.truncated.Add(1)
		return false
	}
	n := copy(buf, p.data)
	if p.status&unix.TP_STATUS_CSUMNOTREADY != 0 {
		completeChecksum(buf[:n])
	}
	r.sizes[r.out] = n
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
func (c *PacketCapture) readRing(bufs [][]byte, sizes []int) (int, error) {
	got, err := c.rx.read(bufs, sizes)
	if err != nil {
		if c.closed.Load() {
			err = net.ErrClosed
		}
		return 0, &net.OpError{Op: "read", Net: "packet", Addr: captureAddr(c.ifname), Err: err}
	}
	return c.g.expand(bufs, sizes, got), nil
}

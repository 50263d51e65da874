package afpacket

import (
	"encoding/binary"
	"math"
	"sync/atomic"
	"unsafe"
)

// The layout of a TPACKET_V3 receive ring (linux/if_packet.h), as far as
// ringWalker reads it. The ring is nblk blocks of bsize bytes. Each block
// starts with a struct tpacket_block_desc; its packets follow, each a
// struct tpacket3_hdr with the frame tp_mac bytes after the header's start.
// The kernel fills blocks in order and hands one to userspace by setting
// block_status to TP_STATUS_USER once it is full or its retire timer fired;
// userspace hands it back by storing TP_STATUS_KERNEL.
const (
	ringBlockStatus   = 8  // tpacket_block_desc.hdr.bh1.block_status (u32)
	ringBlockNumPkts  = 12 // .num_pkts (u32)
	ringBlockFirstPkt = 16 // .offset_to_first_pkt (u32)
	ringBlockDescLen  = 48 // sizeof(struct tpacket_block_desc)

	ringPktNext    = 0  // tpacket3_hdr.tp_next_offset (u32)
	ringPktSnaplen = 12 // .tp_snaplen (u32): bytes in the ring
	ringPktLen     = 16 // .tp_len (u32): bytes on the wire
	ringPktStatus  = 20 // .tp_status (u32)
	ringPktMac     = 24 // .tp_mac (u16): frame offset from the header
	ringPktNet     = 26 // .tp_net (u16): network header offset from the header
	ringPktHdrLen  = 48 // sizeof(struct tpacket3_hdr)

	ringStatusKernel = 0 // TP_STATUS_KERNEL
	ringStatusUser   = 1 // TP_STATUS_USER
)

// ringPacket is one frame of the ring. data aliases the ring: it is valid
// until the walker hands its block back.
type ringPacket struct {
	data    []byte // tp_snaplen bytes at tp_mac
	wireLen int    // tp_len
	status  uint32 // tp_status (TP_STATUS_CSUMNOTREADY, ...)
	// head is the struct tpacket3_hdr and what follows it up to the frame
	// (with PACKET_VNET_HDR, the virtio-net header ends it).
	head []byte
}

// ringWalker reads a TPACKET_V3 ring in order: the retired blocks, and in
// each its packets by tp_next_offset. A batch may stop anywhere, also
// before a packet it has looked at (peek without consume): the position is
// kept, and a block goes back to the kernel only when all its packets were
// consumed (release).
//
// The kernel writes the headers, but the walker trusts none of them: every
// offset is checked against the block, so a garbage header ends its block
// (counted in bad) instead of reading out of bounds, and every call does a
// bounded amount of work.
type ringWalker struct {
	mem   []byte // nblk*bsize bytes; block starts must be 4-byte aligned
	bsize int
	nblk  int
	blk   int  // current block
	open  bool // blk is the user's and is being walked
	left  int  // packets of blk not consumed yet
	off   int  // offset in blk of the next packet's header
	skip  int  // tp_next_offset of the packet at off, once peeked
	bad   uint64
}

func newRingWalker(mem []byte, bsize, nblk int) *ringWalker {
	return &ringWalker{mem: mem, bsize: bsize, nblk: nblk}
}

// peek returns the next packet without moving past it, or false when the
// next block is still the kernel's. A block whose packets were all
// consumed is handed back first.
func (w *ringWalker) peek() (ringPacket, bool) {
	for range w.nblk + 1 {
		if w.open && w.left == 0 {
			w.release()
		}
		if !w.open && !w.openBlock() {
			return ringPacket{}, false
		}
		if p, ok := w.packet(); ok {
			return p, true
		}
	}
	return ringPacket{}, false
}

// flush hands the current block back if all its packets were consumed
// (the caller has copied them), so the kernel need not wait for peek.
func (w *ringWalker) flush() {
	if w.open && w.left == 0 {
		w.release()
	}
}

// block returns the current block.
func (w *ringWalker) block() []byte { return w.mem[w.blk*w.bsize : (w.blk+1)*w.bsize] }

// status points at the current block's block_status, which the kernel and
// the walker hand over with atomic accesses.
func (w *ringWalker) status() *uint32 {
	return (*uint32)(unsafe.Pointer(&w.block()[ringBlockStatus]))
}

// openBlock starts walking the current block if the kernel retired it.
func (w *ringWalker) openBlock() bool {
	if atomic.LoadUint32(w.status())&ringStatusUser == 0 {
		return false
	}
	b := w.block()
	w.open = true
	w.left = ringField(b[ringBlockNumPkts:])
	w.off = ringField(b[ringBlockFirstPkt:])
	return true
}

// release hands the current block back to the kernel and moves on.
func (w *ringWalker) release() {
	atomic.StoreUint32(w.status(), ringStatusKernel)
	w.open, w.left = false, 0
	w.blk = (w.blk + 1) % w.nblk
}

// packet returns the packet at w.off. A header or frame that does not lie
// inside the block ends the block (false).
func (w *ringWalker) packet() (ringPacket, bool) {
	b := w.block()
	if w.left <= 0 || w.off < ringBlockDescLen || w.off > len(b)-ringPktHdrLen {
		w.endBlock(w.left > 0)
		return ringPacket{}, false
	}
	h := b[w.off : w.off+ringPktHdrLen]
	snap := ringField(h[ringPktSnaplen:])
	start := w.off + int(binary.NativeEndian.Uint16(h[ringPktMac:]))
	if start < w.off+ringPktHdrLen || snap > len(b)-start {
		w.endBlock(true)
		return ringPacket{}, false
	}
	p := ringPacket{
		data:    b[start : start+snap],
		wireLen: ringField(h[ringPktLen:]),
		status:  binary.NativeEndian.Uint32(h[ringPktStatus:]),
		head:    b[w.off:start],
	}
	w.skip = ringField(h[ringPktNext:])
	return p, true
}

// ringField reads a u32 count, offset or length of a ring header as a
// non-negative int, capped at MaxInt32: on 32-bit platforms a plain int()
// would turn values of 2^31 and more negative, and a garbage header could
// then pass the bounds checks below or wrap the walker's arithmetic. No
// real field comes near the cap (blocks are far smaller).
func ringField(b []byte) int {
	return int(min(binary.NativeEndian.Uint32(b), math.MaxInt32))
}

// consume moves past the packet peek returned; a next offset that cannot
// lead to another header ends the block after it.
func (w *ringWalker) consume() {
	w.left--
	if w.left > 0 && (w.skip < ringPktHdrLen || w.skip > w.bsize-w.off) {
		w.endBlock(true)
		return
	}
	w.off += min(w.skip, w.bsize) // bounded: cannot wrap, even on 32 bits
}

// endBlock stops walking the current block: nothing more is read from it
// and the next call hands it back. garbage counts it as malformed.
func (w *ringWalker) endBlock(garbage bool) {
	if garbage {
		w.bad++
	}
	w.left = 0
}

package afpacket

import (
	"encoding/binary"

	"tunnel-agent/dataplane/internal/header"
)

// The capture's super-packet cutting and checksum completion (segment.go,
// split.go, checksum.go), exported for the other readers of LAN packets:
// dataplane/ebpf's exception reader hands the engine what its tc program
// took off the LAN interface, super-packets and partial checksums
// included, and must finish a batch exactly as this capture does.

// Meta is what a reader knows of a packet besides its bytes.
type Meta struct {
	// Partial: the TCP or UDP checksum field holds only the pseudo-header
	// sum (CHECKSUM_PARTIAL), as in every GSO super-packet.
	Partial bool
	// GSOType is the kind of super-packet (GSOTCPv4, GSOTCPv6, GSOUDP),
	// GSOSize its segment payload size (gso_size); zero if unknown.
	GSOType uint8
	GSOSize uint16
}

// GSO types of Meta, as in the virtio-net header.
const (
	GSOTCPv4 = vnetGSOTCPv4
	GSOTCPv6 = vnetGSOTCPv6
	GSOUDP   = vnetGSOUDPL4
)

// Segmenter finishes batches of packets: it completes partial checksums
// and cuts super-packets into the segments their sender meant, in place,
// staging what does not fit the batch for the next call (Drain).
type Segmenter struct{ g *gsoSplitter }

// NewSegmenter returns a Segmenter for packets from an interface with the
// given MTU (TCP segments are cut to it at most).
func NewSegmenter(mtu int) *Segmenter { return &Segmenter{g: newGSOSplitter(mtu)} }

// Drain returns segments staged by an earlier Finish into bufs, or 0 if
// there are none: call it before reading a new batch.
func (s *Segmenter) Drain(bufs [][]byte, sizes []int) int { return s.g.drain(bufs, sizes) }

// ReadLimit is how many of n buffers to read packets into, so that the
// segments of the super-packets seen lately fit the batch.
func (s *Segmenter) ReadLimit(n int) int { return s.g.readLimit(n) }

// Finish completes and cuts the first len(meta) packets of bufs (sizes
// given; meta[i] describes packet i) and returns the number of entries
// now filled. It allocates only when a batch is larger than every one
// before.
func (s *Segmenter) Finish(bufs [][]byte, sizes []int, meta []Meta) int {
	fm := s.g.metaFor(len(meta))
	for i, m := range meta {
		fm[i] = frameMeta{partial: m.Partial, gsoType: m.GSOType, gsoSize: m.GSOSize}
	}
	return s.g.expand(bufs, sizes, len(meta))
}

// Dropped counts packets dropped because the segments of a super-packet
// before them filled the batch.
func (s *Segmenter) Dropped() uint64 { return s.g.dropped.Load() }

// ChecksumPending reports whether the TCP or UDP checksum of the whole IP
// packet pkt is unfinished: it does not verify, and its field holds
// exactly the pseudo-header sum, as a sender that left the checksum to
// offload (CHECKSUM_PARTIAL) put it there. For a reader that cannot ask
// the kernel (the capture's TP_STATUS_CSUMNOTREADY): a packet whose
// checksum is right is never taken for one, a wrong checksum that happens
// to equal its pseudo-header sum (one in 65536) is. Fragments, other
// protocols and IPv6 packets with a routing header report false.
func ChecksumPending(pkt []byte) bool {
	l, ok := locateL4(pkt)
	if !ok || l.routing {
		return false
	}
	off, minLen, ok := checksumField(l.proto)
	seg := pkt[l.off:l.total]
	if !ok || len(seg) < minLen {
		return false
	}
	field := binary.BigEndian.Uint16(seg[off:])
	if l.proto == header.ProtoUDP && field == 0 && !l.v6 {
		return false // no checksum
	}
	var s superPkt
	s.v6 = l.v6
	s.pseudoSum(pkt, l, false)
	pseudo := s.pseudo + uint32(len(seg))
	if header.Checksum(seg, pseudo) == 0 {
		return false // verifies: finished
	}
	return field == ^header.Checksum(nil, pseudo)
}

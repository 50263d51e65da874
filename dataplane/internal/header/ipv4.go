package dataplane

import (
	"encoding/binary"
	"net/netip"
)

// IPv4 header layout (RFC 791). Offsets are into the header.
const (
	ipv4MinHeaderLen = 20
	ipv4MaxLen       = 0xffff

	ipv4OffTotalLen = 2
	ipv4OffFrag     = 6
	ipv4OffTTL      = 8
	ipv4OffProto    = 9
	ipv4OffChecksum = 10
	ipv4OffSrc      = 12
	ipv4OffDst      = 16

	ipv4FlagDF       = 0x4000
	ipv4FlagMF       = 0x2000
	ipv4FragOffMask  = 0x1fff
	ipv4ProtoICMP    = 1
	ipv4OuterUDPSize = 20 + 8 // outer IPv4 + UDP headers added by the kernel
)

// ipv4Header is the parsed, validated view of an IPv4 header. It holds only
// values (no pointers into the packet) so parsing never allocates.
type ipv4Header struct {
	hdrLen   int // IHL*4
	totalLen int
	ttl      uint8
	proto    uint8
	flagsOff uint16 // flags and fragment offset, host order
	src, dst netip.Addr
}

// df reports whether the Don't Fragment flag is set.
func (h *ipv4Header) df() bool { return h.flagsOff&ipv4FlagDF != 0 }

// fragOffset is the fragment offset field (in units of 8 bytes); non-zero
// marks a non-first fragment.
func (h *ipv4Header) fragOffset() uint16 { return h.flagsOff & ipv4FragOffMask }

// parseIPv4 validates the IPv4 header at the start of pkt and returns it.
// It accepts trailing bytes after the total length (Ethernet padding on the
// capture side); callers that need an exact length check it themselves.
// The caller has already checked that the version nibble is 4.
func parseIPv4(pkt []byte) (ipv4Header, DropReason) {
	var h ipv4Header
	if len(pkt) < ipv4MinHeaderLen {
		return h, DropTooShort
	}
	h.hdrLen = int(pkt[0]&0x0f) * 4
	h.totalLen = int(binary.BigEndian.Uint16(pkt[ipv4OffTotalLen:]))
	if h.hdrLen < ipv4MinHeaderLen || h.totalLen < h.hdrLen {
		return h, DropBadHeader
	}
	if len(pkt) < h.totalLen {
		return h, DropTooShort // truncated in transit or by a short buffer
	}
	if checksum(pkt[:h.hdrLen], 0) != 0 {
		return h, DropBadHeader
	}
	h.fillFields(pkt)
	return h, DropNone
}

// fillFields copies the non-length fields of a checked header into h.
func (h *ipv4Header) fillFields(pkt []byte) {
	h.ttl = pkt[ipv4OffTTL]
	h.proto = pkt[ipv4OffProto]
	h.flagsOff = binary.BigEndian.Uint16(pkt[ipv4OffFrag:])
	h.src = netip.AddrFrom4([4]byte(pkt[ipv4OffSrc : ipv4OffSrc+4]))
	h.dst = netip.AddrFrom4([4]byte(pkt[ipv4OffDst : ipv4OffDst+4]))
}

// checksum returns the Internet checksum (RFC 1071) of b, starting from the
// partial sum initial. Over a header that includes its own valid checksum
// field the result is 0.
func checksum(b []byte, initial uint32) uint16 {
	sum := uint64(initial)
	for len(b) >= 8 {
		sum += uint64(binary.BigEndian.Uint32(b)) + uint64(binary.BigEndian.Uint32(b[4:]))
		b = b[8:]
	}
	for len(b) >= 2 {
		sum += uint64(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		sum += uint64(b[0]) << 8 // odd byte is padded with a zero byte
	}
	return ^fold(sum)
}

// fold reduces a ones' complement partial sum to 16 bits with end-around
// carries.
func fold(sum uint64) uint16 {
	for sum > 0xffff {
		sum = (sum & 0xffff) + (sum >> 16)
	}
	return uint16(sum)
}

// checksumUpdate returns the header checksum hc after one 16-bit word
// changed from old to new, per RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m').
// Unlike the older RFC 1141 form it never yields 0x0000 where a full
// recomputation yields 0xffff.
func checksumUpdate(hc, old, new uint16) uint16 {
	return ^fold(uint64(^hc) + uint64(^old) + uint64(new))
}

// decrementTTL lowers the TTL of the valid IPv4 header in pkt by one and
// patches the header checksum incrementally instead of recomputing it: the
// TTL shares its 16-bit word with the protocol byte.
func decrementTTL(pkt []byte) {
	old := binary.BigEndian.Uint16(pkt[ipv4OffTTL:])
	pkt[ipv4OffTTL]--
	hc := binary.BigEndian.Uint16(pkt[ipv4OffChecksum:])
	binary.BigEndian.PutUint16(pkt[ipv4OffChecksum:], checksumUpdate(hc, old, old-0x0100))
}

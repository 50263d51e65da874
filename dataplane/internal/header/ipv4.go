// Package header parses and edits IPv4 and IPv6 headers in place: the
// validation both directions of the engine apply, the checksums, and the
// offsets that the capture (checksum completion, super-packet cutting, the
// BPF filter) and the injector read. It allocates nothing: parsed headers
// are values, and edits patch the packet's bytes.
package header

import (
	"encoding/binary"
	"net/netip"
)

// IPv4 header layout (RFC 791). Offsets are into the header.
const (
	IPv4MinHeaderLen = 20
	IPv4MaxLen       = 0xffff

	IPv4OffTotalLen = 2
	IPv4OffFrag     = 6
	IPv4OffTTL      = 8
	IPv4OffProto    = 9
	IPv4OffChecksum = 10
	IPv4OffSrc      = 12
	IPv4OffDst      = 16

	IPv4FlagDF      = 0x4000
	IPv4FlagMF      = 0x2000
	IPv4FragOffMask = 0x1fff
)

// IP protocol numbers (IPv4 protocol, IPv6 next header) the dataplane
// looks at.
const (
	ProtoICMP   = 1
	ProtoTCP    = 6
	ProtoUDP    = 17
	ProtoICMPv6 = 58
)

// Fault says why a header did not parse.
type Fault uint8

const (
	OK        Fault = iota // parsed
	TooShort               // shorter than its header or than its length fields say
	Malformed              // a length field, the checksum or the extension header chain is wrong
)

// IPv4 is the parsed, validated view of an IPv4 header. It holds only
// values (no pointers into the packet) so parsing never allocates.
type IPv4 struct {
	HeaderLen int // IHL*4
	TotalLen  int
	TTL       uint8
	Proto     uint8
	FlagsOff  uint16 // flags and fragment offset, host order
	Src, Dst  netip.Addr
}

// DF reports whether the Don't Fragment flag is set.
func (h *IPv4) DF() bool { return h.FlagsOff&IPv4FlagDF != 0 }

// FragOffset is the fragment offset field (in units of 8 bytes); non-zero
// marks a non-first fragment.
func (h *IPv4) FragOffset() uint16 { return h.FlagsOff & IPv4FragOffMask }

// ParseIPv4 validates the IPv4 header at the start of pkt and returns it.
// It accepts trailing bytes after the total length (Ethernet padding on the
// capture side); callers that need an exact length check it themselves.
// The caller has already checked that the version nibble is 4.
func ParseIPv4(pkt []byte) (IPv4, Fault) {
	var h IPv4
	if len(pkt) < IPv4MinHeaderLen {
		return h, TooShort
	}
	h.HeaderLen = int(pkt[0]&0x0f) * 4
	h.TotalLen = int(binary.BigEndian.Uint16(pkt[IPv4OffTotalLen:]))
	if h.HeaderLen < IPv4MinHeaderLen || h.TotalLen < h.HeaderLen {
		return h, Malformed
	}
	if len(pkt) < h.TotalLen {
		return h, TooShort // truncated in transit or by a short buffer
	}
	if Checksum(pkt[:h.HeaderLen], 0) != 0 {
		return h, Malformed
	}
	h.fillFields(pkt)
	return h, OK
}

// fillFields copies the non-length fields of a checked header into h.
func (h *IPv4) fillFields(pkt []byte) {
	h.TTL = pkt[IPv4OffTTL]
	h.Proto = pkt[IPv4OffProto]
	h.FlagsOff = binary.BigEndian.Uint16(pkt[IPv4OffFrag:])
	h.Src = netip.AddrFrom4([4]byte(pkt[IPv4OffSrc : IPv4OffSrc+4]))
	h.Dst = netip.AddrFrom4([4]byte(pkt[IPv4OffDst : IPv4OffDst+4]))
}

// Checksum returns the Internet checksum (RFC 1071) of b, starting from the
// partial sum initial. Over a header that includes its own valid checksum
// field the result is 0.
func Checksum(b []byte, initial uint32) uint16 {
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

// ChecksumUpdate returns the header checksum hc after one 16-bit word
// changed from was to now, per RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m').
// Unlike the older RFC 1141 form it never yields 0x0000 where a full
// recomputation yields 0xffff.
func ChecksumUpdate(hc, was, now uint16) uint16 {
	return ^fold(uint64(^hc) + uint64(^was) + uint64(now))
}

// DecrementTTL lowers the TTL of the valid IPv4 header in pkt by one and
// patches the header checksum incrementally instead of recomputing it: the
// TTL shares its 16-bit word with the protocol byte.
func DecrementTTL(pkt []byte) {
	old := binary.BigEndian.Uint16(pkt[IPv4OffTTL:])
	pkt[IPv4OffTTL]--
	hc := binary.BigEndian.Uint16(pkt[IPv4OffChecksum:])
	binary.BigEndian.PutUint16(pkt[IPv4OffChecksum:], ChecksumUpdate(hc, old, old-0x0100))
}

package header

import (
	"encoding/binary"
	"net/netip"
)

// IPv6 header layout (RFC 8200). Offsets are into the fixed header.
const (
	IPv6HeaderLen = 40

	IPv6OffPayloadLen = 4
	IPv6OffNextHeader = 6
	IPv6OffHopLimit   = 7
	IPv6OffSrc        = 8
	IPv6OffDst        = 24

	// IPv6MinMTU is the link MTU every IPv6 path must carry (RFC 8200 §5).
	IPv6MinMTU = 1280

	// Next-header values of the extension headers the parser walks, and
	// of the upper layers it cares about.
	ipv6ExtHopByHop = 0
	ipv6ExtRouting  = 43
	ipv6ExtFragment = 44
	ipv6ExtAH       = 51
	ipv6ExtDestOpts = 60
	ipv6ExtMobility = 135
	ipv6ExtHIP      = 139
	ipv6ExtShim6    = 140

	// ipv6MaxExtHeaders bounds the walk over the extension header chain,
	// so a crafted packet cannot make it long; a longer chain is malformed
	// for our purposes (RFC 8200 §4.1 allows each header at most twice).
	ipv6MaxExtHeaders = 16
)

// IPv6 is the parsed, validated view of an IPv6 packet: the fixed
// header and what the extension header chain says. Values only, so parsing
// never allocates.
type IPv6 struct {
	TotalLen int // 40 + payload length
	HopLimit uint8
	// Proto is the upper-layer protocol after the extension headers
	// (for ESP or "no next header", that value), and L4Off the offset of
	// its header; L4Off is 0 in a non-first fragment, which holds none.
	Proto    uint8
	L4Off    int
	Fragment bool // a fragment header is present
	FragOff  uint16
	// Routing: a routing header is present, so the destination of the
	// transport checksum's pseudo-header is not Dst but the final one.
	Routing  bool
	Src, Dst netip.Addr
}

// FirstFragment reports whether the packet is unfragmented or the first
// fragment (the one that holds the upper-layer header).
func (h *IPv6) FirstFragment() bool { return h.FragOff == 0 }

// ParseIPv6 validates the IPv6 packet at the start of pkt and walks its
// extension headers. Like ParseIPv4 it accepts trailing bytes after the
// payload length (link-layer padding). Jumbograms (payload length 0 with a
// jumbo option) are refused: they cannot be one UDP datagram anyway. The
// caller has already checked that the version nibble is 6.
func ParseIPv6(pkt []byte) (IPv6, Fault) {
	var h IPv6
	if len(pkt) < IPv6HeaderLen {
		return h, TooShort
	}
	plen := int(binary.BigEndian.Uint16(pkt[IPv6OffPayloadLen:]))
	h.TotalLen = IPv6HeaderLen + plen
	if plen == 0 && pkt[IPv6OffNextHeader] == ipv6ExtHopByHop {
		return h, Malformed // jumbogram
	}
	if len(pkt) < h.TotalLen {
		return h, TooShort
	}
	h.HopLimit = pkt[IPv6OffHopLimit]
	h.Src = netip.AddrFrom16([16]byte(pkt[IPv6OffSrc : IPv6OffSrc+16]))
	h.Dst = netip.AddrFrom16([16]byte(pkt[IPv6OffDst : IPv6OffDst+16]))
	if !h.walkExtensions(pkt[:h.TotalLen]) {
		return h, Malformed
	}
	return h, OK
}

// walkExtensions follows the extension header chain of pkt (trimmed to its
// total length) and records the upper layer in h. It reports false for a
// chain that is malformed: a header running past the packet, a hop-by-hop
// header anywhere but first, or more than ipv6MaxExtHeaders headers.
func (h *IPv6) walkExtensions(pkt []byte) bool {
	next, off := pkt[IPv6OffNextHeader], IPv6HeaderLen
	for i := range ipv6MaxExtHeaders {
		if !isIPv6Extension(next) {
			h.Proto, h.L4Off = next, off
			return true
		}
		if next == ipv6ExtHopByHop && i > 0 {
			return false
		}
		size, ok := h.extension(pkt, next, off)
		if !ok {
			return false
		}
		if h.FragOff != 0 { // the rest is not the upper-layer header
			h.Proto = pkt[off]
			return true
		}
		next, off = pkt[off], off+size
	}
	return false
}

// extension checks the extension header of type typ at off and returns its
// size; a fragment header also fills the fragment fields of h.
func (h *IPv6) extension(pkt []byte, typ uint8, off int) (int, bool) {
	if off+8 > len(pkt) {
		return 0, false
	}
	size := (int(pkt[off+1]) + 1) * 8
	switch typ {
	case ipv6ExtFragment:
		size = 8
		h.Fragment = true
		h.FragOff = binary.BigEndian.Uint16(pkt[off+2:]) >> 3
	case ipv6ExtAH:
		size = (int(pkt[off+1]) + 2) * 4 // RFC 4302: in 4-octet units, minus 2
	case ipv6ExtRouting:
		h.Routing = true
	}
	return size, off+size <= len(pkt)
}

// isIPv6Extension reports whether next-header value v is an extension
// header that the parser walks (RFC 8200 §4, RFC 7045's list). ESP (50)
// is not walked: what follows it is encrypted.
func isIPv6Extension(v uint8) bool {
	switch v {
	case ipv6ExtHopByHop, ipv6ExtRouting, ipv6ExtFragment, ipv6ExtAH, ipv6ExtDestOpts,
		ipv6ExtMobility, ipv6ExtHIP, ipv6ExtShim6:
		return true
	}
	return false
}

// DecrementHopLimit lowers the hop limit of the IPv6 packet pkt by one
// (IPv6 has no header checksum to patch).
func DecrementHopLimit(pkt []byte) { pkt[IPv6OffHopLimit]-- }

package dataplane

import (
	"encoding/binary"
	"net/netip"
)

// IPv6 header layout (RFC 8200). Offsets are into the fixed header.
const (
	ipv6HeaderLen = 40

	ipv6OffPayloadLen = 4
	ipv6OffNextHeader = 6
	ipv6OffHopLimit   = 7
	ipv6OffSrc        = 8
	ipv6OffDst        = 24

	ipv6OuterUDPSize = 40 + 8 // outer IPv6 + UDP headers added by the kernel
	// ipv6MinMTU is the link MTU every IPv6 path must carry (RFC 8200 §5).
	ipv6MinMTU = 1280

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
	ipv6ProtoICMPv6 = 58

	// ipv6MaxExtHeaders bounds the walk over the extension header chain,
	// so a crafted packet cannot make it long; a longer chain is malformed
	// for our purposes (RFC 8200 §4.1 allows each header at most twice).
	ipv6MaxExtHeaders = 16
)

// ipv6Header is the parsed, validated view of an IPv6 packet: the fixed
// header and what the extension header chain says. Values only, so parsing
// never allocates.
type ipv6Header struct {
	totalLen int // 40 + payload length
	hopLimit uint8
	// proto is the upper-layer protocol after the extension headers
	// (for ESP or "no next header", that value), and l4Off the offset of
	// its header; l4Off is 0 in a non-first fragment, which holds none.
	proto    uint8
	l4Off    int
	fragment bool // a fragment header is present
	fragOff  uint16
	// routing: a routing header is present, so the destination of the
	// transport checksum's pseudo-header is not dst but the final one.
	routing  bool
	src, dst netip.Addr
}

// firstFragment reports whether the packet is unfragmented or the first
// fragment (the one that holds the upper-layer header).
func (h *ipv6Header) firstFragment() bool { return h.fragOff == 0 }

// parseIPv6 validates the IPv6 packet at the start of pkt and walks its
// extension headers. Like parseIPv4 it accepts trailing bytes after the
// payload length (link-layer padding). Jumbograms (payload length 0 with a
// jumbo option) are refused: they cannot be one UDP datagram anyway. The
// caller has already checked that the version nibble is 6.
func parseIPv6(pkt []byte) (ipv6Header, DropReason) {
	var h ipv6Header
	if len(pkt) < ipv6HeaderLen {
		return h, DropTooShort
	}
	plen := int(binary.BigEndian.Uint16(pkt[ipv6OffPayloadLen:]))
	h.totalLen = ipv6HeaderLen + plen
	if plen == 0 && pkt[ipv6OffNextHeader] == ipv6ExtHopByHop {
		return h, DropBadHeader // jumbogram
	}
	if len(pkt) < h.totalLen {
		return h, DropTooShort
	}
	h.hopLimit = pkt[ipv6OffHopLimit]
	h.src = netip.AddrFrom16([16]byte(pkt[ipv6OffSrc : ipv6OffSrc+16]))
	h.dst = netip.AddrFrom16([16]byte(pkt[ipv6OffDst : ipv6OffDst+16]))
	if !h.walkExtensions(pkt[:h.totalLen]) {
		return h, DropBadHeader
	}
	return h, DropNone
}

// walkExtensions follows the extension header chain of pkt (trimmed to its
// total length) and records the upper layer in h. It reports false for a
// chain that is malformed: a header running past the packet, a hop-by-hop
// header anywhere but first, or more than ipv6MaxExtHeaders headers.
func (h *ipv6Header) walkExtensions(pkt []byte) bool {
	next, off := pkt[ipv6OffNextHeader], ipv6HeaderLen
	for i := range ipv6MaxExtHeaders {
		if !isIPv6Extension(next) {
			h.proto, h.l4Off = next, off
			return true
		}
		if next == ipv6ExtHopByHop && i > 0 {
			return false
		}
		size, ok := h.extension(pkt, next, off)
		if !ok {
			return false
		}
		if h.fragOff != 0 { // the rest is not the upper-layer header
			h.proto = pkt[off]
			return true
		}
		next, off = pkt[off], off+size
	}
	return false
}

// extension checks the extension header of type typ at off and returns its
// size; a fragment header also fills the fragment fields of h.
func (h *ipv6Header) extension(pkt []byte, typ uint8, off int) (int, bool) {
	if off+8 > len(pkt) {
		return 0, false
	}
	size := (int(pkt[off+1]) + 1) * 8
	switch typ {
	case ipv6ExtFragment:
		size = 8
		h.fragment = true
		h.fragOff = binary.BigEndian.Uint16(pkt[off+2:]) >> 3
	case ipv6ExtAH:
		size = (int(pkt[off+1]) + 2) * 4 // RFC 4302: in 4-octet units, minus 2
	case ipv6ExtRouting:
		h.routing = true
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

// decrementHopLimit lowers the hop limit of the IPv6 packet pkt by one
// (IPv6 has no header checksum to patch).
func decrementHopLimit(pkt []byte) { pkt[ipv6OffHopLimit]-- }

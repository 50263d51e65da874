package afpacket

import (
	"encoding/binary"

	"tunnel-agent/dataplane/internal/header"
)

// TCP and UDP header layout, for the transport protocols whose checksums
// the capture completes and whose super-packets it cuts.
const (
	tcpMinHeaderLen = 20
	udpHeaderLen    = 8
	tcpOffChecksum  = 16
	udpOffChecksum  = 6
)

// l4Loc says where the TCP or UDP header of a whole IP packet is.
type l4Loc struct {
	off   int // offset of the transport header: after the IPv4 options or the IPv6 extension headers
	total int // IP total length (IPv6: 40 + payload length), at most len(pkt)
	proto uint8
	v6    bool
	// routing: an IPv6 routing header is present (the pseudo-header's
	// destination is then the final one, not the header's).
	routing bool
}

// locateL4 finds the transport header of a valid IPv4 or IPv6 packet that
// is not a fragment: after the IPv4 header and its options, or after the
// IPv6 extension headers (hop-by-hop, routing, destination options, ...).
// It reports false for anything else, fragments included: a fragment
// carries part of a transport segment, never a partial checksum.
func locateL4(pkt []byte) (l4Loc, bool) {
	if len(pkt) == 0 {
		return l4Loc{}, false
	}
	switch pkt[0] >> 4 {
	case 4: // the header checksum is the engine's to check
		if len(pkt) < header.IPv4MinHeaderLen {
			return l4Loc{}, false
		}
		ihl := int(pkt[0]&0x0f) * 4
		total := int(binary.BigEndian.Uint16(pkt[header.IPv4OffTotalLen:]))
		if ihl < header.IPv4MinHeaderLen || total < ihl || total > len(pkt) ||
			binary.BigEndian.Uint16(pkt[header.IPv4OffFrag:])&(header.IPv4FlagMF|header.IPv4FragOffMask) != 0 {
			return l4Loc{}, false
		}
		return l4Loc{off: ihl, total: total, proto: pkt[header.IPv4OffProto]}, true
	case 6:
		h, f := header.ParseIPv6(pkt)
		if f != header.OK || h.Fragment {
			return l4Loc{}, false
		}
		return l4Loc{off: h.L4Off, total: h.TotalLen, proto: h.Proto, v6: true, routing: h.Routing}, true
	}
	return l4Loc{}, false
}

// checksumField is the offset of the checksum in a transport header of
// protocol proto and the header's minimum length, or false for a protocol
// the capture does not complete.
func checksumField(proto uint8) (off, minLen int, ok bool) {
	switch proto {
	case header.ProtoTCP:
		return tcpOffChecksum, tcpMinHeaderLen, true
	case header.ProtoUDP:
		return udpOffChecksum, udpHeaderLen, true
	}
	return 0, 0, false
}

// completeChecksum finishes the transport checksum of an IPv4 or IPv6 TCP
// or UDP packet that the sending host left to "hardware"
// (CHECKSUM_PARTIAL).
//
// A LAN host whose tx checksum offload is on (the default on veths and most
// NICs) hands its packets to the device with only the pseudo-header sum in
// the TCP/UDP checksum field; the device, or here the capture, must add the
// ones' complement sum of the transport header and payload and store the
// complement. AF_PACKET tells which packets are in that state
// (TP_STATUS_CSUMNOTREADY) but the transport header is found here from the
// IP headers (locateL4): after the IPv4 options, or behind the IPv6
// extension headers. The pseudo-header is already in the field, so an
// IPv6 routing header (whose final destination the pseudo-header names)
// needs no special case. Forwarded as they are, such packets would be
// dropped by the far end's stack.
//
// It reports whether it changed pkt. Fragments, other protocols and
// malformed packets are left alone (the engine judges those).
func completeChecksum(pkt []byte) bool {
	l, ok := locateL4(pkt)
	if !ok {
		return false
	}
	off, minLen, ok := checksumField(l.proto)
	seg := pkt[l.off:l.total]
	if !ok || len(seg) < minLen {
		return false
	}
	c := header.Checksum(seg, 0) // the field holds the pseudo-header sum already
	if c == 0 && l.proto == header.ProtoUDP {
		c = 0xffff // UDP: 0 means "no checksum"
	}
	binary.BigEndian.PutUint16(seg[off:], c)
	return true
}

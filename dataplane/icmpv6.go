package dataplane

import (
	"encoding/binary"
	"net/netip"

	"tunnel-agent/dataplane/internal/header"
)

// ICMPv6 error generation (RFC 4443).
const (
	icmpv6TypePacketTooBig = 2
	icmpv6TypeTimeExceeded = 3
	icmpv6CodeHopLimit     = 0

	// icmpv6MaxLen bounds an error message: RFC 4443 §2.4(c) asks for as
	// much of the original as fits without exceeding the IPv6 minimum MTU.
	icmpv6MaxLen   = header.IPv6MinMTU
	icmpv6MaxQuote = icmpv6MaxLen - header.IPv6HeaderLen - icmpHeaderLen

	icmpv6HopLimit = 64
	// icmpv6InfoMask: ICMPv6 types with the high bit set are informational
	// (echo, neighbour discovery, ...), the others are errors.
	icmpv6InfoMask = 0x80

	// icmpBufLen is the size of each buffer the capture side writes an
	// ICMP or ICMPv6 error to.
	icmpBufLen = max(icmpMaxLen, icmpv6MaxLen)
)

// mayAnswerICMPv6 reports whether an ICMPv6 error of type typ may be sent
// about pkt (a valid IPv6 packet with header h) under RFC 4443 §2.4(e):
// not about an ICMPv6 error, nor a packet whose source is not one unicast
// host, nor (except packet too big) one sent to a multicast address. Like
// the IPv4 rule, a non-first fragment is not answered either: it does not
// say whether it belongs to an ICMPv6 error.
func mayAnswerICMPv6(pkt []byte, h *header.IPv6, typ uint8) bool {
	if !h.FirstFragment() || !isUnicast6(h.Src) {
		return false
	}
	if h.Dst.IsMulticast() && typ != icmpv6TypePacketTooBig {
		return false
	}
	if h.Proto != header.ProtoICMPv6 {
		return true
	}
	return h.L4Off < h.TotalLen && pkt[h.L4Off]&icmpv6InfoMask != 0
}

// mayAnswer6 is mayAnswerICMPv6 with the local prefixes' anycast
// addresses taken into account, counting a source that is not one host
// (see mayAnswer4).
func (r *Router) mayAnswer6(pkt []byte, h *header.IPv6, typ uint8) bool {
	if !r.isHost(h.Src) {
		r.ctr.icmpBadSource.Add(1)
		return false
	}
	return mayAnswerICMPv6(pkt, h, typ)
}

// isUnicast6 reports whether a names a single IPv6 host that an error can
// be sent to: not unspecified, loopback, multicast nor IPv4-mapped.
func isUnicast6(a netip.Addr) bool {
	return a.Is6() && !a.Is4In6() && !a.IsUnspecified() && !a.IsLoopback() && !a.IsMulticast()
}

// buildICMPv6Error writes an ICMPv6 error of type typ and code about orig
// (a valid IPv6 packet, trimmed to its total length) into dst, which must
// hold icmpv6MaxLen bytes, and returns the message length. The message goes
// from src to orig's source and quotes as much of orig as fits; param
// fills the 32-bit field after the checksum (the MTU of a packet too big).
func buildICMPv6Error(dst []byte, src netip.Addr, orig []byte, typ, code uint8, param uint32) int {
	quote := min(len(orig), icmpv6MaxQuote)
	n := header.IPv6HeaderLen + icmpHeaderLen + quote
	putICMPv6Header(dst[:header.IPv6HeaderLen], n-header.IPv6HeaderLen, src, orig[header.IPv6OffSrc:header.IPv6OffSrc+16])
	msg := dst[header.IPv6HeaderLen:n]
	msg[0], msg[1] = typ, code
	binary.BigEndian.PutUint16(msg[2:], 0)
	binary.BigEndian.PutUint32(msg[4:], param)
	copy(msg[icmpHeaderLen:], orig[:quote])
	binary.BigEndian.PutUint16(msg[2:], header.Checksum(msg, pseudoHeaderSum6(dst[header.IPv6OffSrc:header.IPv6OffDst+16], len(msg))))
	return n
}

// putICMPv6Header writes the 40-byte IPv6 header of an ICMPv6 message with
// plen bytes of payload from src to the 16-byte address dst.
func putICMPv6Header(h []byte, plen int, src netip.Addr, dst []byte) {
	binary.BigEndian.PutUint32(h, 6<<28) // version 6, traffic class 0, flow label 0
	binary.BigEndian.PutUint16(h[header.IPv6OffPayloadLen:], uint16(plen))
	h[header.IPv6OffNextHeader], h[header.IPv6OffHopLimit] = header.ProtoICMPv6, icmpv6HopLimit
	s := src.As16()
	copy(h[header.IPv6OffSrc:], s[:])
	copy(h[header.IPv6OffDst:], dst)
}

// pseudoHeaderSum6 is the partial checksum of the IPv6 pseudo-header
// (RFC 8200 §8.1) for an ICMPv6 message of length n; addrs is the source
// and destination address, 32 bytes.
func pseudoHeaderSum6(addrs []byte, n int) uint32 {
	var sum uint32
	for i := 0; i < len(addrs); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(addrs[i:]))
	}
	return sum + uint32(n>>16) + uint32(n&0xffff) + header.ProtoICMPv6
}

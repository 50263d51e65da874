package dataplane

import (
	"encoding/binary"
	"net/netip"
	"time"

	"tunnel-agent/dataplane/internal/header"
)

// ICMPv4 error generation (RFC 792, RFC 1812 section 4.3.2).
const (
	icmpTypeDestUnreachable = 3
	icmpCodeFragNeeded      = 4
	icmpTypeTimeExceeded    = 11
	icmpCodeTTLExceeded     = 0

	icmpHeaderLen = 8
	// icmpMaxLen bounds an error message: RFC 1812 4.3.2.3 asks to quote
	// as much of the original as fits in 576 bytes, which every IPv4 host
	// must accept.
	icmpMaxLen   = 576
	icmpMaxQuote = icmpMaxLen - header.IPv4MinHeaderLen - icmpHeaderLen

	icmpTTL = 64
	// icmpTOS is precedence "internetwork control", as Linux uses for the
	// ICMP errors it generates.
	icmpTOS = 0xc0

	// ICMP generation is limited to 100 per second with bursts of
	// icmpBurst, so a flood of expiring or oversized packets cannot turn
	// the gateway into an ICMP amplifier.
	icmpInterval = time.Second / 100
	icmpBurst    = 50
)

// icmpInformational lists the ICMP types that are not errors (echo,
// timestamp, information, address mask). Any other type, unknown ones
// included, is treated as an error and never answered with an error.
var icmpInformational = [256]bool{0: true, 8: true, 9: true, 10: true,
	13: true, 14: true, 15: true, 16: true, 17: true, 18: true}

// mayAnswerICMP reports whether an ICMP error may be sent about pkt (a
// valid IPv4 packet with header h) under RFC 1812 4.3.2.7: not about a
// non-first fragment, nor a packet whose source is not one unicast host,
// nor one sent to a multicast or broadcast address, nor an ICMP error.
func mayAnswerICMP(pkt []byte, h *header.IPv4) bool {
	if h.FragOffset() != 0 || !isUnicast4(h.Src) || !isUnicast4(h.Dst) {
		return false
	}
	if h.Proto != header.ProtoICMP {
		return true
	}
	return len(pkt) > h.HeaderLen && icmpInformational[pkt[h.HeaderLen]]
}

// isUnicast4 reports whether a names a single IPv4 host: not 0/8 ("this
// network"), loopback, multicast, class E, nor limited broadcast.
// (Directed broadcasts need the subnet masks: Engine.isHost.)
func isUnicast4(a netip.Addr) bool {
	b := a.As4()
	return b[0] != 0 && b[0] != 127 && b[0] < 224
}

// notHosts are the addresses of the local prefixes that name no single
// host: in each IPv4 prefix of up to /30, its subnet broadcast (host
// bits all ones) and its network address (all zeros, the old form of the
// broadcast, RFC 1812 4.2.3.1); in each IPv6 prefix of up to /126, its
// subnet-router anycast address (RFC 4291 2.6.1), which RFC 4443 2.4(e)
// forbids answering. A set of the local prefixes only (a few), so a lookup
// is a map probe without allocation.
type notHosts map[netip.Addr]struct{}

// newNotHosts collects the not-host addresses of the prefixes of lists.
func newNotHosts(lists ...[]netip.Prefix) notHosts {
	m := notHosts{}
	for _, l := range lists {
		for _, p := range l {
			p = p.Masked()
			a := p.Addr()
			switch {
			case a.Is4() && p.Bits() <= 30:
				b := a.As4()
				host := uint32(1)<<(32-p.Bits()) - 1
				v := binary.BigEndian.Uint32(b[:]) | host
				binary.BigEndian.PutUint32(b[:], v)
				m[a], m[netip.AddrFrom4(b)] = struct{}{}, struct{}{}
			case a.Is6() && p.Bits() <= 126:
				m[a] = struct{}{}
			}
		}
	}
	return m
}

// isHost reports whether an ICMP error may be addressed to a: one unicast
// host of its family, and none of the local prefixes' broadcast or anycast
// addresses.
func (r *Router) isHost(a netip.Addr) bool {
	if _, no := r.notHosts[a]; no {
		return false
	}
	if a.Is4() {
		return isUnicast4(a)
	}
	return isUnicast6(a)
}

// mayAnswer4 is mayAnswerICMP with the local prefixes' broadcast
// addresses taken into account; a packet whose source is not one host is
// counted (icmp_bad_source), since an error to it would fail or reach
// many hosts.
func (r *Router) mayAnswer4(pkt []byte, h *header.IPv4) bool {
	if !r.isHost(h.Src) {
		r.ctr.icmpBadSource.Add(1)
		return false
	}
	return r.isHost(h.Dst) && mayAnswerICMP(pkt, h)
}

// buildICMPv4Error writes an ICMP error of type typ and code about orig (a
// valid IPv4 packet, trimmed to its total length) into dst, which must hold
// icmpMaxLen bytes, and returns the message length. The message goes from
// src to orig's source and quotes orig's header and as much of its payload
// as fits. mtu fills the next-hop MTU field (RFC 1191); 0 for other types.
func buildICMPv4Error(dst []byte, src netip.Addr, orig []byte, typ, code uint8, mtu uint16) int {
	quote := min(len(orig), icmpMaxQuote)
	n := header.IPv4MinHeaderLen + icmpHeaderLen + quote
	putICMPv4Header(dst[:header.IPv4MinHeaderLen], n, src, orig[header.IPv4OffSrc:header.IPv4OffSrc+4])
	msg := dst[header.IPv4MinHeaderLen:n]
	msg[0], msg[1] = typ, code
	binary.BigEndian.PutUint16(msg[2:], 0)
	binary.BigEndian.PutUint16(msg[4:], 0) // unused
	binary.BigEndian.PutUint16(msg[6:], mtu)
	copy(msg[icmpHeaderLen:], orig[:quote])
	binary.BigEndian.PutUint16(msg[2:], header.Checksum(msg, 0))
	return n
}

// putICMPv4Header writes the 20-byte IPv4 header of an ICMP message of
// total length n from src to the 4-byte address dst.
func putICMPv4Header(h []byte, n int, src netip.Addr, dst []byte) {
	h[0], h[1] = 0x45, icmpTOS
	binary.BigEndian.PutUint16(h[header.IPv4OffTotalLen:], uint16(n))
	binary.BigEndian.PutUint32(h[4:], 0) // ID, flags, fragment offset
	h[header.IPv4OffTTL], h[header.IPv4OffProto] = icmpTTL, header.ProtoICMP
	binary.BigEndian.PutUint16(h[header.IPv4OffChecksum:], 0)
	s := src.As4()
	copy(h[header.IPv4OffSrc:], s[:])
	copy(h[header.IPv4OffDst:], dst)
	binary.BigEndian.PutUint16(h[header.IPv4OffChecksum:], header.Checksum(h, 0))
}

// tokenBucket is a rate limiter in GCRA form: tat is the theoretical
// arrival time of the next conforming event. Integer-only and
// allocation-free; not safe for concurrent use (only the capture goroutine
// generates ICMP).
type tokenBucket struct {
	interval  int64 // ns between events at the sustained rate
	tolerance int64 // how far tat may run ahead of now: (burst-1)*interval
	tat       int64
}

// newTokenBucket allows one event per interval on average, with bursts
// of up to burst events.
func newTokenBucket(interval time.Duration, burst int) tokenBucket {
	iv := int64(interval)
	return tokenBucket{interval: iv, tolerance: int64(burst-1) * iv}
}

// allow reports whether an event at monotonic time now (ns) conforms, and
// if so accounts for it.
func (b *tokenBucket) allow(now int64) bool {
	tat := max(b.tat, now)
	if tat-now > b.tolerance {
		return false
	}
	b.tat = tat + b.interval
	return true
}

package dataplane

import (
	"net/netip"

	"tunnel-agent/dataplane/internal/header"
)

// forward6 is forward for IPv6: the same route, endpoint and router-hop
// steps as forward4, with the hop limit for the TTL and ICMPv6 errors.
func (r *Router) forward6(pkt []byte, eps *endpoints, icmpBuf []byte, now int64) verdict {
	h, why := parseIPv6(pkt)
	if why != DropNone {
		return verdict{reason: why}
	}
	pkt = pkt[:h.TotalLen] // drop link-layer padding
	v := verdict{dropInfo: dropInfo{src: h.Src, dst: h.Dst}}
	if !r.routeTo(&v, h.Dst, eps) {
		return v
	}
	if v.reason, v.icmp = r.hopChecks6(pkt, &h, v.peer, v.addr, icmpBuf, now); v.reason == DropNone {
		header.DecrementHopLimit(pkt)
		v.pkt = pkt
	}
	return v
}

// hopChecks6 applies the rules of an IPv6 router hop before a packet enters
// the tunnel: the hop limit must outlive this hop, and since IPv6 is never
// fragmented on the way (RFC 8200 §5), a packet larger than the path MTU
// minus the outer headers is answered with packet too big. The MTU
// announced is never below 1280: a tunnel whose path is smaller must carry
// 1280-byte packets anyway, and does (the kernel fragments the outer
// datagram, which is the tunnel's link-layer fragmentation).
func (r *Router) hopChecks6(pkt []byte, h *header.IPv6, p *peer, to netip.AddrPort, icmpBuf []byte, now int64) (DropReason, int) {
	if h.HopLimit <= 1 {
		return DropTTLExpired, r.icmpError6(icmpBuf, pkt, h, icmpv6TypeTimeExceeded, icmpv6CodeHopLimit, 0, now)
	}
	mtu := tunnelMTU6(p, to)
	if len(pkt) <= mtu {
		return DropNone, 0
	}
	return DropTooBig, r.icmpError6(icmpBuf, pkt, h, icmpv6TypePacketTooBig, 0, uint32(mtu), now)
}

// tunnelMTU6 is the largest IPv6 packet the tunnel to p at to carries
// without being too big: the path MTU less the outer headers, at least the
// IPv6 minimum MTU.
func tunnelMTU6(p *peer, to netip.AddrPort) int {
	return max(p.pathMTU-outerOverhead(to), header.IPv6MinMTU)
}

// icmpError6 writes an ICMPv6 error about pkt to buf when it is allowed
// (configured source, RFC 4443 rules, rate limit) and returns its length.
// The limiter is the one ICMPv4 uses: one budget for both families.
func (r *Router) icmpError6(buf, pkt []byte, h *header.IPv6, typ, code uint8, param uint32, now int64) int {
	if !r.icmpSrc6.IsValid() || len(buf) < icmpv6MaxLen || !r.mayAnswer6(pkt, h, typ) {
		return 0
	}
	if !r.icmpBucket.allow(now) {
		r.ctr.icmpLimited.Add(1)
		return 0
	}
	return buildICMPv6Error(buf, r.icmpSrc6, pkt, typ, code, param)
}

// admit6 is admit for IPv6: the payload length must account for the whole
// datagram, then the address rules are those of IPv4.
func (r *Router) admit6(pkt []byte, from *peer) (DropReason, dropInfo) {
	h, why := parseIPv6(pkt)
	if why != DropNone {
		return why, dropInfo{}
	}
	if h.TotalLen != len(pkt) {
		return DropBadHeader, dropInfo{}
	}
	why, d := r.admitAddrs(h.Src, h.Dst, from)
	if why == DropSrcNotAllowed && r.relatedError6(pkt, &h, from) {
		why, d.peer = DropNone, from // an ICMP error about our packet (engine_icmp_related.go)
	}
	return why, d
}

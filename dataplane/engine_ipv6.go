package dataplane

import "net/netip"

// forward6 is forward for IPv6: the same route, endpoint and router-hop
// steps as forward4, with the hop limit for the TTL and ICMPv6 errors.
func (e *Engine) forward6(pkt []byte, eps *endpoints, icmpBuf []byte, now int64) verdict {
	h, why := parseIPv6(pkt)
	if why != DropNone {
		return verdict{reason: why}
	}
	pkt = pkt[:h.totalLen] // drop link-layer padding
	v := verdict{dropInfo: dropInfo{src: h.src, dst: h.dst}}
	if !e.routeTo(&v, h.dst, eps) {
		return v
	}
	if v.reason, v.icmp = e.hopChecks6(pkt, &h, v.peer, v.addr, icmpBuf, now); v.reason == DropNone {
		decrementHopLimit(pkt)
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
func (e *Engine) hopChecks6(pkt []byte, h *ipv6Header, p *peer, to netip.AddrPort, icmpBuf []byte, now int64) (DropReason, int) {
	if h.hopLimit <= 1 {
		return DropTTLExpired, e.icmpError6(icmpBuf, pkt, h, icmpv6TypeTimeExceeded, icmpv6CodeHopLimit, 0, now)
	}
	mtu := tunnelMTU6(p, to)
	if len(pkt) <= mtu {
		return DropNone, 0
	}
	return DropTooBig, e.icmpError6(icmpBuf, pkt, h, icmpv6TypePacketTooBig, 0, uint32(mtu), now)
}

// tunnelMTU6 is the largest IPv6 packet the tunnel to p at to carries
// without being too big: the path MTU less the outer headers, at least the
// IPv6 minimum MTU.
func tunnelMTU6(p *peer, to netip.AddrPort) int {
	return max(p.pathMTU-outerOverhead(to), ipv6MinMTU)
}

// icmpError6 writes an ICMPv6 error about pkt to buf when it is allowed
// (configured source, RFC 4443 rules, rate limit) and returns its length.
// The limiter is the one ICMPv4 uses: one budget for both families.
func (e *Engine) icmpError6(buf, pkt []byte, h *ipv6Header, typ, code uint8, param uint32, now int64) int {
	if !e.icmpSrc6.IsValid() || len(buf) < icmpv6MaxLen || !e.mayAnswer6(pkt, h, typ) {
		return 0
	}
	if !e.icmpBucket.allow(now) {
		e.ctr.icmpLimited.Add(1)
		return 0
	}
	return buildICMPv6Error(buf, e.icmpSrc6, pkt, typ, code, param)
}

// admit6 is admit for IPv6: the payload length must account for the whole
// datagram, then the address rules are those of IPv4.
func (e *Engine) admit6(pkt []byte, from *peer) (DropReason, dropInfo) {
	h, why := parseIPv6(pkt)
	if why != DropNone {
		return why, dropInfo{}
	}
	if h.totalLen != len(pkt) {
		return DropBadHeader, dropInfo{}
	}
	r, d := e.admitAddrs(h.src, h.dst, from)
	if r == DropSrcNotAllowed && e.relatedError6(pkt, &h, from) {
		r, d.peer = DropNone, from // an ICMP error about our packet (engine_icmp_related.go)
	}
	return r, d
}

package dataplane

import (
	"net/netip"

	"tunnel-agent/dataplane/internal/header"
)

// ICMP errors about our own packets, from routers of a peer's site.
//
// An ICMP error comes from the router that could not deliver a packet, not
// from the packet's destination: the far gateway answering a packet too
// big for its LAN (lanmtu.go), or any router on the far site,
// sends it from its own address. That address is rarely inside the
// prefixes this site routes to the peer (the tutorial routes only the far
// host, 11.11.11.100/32, to the VPS, whose LAN address is 11.11.11.1), so
// the source check would drop every such error, and path-MTU discovery
// through the tunnel would fail silently.
//
// So a packet from a known peer that fails the source check only because
// its source is in no peer's prefixes is still admitted when it is an ICMP
// error (IPv4 destination unreachable, time exceeded, parameter problem;
// ICMPv6 destination unreachable, packet too big, time exceeded, parameter
// problem) that quotes a packet this site sent to that very peer: the
// quoted source is the error's (local) destination, and the quoted
// destination routes to the peer. This is the "related" rule of a
// stateful firewall, without the state. A peer can thereby send errors
// from addresses outside its prefixes, but only about traffic that went to
// it, only to the local host that sent that traffic, and never from an
// address that belongs to another peer.

// icmpErrorTypes4 and icmpv6ErrorTypes are the error types admitted.
var (
	icmpErrorTypes4  = [256]bool{3: true, 11: true, 12: true}
	icmpv6ErrorTypes = [256]bool{1: true, 2: true, 3: true, 4: true}
)

// relatedError4 reports whether pkt (a valid IPv4 packet with header h,
// from peer from, refused by the source check) is an ICMP error about a
// packet sent to from, as above.
func (r *Router) relatedError4(pkt []byte, h *header.IPv4, from *peer) bool {
	if from == nil || h.Proto != header.ProtoICMP || h.FlagsOff&(header.IPv4FlagMF|header.IPv4FragOffMask) != 0 {
		return false
	}
	msg := pkt[h.HeaderLen:]
	if len(msg) < icmpHeaderLen+header.IPv4MinHeaderLen || !icmpErrorTypes4[msg[0]] {
		return false
	}
	q := msg[icmpHeaderLen:] // the quoted packet, from its header on
	if q[0]>>4 != 4 {
		return false
	}
	return r.relatedAddrs(h.Src, h.Dst, netip.AddrFrom4([4]byte(q[header.IPv4OffSrc:header.IPv4OffSrc+4])),
		netip.AddrFrom4([4]byte(q[header.IPv4OffDst:header.IPv4OffDst+4])), from)
}

// relatedError6 is relatedError4 for ICMPv6.
func (r *Router) relatedError6(pkt []byte, h *header.IPv6, from *peer) bool {
	if from == nil || h.Proto != header.ProtoICMPv6 || h.Fragment {
		return false
	}
	msg := pkt[h.L4Off:h.TotalLen]
	if len(msg) < icmpHeaderLen+header.IPv6HeaderLen || !icmpv6ErrorTypes[msg[0]] {
		return false
	}
	q := msg[icmpHeaderLen:]
	if q[0]>>4 != 6 {
		return false
	}
	return r.relatedAddrs(h.Src, h.Dst, netip.AddrFrom16([16]byte(q[header.IPv6OffSrc:header.IPv6OffSrc+16])),
		netip.AddrFrom16([16]byte(q[header.IPv6OffDst:header.IPv6OffDst+16])), from)
}

// relatedAddrs applies the address rules to an ICMP error from src to dst
// quoting a packet from qsrc to qdst, received from peer from.
func (r *Router) relatedAddrs(src, dst, qsrc, qdst netip.Addr, from *peer) bool {
	if _, owned := r.routes.lookup(src); owned || !r.isHost(src) || qsrc != dst || !r.local.contains(dst) {
		return false
	}
	pi, ok := r.routes.lookup(qdst)
	return ok && pi == from.idx
}

package dataplane

import (
	"net/netip"

	"tunnel-agent/dataplane/internal/header"
)

// Hub-and-spoke relaying (Config.Relay). A hub serves many sites, each a
// peer; a packet from site A to site B arrives from A's endpoint with a
// destination that is not local but lies in B's prefixes. With Relay on,
// the hub sends it straight on to B, without handing it to its own IP
// stack: the same source check as for local delivery (the source must
// route back to A), then the router-hop rules towards B (TTL or hop limit,
// path MTU), then B's current endpoint. A packet that fails a hop rule is
// dropped under its usual reason and answered like at the LAN side (ICMP
// time exceeded, fragmentation needed; ICMPv6 time exceeded, packet too
// big), the error going back through the tunnel to A, from the
// configured ICMP source (the hub's LAN address, which A routes to the
// hub), with its own rate limit.

// relayICMPPerBatch bounds the ICMP errors the transport side generates
// per batch (beyond it they count as rate limited), so that its buffers
// stay small whatever the batch size.
const relayICMPPerBatch = 8

// relayState is the transport goroutine's relay working set: the batch of
// relayed packets and ICMP errors, and the errors' buffers and limiter.
type relayState struct {
	txBatch
	icmpBufs [][]byte // relayICMPPerBatch, and a scratch one for when they are taken
	icmpN    int
	limit    tokenBucket
}

func newRelayState(n int) relayState {
	return relayState{txBatch: newTxBatch(n + relayICMPPerBatch),
		icmpBufs: newBuffers(relayICMPPerBatch+1, icmpBufLen), limit: newTokenBucket(icmpInterval, icmpBurst)}
}

// reset empties the batch for the next one.
func (r *relayState) reset() {
	r.txBatch.reset()
	r.icmpN = 0
}

// relayTarget returns the peer that owns dst when Relay is on and that
// peer is not from itself (a packet is never sent back where it came from).
func (r *Router) relayTarget(dst netip.Addr, from *peer) (*peer, bool) {
	if !r.relay || from == nil {
		return nil, false
	}
	qi, ok := r.routes.lookup(dst)
	if !ok || qi == from.idx {
		return nil, false
	}
	return &r.peers[qi], true
}

// relayOne queues pkt, valid and admitted from peer p except for its
// destination dst, for the peer that owns dst. It returns DropNone when the
// packet was queued (and counted as received from p), otherwise the reason
// to drop it: dst_not_allowed when no other peer owns dst.
func (e *Engine) relayOne(s *transportState, p *peer, pkt []byte, dst netip.Addr, eps *endpoints, t batchTime) DropReason {
	q, ok := e.r.relayTarget(dst, p)
	if !ok {
		return DropDstNotAllowed
	}
	to := eps.cur[q.idx]
	if !to.IsValid() {
		return DropNoEndpoint
	}
	if r := relayHop(pkt, q, to); r != DropNone {
		e.errorToPeer(&s.relay, p, eps.cur[p.idx], pkt, r, tunnelMTU(pkt, q, to), t.mono)
		return r
	}
	p.countRx(len(pkt), t.wall)
	s.relay.add(pkt, to, q)
	return DropNone
}

// tunnelMTU is the largest packet of pkt's family the tunnel to q at to
// carries (for the MTU field of the error about a packet too big).
func tunnelMTU(pkt []byte, q *peer, to netip.AddrPort) int {
	if pkt[0]>>4 == 6 {
		return tunnelMTU6(q, to)
	}
	return q.pathMTU - outerOverhead(to)
}

// errorToPeer queues the ICMP error about a packet from peer p (at to)
// that failed hop check r (a relayed packet, or one too big for the LAN:
// lanmtu.go), for p, when one is due and allowed.
func (e *Engine) errorToPeer(rs *relayState, p *peer, to netip.AddrPort, pkt []byte, r DropReason, mtu int, now int64) {
	if !to.IsValid() {
		return
	}
	buf := rs.icmpBufs[rs.icmpN] // the scratch one when the others are taken
	if n := e.r.peerError(buf, pkt, r, mtu, &rs.limit, rs.icmpN < relayICMPPerBatch, now); n > 0 {
		rs.icmpN++
		rs.add(buf[:n], to, p)
		e.r.ctr.icmpSent.Add(1)
	}
}

// peerError writes to buf (icmpBufLen bytes) the ICMP error due for hop
// check why about pkt, a packet from a peer (relayed, or too big for the
// LAN), to go back to its sender through the tunnel, and returns its
// length: 0 when none is due, or when room is false or limit holds it
// back (then it is counted as rate limited).
func (r *Router) peerError(buf, pkt []byte, why DropReason, mtu int, limit *tokenBucket, room bool, now int64) int {
	n := r.peerICMP(buf, pkt, why, mtu)
	if n == 0 {
		return 0
	}
	if !room || !limit.allow(now) {
		r.ctr.icmpLimited.Add(1)
		return 0
	}
	return n
}

// peerICMP writes the ICMP or ICMPv6 error for hop check r about pkt to
// buf and returns its length; 0 when none is due (no source configured,
// or the RFC rules forbid one).
func (rt *Router) peerICMP(buf, pkt []byte, r DropReason, mtu int) int {
	if pkt[0]>>4 == 6 {
		h, why := parseIPv6(pkt)
		typ := uint8(icmpv6TypeTimeExceeded)
		if r == DropTooBig {
			typ = icmpv6TypePacketTooBig
		}
		if why != DropNone || !rt.icmpSrc6.IsValid() || !rt.mayAnswer6(pkt, &h, typ) {
			return 0
		}
		return buildICMPv6Error(buf, rt.icmpSrc6, pkt, typ, 0, uint32(mtu))
	}
	h, why := parseIPv4(pkt)
	if why != DropNone || !rt.icmpSrc.IsValid() || !rt.mayAnswer4(pkt, &h) {
		return 0
	}
	if r == DropTooBig {
		if !h.DF() {
			return 0 // too big for one datagram at all: no MTU to announce
		}
		return buildICMPv4Error(buf, rt.icmpSrc, pkt, icmpTypeDestUnreachable, icmpCodeFragNeeded, uint16(mtu))
	}
	return buildICMPv4Error(buf, rt.icmpSrc, pkt, icmpTypeTimeExceeded, icmpCodeTTLExceeded, 0)
}

// relayHop applies the router-hop rules to a relayed packet (a valid IPv4
// or IPv6 packet of exactly len(pkt) bytes) and, when it passes,
// decrements its TTL or hop limit.
func relayHop(pkt []byte, q *peer, to netip.AddrPort) DropReason {
	if pkt[0]>>4 == 6 {
		if pkt[header.IPv6OffHopLimit] <= 1 {
			return DropTTLExpired
		}
		if len(pkt) > tunnelMTU6(q, to) {
			return DropTooBig
		}
		header.DecrementHopLimit(pkt)
		return DropNone
	}
	if pkt[header.IPv4OffTTL] <= 1 {
		return DropTTLExpired
	}
	df := pkt[header.IPv4OffFrag]&(header.IPv4FlagDF>>8) != 0
	if (df && len(pkt) > q.pathMTU-outerOverhead(to)) || len(pkt) > maxUDPPayload(to) {
		return DropTooBig
	}
	header.DecrementTTL(pkt)
	return DropNone
}

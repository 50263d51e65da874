package dataplane

import (
	"fmt"
	"net/netip"

	"tunnel-agent/dataplane/internal/header"
)

// Packets from the tunnel that are larger than the LAN MTU.
//
// The raw socket injects a packet as it is and never fragments it
// (IP_HDRINCL): one larger than the MTU of the interface its route leaves
// by fails with EMSGSIZE, whatever its DF bit, and the sender learns
// nothing. That happens whenever the far side's LAN has a larger MTU than
// ours (a 1500-byte host there, our LAN at 1420) and the tunnel's path
// carries the packet (the outer datagram is fragmented on the way if
// need be). So before injection the gateway acts as the router hop it
// stands in for:
//
//   - IPv4 with DF clear: fragmented here (fragment.go), the fragments
//     injected in order; counted as fragmented (and fragments).
//   - IPv4 with DF set, and every IPv6 packet (RFC 8200 §5: routers never
//     fragment): dropped as too_big_lan and answered with ICMP
//     fragmentation needed / ICMPv6 packet too big carrying the LAN MTU,
//     sent back through the tunnel to the peer it came from, from the
//     configured ICMP source (the gateway's LAN address), under the RFC
//     rules and the rate limit of every error the transport side makes
//     (errorToPeer).
//
// The MTU is the LAN interface's (Config.LANMTU): the kernel's check that
// fails is against the MTU of the device the route leaves by
// (raw_send_hdrinc: length > dst.dev->mtu), and the local prefixes are
// the LAN's. A route with a smaller MTU (an "mtu" attribute, a PMTU the
// kernel learned) needs nothing from us: past the device check the kernel
// fragments a DF-clear packet itself and answers a DF one with its own
// ICMP, which goes to the remote sender through the capture and the
// tunnel like any packet for it. The value is cached in the engine and
// read once per batch; the agent updates it (SetLANMTU) when the
// interface's MTU changes, so no packet costs a syscall.

// lanFragSlots is how many fragments a batch can queue for injection
// beyond one entry per datagram; lanArenaLen the bytes they may take.
// Beyond either, the queue is injected and emptied mid-batch.
const (
	lanFragSlots = 64
	lanArenaLen  = 2 * maxPacketSize
)

// lanState is the room for fragments of an injectQueue.
type lanState struct {
	mtu   int    // the LAN MTU for this batch; 0: no check
	arena []byte // the fragments of the batch
	used  int
}

// injectQueue is a batch of packets to inject, each with the peer it came
// from, with room for the fragments of packets too big for the LAN: the
// transport goroutine's (transportState), and an Inbound's.
type injectQueue struct {
	out   [][]byte
	peers []*peer
	lan   lanState
}

// newInjectQueue returns a queue for batches of n packets.
func newInjectQueue(n int) injectQueue {
	return injectQueue{out: make([][]byte, 0, n+lanFragSlots), peers: make([]*peer, 0, n+lanFragSlots),
		lan: lanState{arena: make([]byte, lanArenaLen)}}
}

// reset empties q for a batch checked against the LAN MTU mtu (0: none).
func (q *injectQueue) reset(mtu int) {
	q.out, q.peers = q.out[:0], q.peers[:0]
	q.lan.mtu, q.lan.used = mtu, 0
}

// add counts pkt as received from p and queues it.
func (q *injectQueue) add(p *peer, pkt []byte, t batchTime) {
	p.countRx(len(pkt), t.wall)
	q.out = append(q.out, pkt)
	q.peers = append(q.peers, p)
}

// fitsLAN reports whether pkt can be injected whole; if not, tooBigForLAN
// handles it.
func (q *injectQueue) fitsLAN(pkt []byte) bool {
	return q.lan.mtu == 0 || len(pkt) <= q.lan.mtu
}

// minLANMTU is the smallest MTU an IPv4 link may have (RFC 791).
const minLANMTU = 68

// checkLANMTU accepts 0 (no check) or a possible link MTU (loopback's
// 65536 included: no IP packet is larger than 65535 bytes anyway).
func checkLANMTU(mtu int) error {
	if mtu != 0 && mtu < minLANMTU {
		return fmt.Errorf("LAN MTU %d below %d", mtu, minLANMTU)
	}
	return nil
}

// SetLANMTU changes the LAN MTU (Config.LANMTU) from the next batch on;
// safe from any goroutine.
func (r *Router) SetLANMTU(mtu int) error {
	if err := checkLANMTU(mtu); err != nil {
		return fmt.Errorf("dataplane: %w", err)
	}
	r.lanMTU.Store(int64(min(mtu, maxPacketSize)))
	return nil
}

// tooBigForLAN handles pkt, admitted from peer p at from but larger than
// the LAN MTU: it fragments a DF-clear IPv4 packet into q, or drops
// anything else and reports true, for the caller to answer it through the
// tunnel if it can (the Engine does; WireGuard mode cannot).
func (r *Router) tooBigForLAN(q *injectQueue, p *peer, pkt []byte, from netip.AddrPort, t batchTime) (dropped bool) {
	if pkt[0]>>4 == 4 {
		h, _ := parseIPv4(pkt) // valid: admitted
		if !h.DF() {
			r.fragmentToLAN(q, p, pkt, &h, t)
			return false
		}
	}
	r.drop(DropTooBigLAN, dropInfo{peer: p, addr: from}, t.mono)
	return true
}

// fragmentToLAN queues the fragments of pkt (header h, DF clear) for
// injection, counted as one packet received from p.
func (r *Router) fragmentToLAN(q *injectQueue, p *peer, pkt []byte, h *header.IPv4, t batchTime) {
	plan, ok := planFragments(pkt, h, q.lan.mtu)
	if !ok {
		why := DropTooBigLAN // an MTU too small for 8 bytes of data
		if plan.first >= 8 {
			why = DropBadHeader // malformed options: nothing to copy them by
		}
		r.drop(why, dropInfo{peer: p, src: h.Src, dst: h.Dst}, t.mono)
		return
	}
	p.countRx(len(pkt), t.wall)
	n := plan.count()
	for i := range n {
		buf := r.lanRoom(q, plan.maxLen(), t.mono)
		q.out = append(q.out, buf[:plan.fragment(buf, pkt, i)])
		q.peers = append(q.peers, p)
	}
	r.ctr.fragmented.Add(1)
	r.ctr.fragments.Add(uint64(n))
}

// lanRoom returns size bytes of the fragment arena, with room for one more
// packet in the injection queue: when either is full, what is queued is
// injected first (in order) and both are emptied.
func (r *Router) lanRoom(q *injectQueue, size int, now int64) []byte {
	if len(q.out) == cap(q.out) || q.lan.used+size > len(q.lan.arena) {
		r.inject(q.out, q.peers, now)
		q.reset(q.lan.mtu)
	}
	buf := q.lan.arena[q.lan.used : q.lan.used+size]
	q.lan.used += size
	return buf
}

package dataplane

import (
	"fmt"
	"net/netip"
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

// lanState is the transport goroutine's room for fragments.
type lanState struct {
	mtu   int    // the LAN MTU for this batch; 0: no check
	arena []byte // the fragments of the batch
	used  int
}

func newLANState() lanState { return lanState{arena: make([]byte, lanArenaLen)} }

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

// SetLANMTU changes the LAN MTU (Config.LANMTU) of a running engine, from
// the next batch on; safe from any goroutine.
func (e *Engine) SetLANMTU(mtu int) error {
	if err := checkLANMTU(mtu); err != nil {
		return fmt.Errorf("dataplane: %w", err)
	}
	e.lanMTU.Store(int64(min(mtu, maxPacketSize)))
	return nil
}

// fitsLAN reports whether pkt can be injected whole; if not, tooBigForLAN
// handles it.
func (s *transportState) fitsLAN(pkt []byte) bool {
	return s.lan.mtu == 0 || len(pkt) <= s.lan.mtu
}

// tooBigForLAN handles pkt, admitted from peer p at from but larger than
// the LAN MTU: fragments a DF-clear IPv4 packet into the injection queue,
// drops anything else and answers it through the tunnel.
func (e *Engine) tooBigForLAN(s *transportState, p *peer, pkt []byte, from netip.AddrPort, t batchTime) {
	if pkt[0]>>4 == 4 {
		h, _ := parseIPv4(pkt) // valid: admitted
		if !h.df() {
			e.fragmentToLAN(s, p, pkt, &h, t)
			return
		}
	}
	d := dropInfo{peer: p, addr: from}
	e.drop(DropTooBigLAN, d, t.mono)
	e.errorToPeer(s, p, from, pkt, DropTooBig, s.lan.mtu, t.mono)
}

// fragmentToLAN queues the fragments of pkt (header h, DF clear) for
// injection, counted as one packet received from p.
func (e *Engine) fragmentToLAN(s *transportState, p *peer, pkt []byte, h *ipv4Header, t batchTime) {
	plan, ok := planFragments(pkt, h, s.lan.mtu)
	if !ok {
		r := DropTooBigLAN // an MTU too small for 8 bytes of data
		if plan.first >= 8 {
			r = DropBadHeader // malformed options: nothing to copy them by
		}
		e.drop(r, dropInfo{peer: p, src: h.src, dst: h.dst}, t.mono)
		return
	}
	p.ctr.rxPackets.Add(1)
	p.ctr.rxBytes.Add(uint64(len(pkt)))
	p.ctr.lastRx.Store(t.wall)
	n := plan.count()
	for i := range n {
		buf := e.lanRoom(s, plan.maxLen(), t.mono)
		s.out = append(s.out, buf[:plan.fragment(buf, pkt, i)])
		s.peers = append(s.peers, p)
	}
	e.ctr.fragmented.Add(1)
	e.ctr.fragments.Add(uint64(n))
}

// lanRoom returns size bytes of the fragment arena, with room for one more
// packet in the injection queue: when either is full, what is queued is
// injected first (in order) and both are emptied.
func (e *Engine) lanRoom(s *transportState, size int, now int64) []byte {
	if len(s.out) == cap(s.out) || s.lan.used+size > len(s.lan.arena) {
		e.inject(s.out, s.peers, now)
		s.out, s.peers, s.lan.used = s.out[:0], s.peers[:0], 0
	}
	buf := s.lan.arena[s.lan.used : s.lan.used+size]
	s.lan.used += size
	return buf
}

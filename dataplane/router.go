package dataplane

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// Router is the LAN side of a gateway, the part both modes share: the
// peers (names, prefixes, path MTUs, counters), the local prefixes, the
// ICMP sources, the LAN MTU and the Injector, and the checks of the
// router hop the gateway stands in for. Towards a peer: longest prefix
// match, TTL or hop limit, path MTU, and the ICMP errors they call for
// (send.go). From a peer: header, the source routes back to the sender,
// the destination is local, the LAN MTU (receive.go, lanmtu.go). It
// counts and logs every drop.
//
// The Engine holds one and adds the tunnel side: endpoints, keepalives,
// relaying, the Transport. A mode whose tunnel side is not the Engine's
// (WireGuard mode, where wireguard-go encrypts and sends) creates a Router
// with NewRouter and passes the packets it captures through an Outbound
// and those it receives through an Inbound.
//
// Per packet it neither allocates nor locks.
type Router struct {
	// mu guards the tables against Stats while Reconfigure swaps them;
	// the packet paths do not take it (they are stopped for a swap).
	mu       sync.RWMutex
	gen      uint64 // bumped by every swap of the tables (takeTables)
	relay    bool   // Config.Relay
	peers    []peer
	routes   *peerTable // peer prefixes, both directions
	local    *prefixSet
	notHosts notHosts     // local broadcast and anycast addresses (icmp.go)
	lanMTU   atomic.Int64 // Config.LANMTU, SetLANMTU; read once per batch
	icmpSrc  netip.Addr
	icmpSrc6 netip.Addr
	batch    int // Config.BatchSize resolved
	log      *slog.Logger
	dropLog  [numDropReasons]logSlot
	ctr      engineCounters

	injector Injector
	// injMu serialises injection: the packets from the peers and the ICMP
	// errors about captured ones come from different goroutines, and the
	// Injector does not promise concurrency safety. It is taken once per
	// batch and is nearly always uncontended.
	injMu sync.Mutex

	epoch      time.Time   // origin of the monotonic times used inside
	icmpBucket tokenBucket // the LAN→tunnel goroutine's only
}

// NewRouter checks cfg as New does and returns the LAN side of a gateway
// that injects through inj, which the caller owns. With Config.Relay, an
// Inbound hands the packets it relays to its Relay function.
func NewRouter(cfg Config, inj Injector) (*Router, error) {
	if inj == nil {
		return nil, errors.New("dataplane: nil Injector")
	}
	r := &Router{injector: inj}
	if err := r.init(cfg); err != nil {
		return nil, fmt.Errorf("dataplane: %w", err)
	}
	return r, nil
}

// BatchSize is Config.BatchSize, DefaultBatchSize when that was 0.
func (r *Router) BatchSize() int { return r.batch }

// Stats returns a snapshot of the counters, without current endpoints
// (the tunnel side knows them); safe to call at any time from any
// goroutine.
func (r *Router) Stats() Stats {
	r.mu.RLock()
	defer r.mu.RUnlock()
	st := Stats{
		Peers:                       make([]PeerStats, len(r.peers)),
		Drops:                       r.ctr.dropsMap(),
		ICMPSent:                    r.ctr.icmpSent.Load(),
		ICMPRateLimited:             r.ctr.icmpLimited.Load(),
		ICMPBadSource:               r.ctr.icmpBadSource.Load(),
		Fragmented:                  r.ctr.fragmented.Load(),
		Fragments:                   r.ctr.fragments.Load(),
		KeepaliveRepliesRateLimited: r.ctr.kaRepliesLimited.Load(),
	}
	for i := range r.peers {
		p := &r.peers[i]
		ps := p.ctr.snapshot()
		ps.Name, ps.ConfiguredEndpoint = p.name, p.configured
		st.Peers[i] = ps
	}
	return st
}

// batchTime is the clock read once per batch: wall for "last received"
// timestamps, mono (ns since the router was made, monotonic) for
// limiters.
type batchTime struct{ wall, mono int64 }

// now reads the clock.
func (r *Router) now() batchTime {
	t := time.Now()
	return batchTime{wall: t.UnixNano(), mono: int64(t.Sub(r.epoch))}
}

// Reconfigure replaces the configuration of a running Router made by
// NewRouter (peers, prefixes, ICMP sources, LAN MTU, Relay) with cfg's,
// checked as NewRouter checks it: an invalid cfg changes nothing.
// cfg.BatchSize and cfg.Logger are ignored. Peers are matched by name: one
// that stays keeps its counters. Once cfg is checked, pause is called: it
// must stop every Outbound and Inbound of r between batches and return
// the function that lets them go on; the tables are swapped meanwhile.
// It returns, for each peer of cfg, its index before (-1: a new peer).
func (r *Router) Reconfigure(cfg Config, pause func() (resume func())) ([]int, error) {
	var n Router
	cfg.BatchSize = r.batch
	if err := n.configure(cfg); err != nil {
		return nil, fmt.Errorf("dataplane: %w", err)
	}
	resume := pause()
	defer resume()
	return r.takeTables(&n), nil
}

// Outbound passes the packets captured on the LAN through the Router's
// checks for a tunnel side that is not the Engine's (WireGuard mode's
// device): the same router hop as the Engine's capture side, towards the
// path of each peer's configured endpoint, or of an IPv4 one when it has
// none (the tunnel side decides where its datagrams go). One goroutine at
// a time uses it.
type Outbound struct {
	r    *Router
	gen  uint64     // r.gen that eps were made for
	eps  *endpoints // every peer "has" an endpoint, for the hop checks
	icmp icmpBatch
	// Admit, when set, has the last word on a packet that passed every
	// check, towards the peer with index peer (its position in
	// Config.Peers): DropNone lets it through, another reason drops it
	// (counted and logged as any drop).
	Admit func(peer int) DropReason
}

// outboundPlaceholder stands for the endpoint of a peer configured without
// one: IPv4, the common outer family.
var outboundPlaceholder = netip.AddrPortFrom(netip.IPv4Unspecified(), 0)

// NewOutbound returns an Outbound for batches of n packets (larger ones
// work, with an extra injection of ICMP errors).
func NewOutbound(r *Router, n int) *Outbound {
	n = max(n, 1)
	// Room for ICMP errors about IPv4 packets only (icmpMaxLen), as
	// WireGuard mode has always had: ICMPv6 errors need icmpv6MaxLen.
	return &Outbound{r: r, gen: r.gen, eps: outboundEndpoints(r.peers), icmp: newICMPBatch(n, icmpMaxLen)}
}

// outboundEndpoints gives every peer an endpoint for the hop checks: its
// configured one, or outboundPlaceholder.
func outboundEndpoints(peers []peer) *endpoints {
	eps := &endpoints{byAddr: map[netip.AddrPort]int{}, cur: make([]netip.AddrPort, len(peers))}
	for i := range peers {
		eps.cur[i] = towards(&peers[i])
	}
	return eps
}

// towards is the endpoint whose path the hop checks towards p assume.
func towards(p *peer) netip.AddrPort {
	if p.configured.IsValid() {
		return p.configured
	}
	return outboundPlaceholder
}

// Forward checks the first n packets of bufs (sizes[i] bytes each). One
// that passes is trimmed to its IP length, has its TTL or hop limit
// decremented in place, keeps its new length in sizes[i] and is counted as
// sent to its peer. One that does not gets size 0 and is counted as
// dropped; the ICMP errors due are injected.
func (o *Outbound) Forward(bufs [][]byte, sizes []int, n int) {
	if n <= 0 {
		return
	}
	if o.gen != o.r.gen { // Reconfigure swapped the tables
		o.eps, o.gen = outboundEndpoints(o.r.peers), o.r.gen
	}
	now := o.r.now().mono
	for i := range min(n, len(bufs)) {
		sizes[i] = o.forwardOne(packetAt(bufs, sizes, i), now)
	}
	o.r.sendICMP(&o.icmp, now)
}

// forwardOne checks one captured packet and returns its size to hand on,
// 0 when it is dropped.
func (o *Outbound) forwardOne(pkt []byte, now int64) int {
	if len(o.icmp.out) == len(o.icmp.bufs) { // a batch larger than NewOutbound's
		o.r.sendICMP(&o.icmp, now)
	}
	buf := o.icmp.next()
	var v verdict
	o.r.forward(&v, pkt, o.eps, buf, now)
	o.icmp.add(buf, v.icmp)
	if v.reason == DropNone && o.Admit != nil {
		v.reason = o.Admit(v.peer.idx)
	}
	if v.reason != DropNone {
		o.r.drop(v.reason, v.dropInfo, now)
		return 0
	}
	v.peer.countTx(len(v.pkt))
	return len(v.pkt)
}

// Inbound admits the packets that came from the peers through a tunnel
// side that is not the Engine's (decrypted by WireGuard mode's device) and
// injects them: the admission checks of the Engine's transport side
// (header, source owned by a peer, local destination) and its LAN MTU
// rule, a DF-clear IPv4 packet larger than the LAN MTU fragmented and
// anything else too big dropped as too_big_lan. What goes back into the
// tunnel goes to Relay: with Config.Relay, a packet for another peer,
// after the router-hop checks towards it (as the Engine's relay.go); and
// the ICMP errors for a packet too big for the LAN or one that fails those
// checks, under the Engine's rules and rate limit. One goroutine at a
// time uses it.
type Inbound struct {
	r *Router
	q injectQueue
	// Relay, when set, takes a packet back into the tunnel: it copies
	// pkt and reports whether it took it. Without it nothing is relayed
	// and no ICMP error goes back through the tunnel.
	Relay   func(pkt []byte) bool
	icmpBuf []byte      // an ICMP error for Relay
	limit   tokenBucket // of those errors
}

// NewInbound returns an Inbound for batches of n packets (larger ones
// work, but allocate).
func NewInbound(r *Router, n int) *Inbound {
	return &Inbound{r: r, q: newInjectQueue(n), icmpBuf: make([]byte, icmpBufLen), limit: newTokenBucket(icmpInterval, icmpBurst)}
}

// Deliver admits each of pkts and injects those that pass; the others are
// counted and logged.
func (in *Inbound) Deliver(pkts [][]byte) {
	now := in.r.now()
	in.q.reset(int(in.r.lanMTU.Load()))
	for _, pkt := range pkts {
		in.admitOne(pkt, now)
	}
	if len(in.q.out) > 0 {
		in.r.inject(in.q.out, in.q.peers, now.mono)
	}
}

// admitOne queues one packet for injection, relays it, or counts its
// drop.
func (in *Inbound) admitOne(pkt []byte, now batchTime) {
	if len(pkt) == 0 {
		in.r.drop(DropTooShort, dropInfo{}, now.mono)
		return
	}
	var d dropInfo
	why := in.r.admit(&d, pkt, nil)
	if why == DropDstNotAllowed && in.Relay != nil {
		why = in.relayOne(&d, pkt, now)
	}
	switch {
	case why != DropNone:
		in.r.drop(why, d, now.mono)
	case d.peer == nil: // relayed
	case !in.q.fitsLAN(pkt):
		if in.r.tooBigForLAN(&in.q, d.peer, pkt, netip.AddrPort{}, now) {
			in.errorBack(pkt, DropTooBig, in.q.lan.mtu, now.mono)
		}
	default:
		in.q.add(d.peer, pkt, now)
	}
}

// relayOne hands pkt, from peer d.peer for the non-local destination
// d.dst, to Relay when Config.Relay is on and another peer owns d.dst,
// after the router-hop checks towards that peer; it counts it as received
// from d.peer and sent to the other, and clears d.peer. Otherwise it
// returns why pkt is dropped.
func (in *Inbound) relayOne(d *dropInfo, pkt []byte, t batchTime) DropReason {
	q, ok := in.r.relayTarget(d.dst, d.peer)
	if !ok {
		return DropDstNotAllowed
	}
	to := towards(q)
	if why := relayHop(pkt, q, to); why != DropNone {
		in.errorBack(pkt, why, tunnelMTU(pkt, q, to), t.mono)
		return why
	}
	if !in.Relay(pkt) {
		return DropTunnelBusy
	}
	d.peer.countRx(len(pkt), t.wall)
	q.countTx(len(pkt))
	d.peer = nil
	return DropNone
}

// errorBack sends the ICMP error for hop check why about pkt back into
// the tunnel, to pkt's sender, when one is due.
func (in *Inbound) errorBack(pkt []byte, why DropReason, mtu int, now int64) {
	if n := in.r.peerError(in.icmpBuf, pkt, why, mtu, &in.limit, in.Relay != nil, now); n > 0 {
		if in.Relay(in.icmpBuf[:n]) {
			in.r.ctr.icmpSent.Add(1)
		} else {
			in.r.ctr.icmpLimited.Add(1)
		}
	}
}

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
// that injects through inj, which the caller owns. Config.Relay does not
// apply: relaying is the Engine's.
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

// Outbound passes the packets captured on the LAN through the Router's
// checks for a tunnel side that is not the Engine's (WireGuard mode's
// device): the same router hop as the Engine's capture side, towards the
// path of each peer's configured endpoint, or of an IPv4 one when it has
// none (the tunnel side decides where its datagrams go). One goroutine at
// a time uses it.
type Outbound struct {
	r    *Router
	eps  *endpoints // every peer "has" an endpoint, for the hop checks
	icmp icmpBatch
}

// outboundPlaceholder stands for the endpoint of a peer configured without
// one: IPv4, the common outer family.
var outboundPlaceholder = netip.AddrPortFrom(netip.IPv4Unspecified(), 0)

// NewOutbound returns an Outbound for batches of n packets (larger ones
// work, with an extra injection of ICMP errors).
func NewOutbound(r *Router, n int) *Outbound {
	n = max(n, 1)
	eps := &endpoints{byAddr: map[netip.AddrPort]int{}, cur: make([]netip.AddrPort, len(r.peers))}
	for i := range r.peers {
		eps.cur[i] = r.peers[i].configured
		if !eps.cur[i].IsValid() {
			eps.cur[i] = outboundPlaceholder
		}
	}
	// Room for ICMP errors about IPv4 packets only (icmpMaxLen), as
	// WireGuard mode has always had: ICMPv6 errors need icmpv6MaxLen.
	return &Outbound{r: r, eps: eps, icmp: newICMPBatch(n, icmpMaxLen)}
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
	if v.reason != DropNone {
		o.r.drop(v.reason, v.dropInfo, now)
		return 0
	}
	v.peer.ctr.txPackets.Add(1)
	v.peer.ctr.txBytes.Add(uint64(len(v.pkt)))
	return len(v.pkt)
}

// Inbound admits the packets that came from the peers through a tunnel
// side that is not the Engine's (decrypted by WireGuard mode's device) and
// injects them: the admission checks of the Engine's transport side
// (header, source owned by a peer, local destination) and its LAN MTU
// rule, a DF-clear IPv4 packet larger than the LAN MTU fragmented and
// anything else too big dropped as too_big_lan, but without the ICMP error
// the Engine sends back: only the tunnel side could send it. One
// goroutine at a time uses it.
type Inbound struct {
	r *Router
	q injectQueue
}

// NewInbound returns an Inbound for batches of n packets (larger ones
// work, but allocate).
func NewInbound(r *Router, n int) *Inbound {
	return &Inbound{r: r, q: newInjectQueue(n)}
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

// admitOne queues one packet for injection, or counts its drop.
func (in *Inbound) admitOne(pkt []byte, now batchTime) {
	if len(pkt) == 0 {
		in.r.drop(DropTooShort, dropInfo{}, now.mono)
		return
	}
	var d dropInfo
	why := in.r.admit(&d, pkt, nil)
	switch {
	case why != DropNone:
		in.r.drop(why, d, now.mono)
	case !in.q.fitsLAN(pkt):
		in.r.tooBigForLAN(&in.q, d.peer, pkt, netip.AddrPort{}, now)
	default:
		in.q.add(d.peer, pkt, now)
	}
}

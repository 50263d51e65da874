package dataplane

import (
	"io"
	"net/netip"
)

// The tunnel→LAN direction, in the order a datagram takes: the transport
// goroutine reads a batch, each datagram's sender names its peer (an
// unknown sender can only be a learning peer: endpoints.go, keepalive.go),
// the Router admits the inner packet (header, the source routes back to
// the sender, the destination is local; icmp_related.go for ICMP errors
// about our own packets), a packet too big for the LAN is fragmented or
// answered (lanmtu.go), and the rest is injected in one
// Injector.WriteBatch. A packet for another peer is relayed (relay.go).

// transportState is the transport goroutine's working set, allocated once.
type transportState struct {
	bufs  [][]byte // read buffers at full size; never resliced
	sizes []int
	from  []netip.AddrPort

	injectQueue            // packets to inject this batch (prefixes of bufs, fragments: lanmtu.go)
	relay       relayState // packets relayed to another peer (Config.Relay), ICMP errors to peers
}

// newTransportState allocates the buffers for batches of n datagrams.
func newTransportState(n int) *transportState {
	return &transportState{
		bufs: newBuffers(n, maxPacketSize), sizes: make([]int, n), from: make([]netip.AddrPort, n),
		injectQueue: newInjectQueue(n), relay: newRelayState(n),
	}
}

// transportLoop is the tunnel→LAN direction. It returns only when the
// Transport fails or is closed.
func (e *Engine) transportLoop() error {
	s := newTransportState(e.r.batch)
	for {
		n, err := e.transport.ReadBatch(s.bufs, s.sizes, s.from)
		e.rc.tunMu.Lock()
		e.decapBatch(s, n) // datagrams read before an error still count
		e.rc.tunMu.Unlock()
		if err != nil {
			return err
		}
	}
}

// decapBatch checks the first n datagrams and injects the packets that
// pass.
func (e *Engine) decapBatch(s *transportState, n int) {
	if n <= 0 {
		return
	}
	t, eps := e.r.now(), e.eps.Load()
	s.injectQueue.reset(int(e.r.lanMTU.Load()))
	s.relay.reset()
	for i := range min(n, len(s.bufs)) {
		eps = e.receive(s, packetAt(s.bufs, s.sizes, i), unmapAddrPort(s.from[i]), eps, t)
	}
	if len(s.out) > 0 {
		e.r.inject(s.out, s.peers, t.mono)
	}
	if len(s.relay.bufs) > 0 {
		e.send(&s.relay.txBatch, t.mono)
	}
}

// receive handles one datagram from the address from. It returns the
// endpoint snapshot for the rest of the batch: a new one if it learned.
func (e *Engine) receive(s *transportState, pkt []byte, from netip.AddrPort, eps *endpoints, t batchTime) *endpoints {
	pi, known := eps.byAddr[from]
	if !known {
		return e.receiveUnknown(s, pkt, from, eps, t)
	}
	p := &e.r.peers[pi]
	if len(pkt) == 0 {
		p.ctr.keepalivesRx.Add(1)
		p.ctr.lastRx.Store(t.wall)
		return eps
	}
	if isKeepalive(pkt) {
		return e.receiveKeepalive(s, pkt, from, p, eps, t)
	}
	var d dropInfo
	if r := e.r.admit(&d, pkt, p); r != DropNone {
		if r == DropDstNotAllowed && e.r.relay {
			r = e.relayOne(s, p, pkt, d.dst, eps, t)
		}
		if r != DropNone {
			d.peer, d.addr = p, from
			e.r.drop(r, d, t.mono)
		}
		return eps
	}
	e.accept(s, p, pkt, from, t)
	return eps
}

// receiveUnknown handles a datagram from an address that is no peer's
// endpoint. Only a learning peer may accept it: the inner source picks the
// peer, and a fully valid packet moves that peer's endpoint to from.
// Anything else is not_from_peer.
func (e *Engine) receiveUnknown(s *transportState, pkt []byte, from netip.AddrPort, eps *endpoints, t batchTime) *endpoints {
	if !e.learns {
		e.r.drop(DropNotFromPeer, dropInfo{addr: from}, t.mono)
		return eps
	}
	if len(pkt) == 0 {
		return e.receiveUnknownKeepalive(from, eps, t)
	}
	if isKeepalive(pkt) {
		return e.receiveKeepalive(s, pkt, from, nil, eps, t)
	}
	var d dropInfo
	r := e.r.admit(&d, pkt, nil)
	_, relayed := e.r.relayTarget(d.dst, d.peer)
	relayed = relayed && r == DropDstNotAllowed
	if (r != DropNone && !relayed) || d.peer.configured.IsValid() {
		e.r.drop(DropNotFromPeer, dropInfo{addr: from, src: d.src, dst: d.dst}, t.mono)
		return eps
	}
	eps = e.learn(d.peer, from, eps, t)
	if !relayed {
		e.accept(s, d.peer, pkt, from, t)
	} else if r := e.relayOne(s, d.peer, pkt, d.dst, eps, t); r != DropNone {
		d.addr = from
		e.r.drop(r, d, t.mono)
	}
	return eps
}

// receiveUnknownKeepalive handles a keepalive from an unknown address. It
// carries no inner source, so it can only be attributed by its address: a
// learning peer whose current endpoint has the same IP and another port is
// a NAT that moved the flow (conntrack flushed, mapping expired), and the
// keepalive re-teaches its new port, so that traffic towards the peer
// resumes without waiting for the peer to send data. Anything else is
// not_from_peer: a stray empty datagram must not redirect a peer.
func (e *Engine) receiveUnknownKeepalive(from netip.AddrPort, eps *endpoints, t batchTime) *endpoints {
	p := e.sameIPLearner(from.Addr(), eps)
	if p == nil {
		e.r.drop(DropNotFromPeer, dropInfo{addr: from}, t.mono)
		return eps
	}
	eps = e.learn(p, from, eps, t)
	p.ctr.keepalivesRx.Add(1)
	p.ctr.lastRx.Store(t.wall)
	return eps
}

// sameIPLearner returns the only learning peer currently at an endpoint
// with address ip, or nil if there is none or more than one (several peers
// behind one NAT: a keepalive cannot say which of them moved).
func (e *Engine) sameIPLearner(ip netip.Addr, eps *endpoints) *peer {
	var found *peer
	for i := range e.r.peers {
		if e.r.peers[i].configured.IsValid() || eps.cur[i].Addr() != ip {
			continue
		}
		if found != nil {
			return nil
		}
		found = &e.r.peers[i]
	}
	return found
}

// admit validates the inner packet of a non-empty datagram sent by peer
// from (nil: sender unknown, the inner source picks the peer) and returns
// DropNone or why it fails. It sets d to what it learned: the inner
// addresses and, on success, in d.peer, the peer the packet belongs to (in
// place, as forward does, rather than returned through the dispatch).
func (r *Router) admit(d *dropInfo, pkt []byte, from *peer) DropReason {
	*d = dropInfo{}
	switch pkt[0] >> 4 {
	case 4:
		return r.admit4(d, pkt, from)
	case 6:
		return r.admit6(d, pkt, from)
	default:
		return DropNotIPv4
	}
}

// admit4 is admit for IPv4. Like the tutorial's receiver it wants the
// datagram to be exactly one packet: a total length that disagrees with
// the datagram length means truncation or a framing mismatch between the
// two ends (e.g. another encapsulation mode).
func (r *Router) admit4(d *dropInfo, pkt []byte, from *peer) DropReason {
	h, why := parseIPv4(pkt)
	if why != DropNone {
		return why
	}
	if h.TotalLen != len(pkt) {
		return DropBadHeader
	}
	why = r.admitAddrs(d, h.Src, h.Dst, from)
	if why == DropSrcNotAllowed && r.relatedError4(pkt, &h, from) {
		why, d.peer = DropNone, from // an ICMP error about our packet (icmp_related.go)
	}
	return why
}

// admit6 is admit for IPv6: the payload length must account for the whole
// datagram, then the address rules are those of IPv4.
func (r *Router) admit6(d *dropInfo, pkt []byte, from *peer) DropReason {
	h, why := parseIPv6(pkt)
	if why != DropNone {
		return why
	}
	if h.TotalLen != len(pkt) {
		return DropBadHeader
	}
	why = r.admitAddrs(d, h.Src, h.Dst, from)
	if why == DropSrcNotAllowed && r.relatedError6(pkt, &h, from) {
		why, d.peer = DropNone, from // an ICMP error about our packet (icmp_related.go)
	}
	return why
}

// admitAddrs applies the address rules. The inner source must route back
// to the sending peer: the longest match over all peers' prefixes, not
// merely any prefix of that peer, so that with overlapping prefixes a peer
// cannot send from addresses whose replies would go to another peer
// (WireGuard's "allowed IPs" rule). The destination must be local.
func (r *Router) admitAddrs(d *dropInfo, src, dst netip.Addr, from *peer) DropReason {
	d.src, d.dst = src, dst
	pi, ok := r.routes.lookup(src)
	if !ok || (from != nil && pi != from.idx) {
		return DropSrcNotAllowed
	}
	d.peer = &r.peers[pi]
	if !r.local.contains(dst) {
		return DropDstNotAllowed
	}
	return DropNone
}

// accept counts pkt, from p at from, as received and queues it for
// injection; one too big for the LAN goes to tooBigForLAN.
func (e *Engine) accept(s *transportState, p *peer, pkt []byte, from netip.AddrPort, t batchTime) {
	if !s.fitsLAN(pkt) {
		if e.r.tooBigForLAN(&s.injectQueue, p, pkt, from, t) {
			e.errorToPeer(&s.relay, p, from, pkt, DropTooBig, s.lan.mtu, t.mono)
		}
		return
	}
	s.add(p, pkt, t)
}

// inject hands pkts to the local stack and returns how many it took. As in
// send, a failing packet is counted as inject_error and the rest retried.
// peers (nil for ICMP errors) names the peer of each packet for the log.
func (r *Router) inject(pkts [][]byte, peers []*peer, now int64) int {
	r.injMu.Lock()
	defer r.injMu.Unlock()
	done := 0
	for off := 0; off < len(pkts); off++ {
		n, err := r.injector.WriteBatch(pkts[off:])
		n = min(max(n, 0), len(pkts)-off)
		done += n
		if off += n; off == len(pkts) {
			break
		}
		if err == nil {
			err = io.ErrShortWrite
		}
		r.drop(DropInjectError, dropInfo{peer: peerAt(peers, off), err: err}, now)
	}
	return done
}

// peerAt returns peers[i], or nil when peers is nil.
func peerAt(peers []*peer, i int) *peer {
	if peers == nil {
		return nil
	}
	return peers[i]
}

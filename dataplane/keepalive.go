package dataplane

import (
	"context"
	"net/netip"
	"time"
)

// Replies to one peer's keepalive requests: at most kaReplyBurst at once,
// then one per kaReplyInterval. A peer asks once per keepalive interval
// (25 s by default), so this answers every request of a sane one, while a
// flood of forged requests naming a peer gets a trickle of replies.
const (
	kaReplyInterval = time.Second
	kaReplyBurst    = 5
)

// keepaliveLoop sends a keepalive request to each peer with a configured endpoint
// and a Keepalive interval, at start and then every interval, until ctx is
// done. One goroutine and one timer serve all peers: it sleeps until the
// earliest due peer. A lost or failed keepalive is not retried; the next
// one follows an interval later.
func (e *Engine) keepaliveLoop(ctx context.Context) {
	for e.keepaliveRun(ctx) {
	}
}

// keepaliveRun serves the peers of the current configuration until ctx is
// done (false) or Reconfigure changed it (true: start over).
func (e *Engine) keepaliveRun(ctx context.Context) bool {
	e.rc.kaMu.Lock()
	peers, gen := e.keepalivePeers(), e.rc.gen
	e.rc.kaMu.Unlock()
	due := make([]time.Time, len(peers)) // zero: due now
	b := newTxBatch(len(peers))
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return false
		case <-e.rc.wake():
			return true
		case <-timer.C:
		}
		e.rc.kaMu.Lock()
		if e.rc.gen != gen {
			e.rc.kaMu.Unlock()
			return true
		}
		next := e.sendDueKeepalives(peers, due, &b)
		e.rc.kaMu.Unlock()
		timer.Reset(time.Until(next))
	}
}

// keepalivePeers lists the peers that get keepalives.
func (e *Engine) keepalivePeers() []*peer {
	var ps []*peer
	for i := range e.r.peers {
		if p := &e.r.peers[i]; p.keepalive > 0 && p.configured.IsValid() {
			ps = append(ps, p)
		}
	}
	return ps
}

// sendDueKeepalives sends to every peer whose due time has come, moves
// those due times one interval on, and returns the earliest next one.
func (e *Engine) sendDueKeepalives(peers []*peer, due []time.Time, b *txBatch) time.Time {
	now := time.Now()
	b.reset()
	next := now.Add(24 * time.Hour)
	for i, p := range peers {
		if !now.Before(due[i]) {
			b.add(e.ka.request, p.configured, p)
			due[i] = now.Add(p.keepalive)
		}
		if due[i].Before(next) {
			next = due[i]
		}
	}
	e.send(b, int64(now.Sub(e.r.epoch)))
	return next
}

// receiveKeepalive handles a datagram for which isKeepalive holds, from
// the endpoint of peer known, or (known nil) from an unknown address. A
// peer's endpoint names the peer, as for data. From an unknown address
// the message's prefixes name it (keepalivePeer), and only a peer
// configured without an endpoint may be learned there, as from data;
// anything else is not_from_peer. An accepted request is answered.
func (e *Engine) receiveKeepalive(s *transportState, pkt []byte, from netip.AddrPort, known *peer, eps *endpoints, t batchTime) *endpoints {
	m, ok := parseKeepalive(pkt)
	if !ok {
		e.r.drop(DropBadKeepalive, dropInfo{peer: known, addr: from}, t.mono)
		return eps
	}
	p := known
	if p == nil {
		if p, ok = e.keepalivePeer(m); !ok || p.configured.IsValid() {
			e.r.drop(DropNotFromPeer, dropInfo{addr: from}, t.mono)
			return eps
		}
		eps = e.learn(p, from, eps, t)
	}
	p.ctr.keepalivesRx.Add(1)
	p.ctr.lastRx.Store(t.wall)
	if m.typ != kaTypeRequest {
		return eps // never a reply to a reply
	}
	if !p.kaReplies.allow(t.mono) {
		e.r.ctr.kaRepliesLimited.Add(1)
		return eps
	}
	s.relay.add(replyFor(e.ka.reply, len(pkt)), from, p)
	return eps
}

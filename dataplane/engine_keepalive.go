package dataplane

import (
	"context"
	"time"
)

// keepaliveMsg is the keepalive datagram: zero bytes, which no valid
// tunneled packet can be.
var keepaliveMsg = []byte{}

// keepaliveLoop sends a keepalive to each peer with a configured endpoint
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
	for i := range e.peers {
		if p := &e.peers[i]; p.keepalive > 0 && p.configured.IsValid() {
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
			b.add(keepaliveMsg, p.configured, p)
			due[i] = now.Add(p.keepalive)
		}
		if due[i].Before(next) {
			next = due[i]
		}
	}
	e.send(b, int64(now.Sub(e.epoch)))
	return next
}

package dataplane

import (
	"errors"
	"fmt"
	"sync"
)

// reconfState lets Reconfigure change a running engine's peers and
// prefixes without stopping it; its capture, which ReplaceCapture swaps,
// is in a CaptureSlot (captureslot.go).
//
// Each packet loop holds its own mutex while it handles a batch (never
// while it blocks in a read). The three are distinct, so in normal
// operation each is taken only by its own goroutine, stays in that core's
// cache and costs two uncontended atomic operations per batch; only
// Reconfigure takes all three, and so finds every loop between batches.
// Stats takes cfgMu (read) so that it never sees a half-swapped peer list.
type reconfState struct {
	cfgMu              sync.RWMutex
	capMu, tunMu, kaMu sync.Mutex
	gen                uint64 // bumped by Reconfigure, under all locks

	wakeOnce sync.Once
	kaWake   chan struct{} // tells the keepalive loop of a Reconfigure
}

// wake returns the keepalive loop's wake-up channel.
func (r *reconfState) wake() chan struct{} {
	r.wakeOnce.Do(func() { r.kaWake = make(chan struct{}, 1) })
	return r.kaWake
}

// ErrStopped is returned by ReplaceCapture after Run has stopped.
var ErrStopped = errors.New("dataplane: engine stopped")

// ReplaceCapture makes the running engine read from c (a capture re-opened
// on a re-created LAN interface, say) and closes the previous one. After
// Run has stopped it closes c and returns ErrStopped.
func (e *Engine) ReplaceCapture(c Capture) error { return e.capture.Replace(c) }

// Reconfigure replaces the engine's peers, prefixes, ICMP sources and LAN
// MTU with those of cfg (and Relay) while it runs; cfg.BatchSize and
// cfg.Logger are ignored.
// Peers are matched by name: one that stays keeps its counters and, if
// its configured endpoint did not change, its learned endpoint, so that
// its traffic goes on undisturbed. cfg is checked as New checks it; an
// invalid cfg changes nothing.
func (e *Engine) Reconfigure(cfg Config) error {
	var n Router
	cfg.BatchSize = e.r.batch
	if err := n.configure(cfg); err != nil {
		return fmt.Errorf("dataplane: %w", err)
	}
	ka := newKeepaliveState(cfg)
	e.lockAll()
	defer e.unlockAll()
	oldPeers, oldEps := e.r.peers, e.eps.Load()
	was := e.r.takeTables(&n)
	e.ka = ka
	e.learns = false
	for i := range e.r.peers {
		e.learns = e.learns || !e.r.peers[i].configured.IsValid()
	}
	e.eps.Store(carryEndpoints(oldPeers, e.r.peers, was, oldEps))
	e.rc.gen++
	select {
	case e.rc.wake() <- struct{}{}:
	default:
	}
	return nil
}

func (e *Engine) lockAll() {
	e.rc.cfgMu.Lock()
	e.rc.capMu.Lock()
	e.rc.tunMu.Lock()
	e.rc.kaMu.Lock()
}

func (e *Engine) unlockAll() {
	e.rc.kaMu.Unlock()
	e.rc.tunMu.Unlock()
	e.rc.capMu.Unlock()
	e.rc.cfgMu.Unlock()
}

// carryPeers moves the counters and limiters of the peers that stay
// (same name) from old to nw and returns, for each peer of nw, its index
// in old (-1: a new peer). It runs with every loop stopped between
// batches, so the copies are exact.
func carryPeers(old, nw []peer) []int {
	byName := make(map[string]int, len(old))
	for i := range old {
		byName[old[i].name] = i
	}
	was := make([]int, len(nw))
	for i := range nw {
		j, ok := byName[nw[i].name]
		if !ok {
			was[i] = -1
			continue
		}
		was[i] = j
		nw[i].ctr.copyFrom(&old[j].ctr)
		nw[i].learnLog, nw[i].learnSuppressed = old[j].learnLog, old[j].learnSuppressed
		nw[i].kaReplies = old[j].kaReplies
	}
	return was
}

// carryEndpoints returns the endpoint snapshot of the new peers nw: a
// peer that stays (was[i], its index in old and in old's snapshot eps)
// and learns its endpoint before and after keeps the one it learned.
func carryEndpoints(old, nw []peer, was []int, eps *endpoints) *endpoints {
	out := initialEndpoints(nw)
	for i, j := range was {
		if j < 0 || nw[i].configured.IsValid() || old[j].configured.IsValid() {
			continue
		}
		if cur := eps.cur[j]; cur.IsValid() {
			if _, taken := out.byAddr[cur]; !taken {
				out = out.withEndpoint(i, cur)
			}
		}
	}
	return out
}

// copyFrom copies o's counters into c.
func (c *peerCounters) copyFrom(o *peerCounters) {
	c.rxPackets.Store(o.rxPackets.Load())
	c.rxBytes.Store(o.rxBytes.Load())
	c.lastRx.Store(o.lastRx.Load())
	c.keepalivesRx.Store(o.keepalivesRx.Load())
	c.txPackets.Store(o.txPackets.Load())
	c.txBytes.Store(o.txBytes.Load())
	c.keepalivesTx.Store(o.keepalivesTx.Load())
	c.keepalivesAnswered.Store(o.keepalivesAnswered.Load())
}

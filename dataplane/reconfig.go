package dataplane

import (
	"errors"
	"fmt"
	"sync"
	"time"
)

// reconfState lets Reconfigure change a running engine's peers and
// prefixes, and ReplaceCapture swap its capture, without stopping it.
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

	liveMu  sync.Mutex
	live    Capture // the current capture once replaced; nil: Engine.capture
	liveGen uint64  // bumped by ReplaceCapture
	stopped bool    // Run has closed the I/O: no more replacements

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

// liveCapture returns the capture to read from and its generation.
func (e *Engine) liveCapture() (Capture, uint64) {
	e.rc.liveMu.Lock()
	defer e.rc.liveMu.Unlock()
	if e.rc.live != nil {
		return e.rc.live, e.rc.liveGen
	}
	return e.capture, e.rc.liveGen
}

// takeCapture marks the engine stopped and returns the capture to close.
func (e *Engine) takeCapture() Capture {
	e.rc.liveMu.Lock()
	defer e.rc.liveMu.Unlock()
	e.rc.stopped = true
	if e.rc.live != nil {
		return e.rc.live
	}
	return e.capture
}

// ReplaceCapture makes the running engine read from c (a capture re-opened
// on a re-created LAN interface, say) and closes the previous one. After
// Run has stopped it closes c and returns ErrStopped.
func (e *Engine) ReplaceCapture(c Capture) error {
	e.rc.liveMu.Lock()
	if e.rc.stopped {
		e.rc.liveMu.Unlock()
		c.Close()
		return ErrStopped
	}
	old := e.rc.live
	if old == nil {
		old = e.capture
	}
	e.rc.live = c
	e.rc.liveGen++
	e.rc.liveMu.Unlock()
	return old.Close() // unblocks the capture loop, which picks up c
}

// nextCapture decides what the capture loop does after c (generation gen)
// returned err: read from a capture that replaced it, keep reading c after
// a transient error (the interface went down), or stop (nil).
func (e *Engine) nextCapture(c Capture, gen uint64, err error) (Capture, uint64) {
	cur, curGen := e.liveCapture()
	if curGen != gen {
		return cur, curGen
	}
	if errors.Is(err, ErrInterfaceDown) {
		time.Sleep(10 * time.Millisecond) // bounds the loop should the error repeat
		return c, gen
	}
	return nil, gen
}

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
	eps := carryOver(e.r.peers, n.peers, e.eps.Load())
	e.r.takeTables(&n)
	e.ka, e.relay = ka, cfg.Relay
	e.learns = false
	for i := range e.r.peers {
		e.learns = e.learns || !e.r.peers[i].configured.IsValid()
	}
	e.eps.Store(eps)
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

// carryOver moves the counters and learned endpoints of peers that stay
// (same name) from old to nw and returns nw's endpoint snapshot. It runs
// with every loop stopped between batches, so the copies are exact.
func carryOver(old, nw []peer, eps *endpoints) *endpoints {
	byName := make(map[string]int, len(old))
	for i := range old {
		byName[old[i].name] = i
	}
	out := initialEndpoints(nw)
	for i := range nw {
		j, ok := byName[nw[i].name]
		if !ok {
			continue
		}
		nw[i].ctr.copyFrom(&old[j].ctr)
		nw[i].learnLog, nw[i].learnSuppressed = old[j].learnLog, old[j].learnSuppressed
		nw[i].kaReplies = old[j].kaReplies
		if cur := eps.cur[j]; !nw[i].configured.IsValid() && !old[j].configured.IsValid() && cur.IsValid() {
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

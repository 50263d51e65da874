package dataplane

import (
	"context"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"time"
)

// endpoints is an immutable snapshot of where each peer is. Both
// directions load it once per batch (one atomic load); the transport
// goroutine, its only writer, replaces it copy-on-write when a learning
// peer's endpoint changes, which is rare (NAT rebinding, peer restart).
//
// Why an atomic snapshot rather than a map under an RWMutex: reads happen
// on every batch in both directions while writes almost never happen, and
// RLock/RUnlock would make both cores write the mutex's reader count, a
// shared cache line, on every batch. The price is one allocation per
// endpoint change.
type endpoints struct {
	byAddr map[netip.AddrPort]int // configured and learned endpoints → peer index
	cur    []netip.AddrPort       // per peer: configured or learned endpoint; zero if none yet
}

// initialEndpoints holds the configured endpoints; learning peers start
// without one.
func initialEndpoints(peers []peer) *endpoints {
	eps := &endpoints{
		byAddr: make(map[netip.AddrPort]int, len(peers)),
		cur:    make([]netip.AddrPort, len(peers)),
	}
	for i := range peers {
		if ep := peers[i].configured; ep.IsValid() {
			eps.byAddr[ep] = i
			eps.cur[i] = ep
		}
	}
	return eps
}

// withEndpoint returns a copy of eps in which peer i is at ep instead of
// wherever it was.
func (eps *endpoints) withEndpoint(i int, ep netip.AddrPort) *endpoints {
	n := &endpoints{byAddr: maps.Clone(eps.byAddr), cur: slices.Clone(eps.cur)}
	if old := n.cur[i]; old.IsValid() {
		delete(n.byAddr, old)
	}
	n.byAddr[ep] = i
	n.cur[i] = ep
	return n
}

// Endpoint changes of one peer are logged at most learnLogBurst at once and
// then one per minute: every genuine change (first contact, a NAT
// rebinding or two) shows, while a flapping or spoofing sender cannot
// flood the log.
const (
	learnLogInterval = time.Minute
	learnLogBurst    = 5
)

// learn moves learning peer p to endpoint ep, publishes the new snapshot
// and returns it for the rest of the batch. Each change is logged once at
// info level, within the limit above.
func (e *Engine) learn(p *peer, ep netip.AddrPort, eps *endpoints, t batchTime) *endpoints {
	old := eps.cur[p.idx]
	eps = eps.withEndpoint(p.idx, ep)
	e.eps.Store(eps)
	if e.onLearn != nil {
		e.onLearn(p.name, ep)
	}
	if !p.learnLog.allow(t.mono) {
		p.learnSuppressed++
		return eps
	}
	e.r.log.LogAttrs(context.Background(), slog.LevelInfo, "peer endpoint learned",
		slog.String("peer", p.name), slog.String("endpoint", ep.String()),
		slog.String("previous", addrPortOrNone(old)), slog.Uint64("suppressed", p.learnSuppressed))
	p.learnSuppressed = 0
	return eps
}

// addrPortOrNone formats ap for logs, with "none" for the zero value.
func addrPortOrNone(ap netip.AddrPort) string {
	if !ap.IsValid() {
		return "none"
	}
	return ap.String()
}

package agent

import (
	"context"
	"errors"
	"os"
	"sync"
	"syscall"
	"time"

	"tunnel-agent/agent/config"
	"tunnel-agent/dataplane"
	"tunnel-agent/netcfg"
)

// liveSite is a running `up`: the host it configured (and its journal),
// the watcher that keeps the host as the file says, and the dataplane.
// It is what SIGHUP reloads and what the metrics endpoint reads.
type liveSite struct {
	o       *options
	h       siteHost
	j       *netcfg.Journal
	w       *netcfg.Watcher
	met     *metrics
	lookup  lookupFunc       // resolves peer endpoint names (resolve.go)
	hup     <-chan os.Signal // SIGHUP, registered before Apply so none is lost
	stopHup func()
	// reloads are the reloads asked on the status socket (reload.go).
	reloads chan chan ReloadVerdict

	mu  sync.Mutex // guards what follows (reload vs. capture re-bind)
	cfg *config.Config
	// tun is the running tunnel, set by started before anything that
	// uses it starts.
	tun     tunnel
	capIdx  int         // ifindex the capture is bound to
	rebind  rebindRetry // a failed re-bind of the capture, retried
	stopped bool        // started's stop ran: no more re-binds
}

// newLiveSite prepares the watcher for a host Apply just configured.
func newLiveSite(cfg *config.Config, o *options, h siteHost, j *netcfg.Journal) *liveSite {
	l := &liveSite{o: o, h: h, j: j, cfg: cfg, met: newMetrics(), lookup: o.sys.lookup,
		reloads: make(chan chan ReloadVerdict)}
	l.w = netcfg.NewWatcher(h, Desired(cfg), netcfg.WatchOptions{OnEvent: l.onRepair, OnChecked: l.onChecked, Journal: j})
	l.hup, l.stopHup = o.sys.signals(syscall.SIGHUP)
	return l
}

// close stops taking SIGHUP.
func (l *liveSite) close() { l.stopHup() }

// onRepair logs one line per repair and counts it.
func (l *liveSite) onRepair(ev netcfg.WatchEvent) {
	l.met.repair(ev)
	switch ev.Action {
	case netcfg.Repaired:
		l.o.log.Warn("host drifted from the configuration; repaired", "item", ev.Item, "found", ev.From, "set", ev.To)
	case netcfg.RepairFailed:
		l.o.log.Error("host drifted from the configuration; repair failed", "item", ev.Item, "found", ev.From, "err", ev.Err)
	case netcfg.GaveUp:
		l.o.log.Error("something keeps changing this item back; no longer repairing it until the next reload",
			"item", ev.Item, "found", ev.From)
	case netcfg.OwnerRemoved:
		l.o.log.Warn("an object that was on the host before `up` is gone; its owner removed it, not re-creating it (not ours)",
			"item", ev.Item)
	case netcfg.Displaced:
		l.o.log.Warn("a route of the agent's was replaced by a route it did not make; leaving that route alone",
			"item", ev.Item, "found", ev.From)
	}
}

// started is called by runTunnel once the dataplane exists; it starts the
// watcher, the reload handler and the metrics endpoint. The returned
// function stops them (and waits) before the host is reverted. t is the
// tunnel they change and read.
func (l *liveSite) started(ctx context.Context, t tunnel) (stop func()) {
	l.mu.Lock()
	l.tun, l.capIdx = t, l.ifindex(l.cfg.LAN.Interface)
	l.mu.Unlock()
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { l.w.Run(ctx, l.h, l.o.log) })
	wg.Go(func() { l.handleReloads(ctx) })
	wg.Go(func() { l.reresolveLoop(ctx) })
	stopMetrics := l.serveMetrics()
	notifyReady(l.o)
	return func() {
		notifyStopping(l.o)
		cancel()
		wg.Wait()
		l.mu.Lock()
		l.stopped = true
		l.rebind.cancel()
		l.mu.Unlock()
		stopMetrics()
	}
}

// rebindCapture re-opens the capture when the LAN interface was re-created
// (its ifindex changed): the old socket is bound to an index that is gone.
// It runs after every check pass of the watcher and, after a failure, on
// the retry timer (rebindRetry): a failed re-bind is logged, counted, and
// retried with backoff until it succeeds or the interface changes again.
func (l *liveSite) rebindCapture() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.rebind.cancel()
	if l.stopped {
		return
	}
	lan := l.cfg.LAN.Interface
	idx, err := l.o.sys.linkIndex(lan)
	if err != nil { // out of descriptors, say: whether it changed is unknown
		l.rebindFailed(0, "cannot look up the LAN interface to check the capture's binding", err)
		return
	}
	if idx == 0 || idx == l.capIdx {
		l.rebind.reset() // gone (a later pass brings it back), or bound already
		return
	}
	err = l.tun.RebindCapture(peerPrefixes(l.cfg))
	if err != nil && !errors.Is(err, dataplane.ErrStopped) {
		l.rebindFailed(idx, "LAN interface re-created, but the capture cannot be re-opened; no packet is captured until it is", err)
		return
	}
	l.rebind.reset()
	if err != nil {
		return // stopping
	}
	l.o.log.Warn("LAN interface re-created; capture re-bound", "lan", lan, "old_ifindex", l.capIdx, "ifindex", idx)
	l.capIdx = idx
	l.met.repairs.WithLabelValues("re-bind capture to "+lan, string(netcfg.Repaired)).Inc()
}

// rebindFailed logs and counts a failed re-bind attempt for the interface
// idx and schedules the next (l.mu held).
func (l *liveSite) rebindFailed(idx int, msg string, err error) {
	delay := l.rebind.failed(idx, l.rebindCapture)
	l.met.rebindFailures.Inc()
	l.o.log.Error(msg, "lan", l.cfg.LAN.Interface, "ifindex", idx, "attempt", l.rebind.attempts, "retry_in", delay, "err", err)
}

// Backoff of the re-bind retries.
const (
	rebindFirstRetry = 200 * time.Millisecond
	rebindMaxRetry   = 30 * time.Second
)

// rebindRetry is the state of a failing capture re-bind (guarded by
// liveSite.mu).
type rebindRetry struct {
	failures uint64        // failed attempts since start: status and metrics
	attempts int           // failed attempts for the current interface
	idx      int           // the ifindex they were for
	delay    time.Duration // before the next retry
	timer    *time.Timer
	after    func(time.Duration, func()) *time.Timer // time.AfterFunc; tests replace it
}

// failed records a failed attempt for the interface idx and schedules
// retry; it returns the delay. A new interface starts the backoff over.
func (r *rebindRetry) failed(idx int, retry func()) time.Duration {
	r.failures++
	if idx != r.idx || r.delay == 0 {
		r.idx, r.attempts, r.delay = idx, 0, rebindFirstRetry
	}
	r.attempts++
	d := r.delay
	r.delay = min(2*r.delay, rebindMaxRetry)
	after := r.after
	if after == nil {
		after = time.AfterFunc
	}
	r.timer = after(d, retry)
	return d
}

// failing reports whether a re-bind failed and is being retried.
func (r *rebindRetry) failing() bool { return r.attempts > 0 }

// reset forgets the current failure (the failures count stays).
func (r *rebindRetry) reset() {
	r.cancel()
	r.idx, r.attempts, r.delay = 0, 0, 0
}

// cancel stops a scheduled retry.
func (r *rebindRetry) cancel() {
	if r.timer != nil {
		r.timer.Stop()
		r.timer = nil
	}
}

// ifindex returns the index of a link in the agent's namespace, 0 if none.
func (l *liveSite) ifindex(name string) int {
	idx, _ := l.o.sys.linkIndex(name)
	return idx
}

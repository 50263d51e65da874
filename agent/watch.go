package agent

import (
	"context"
	"os"
	"os/signal"
	"sync"
	"syscall"

	"github.com/vishvananda/netlink"

	"tunnel-agent/dataplane"
	"tunnel-agent/netcfg"
)

// liveSite is a running `up`: the host it configured (and its journal),
// the watcher that keeps the host as the file says, and the dataplane.
// It is what SIGHUP reloads and what the metrics endpoint reads.
type liveSite struct {
	o      *options
	h      *netcfg.NetlinkHost
	j      *netcfg.Journal
	w      *netcfg.Watcher
	met    *metrics
	lookup lookupFunc     // resolves peer endpoint names (resolve.go)
	hup    chan os.Signal // SIGHUP, registered before Apply so none is lost

	mu      sync.Mutex // guards what follows (reload vs. capture re-bind)
	cfg     *Config
	eng     *dataplane.Engine
	capture *dataplane.PacketCapture
	capIdx  int             // ifindex the capture is bound to
	capBase captureCounters // counters of the captures re-binds replaced
}

// newLiveSite prepares the watcher for a host Apply just configured.
func newLiveSite(cfg *Config, o *options, h *netcfg.NetlinkHost, j *netcfg.Journal) *liveSite {
	l := &liveSite{o: o, h: h, j: j, cfg: cfg, met: newMetrics(), hup: make(chan os.Signal, 1), lookup: systemLookup}
	l.w = netcfg.NewWatcher(h, Desired(cfg), netcfg.WatchOptions{OnEvent: l.onRepair, OnChecked: l.rebindCapture, Journal: j})
	signal.Notify(l.hup, syscall.SIGHUP)
	return l
}

// close stops taking SIGHUP.
func (l *liveSite) close() { signal.Stop(l.hup) }

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
// function stops them (and waits) before the host is reverted.
func (l *liveSite) started(ctx context.Context, eng *dataplane.Engine, c *dataplane.PacketCapture) (stop func()) {
	l.mu.Lock()
	l.eng, l.capture, l.capIdx = eng, c, ifindex(l.cfg.LAN.Interface)
	l.mu.Unlock()
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { l.w.Run(ctx, l.h, l.o.log) })
	wg.Go(func() { l.handleReloads(ctx) })
	wg.Go(func() { l.reresolveLoop(ctx) })
	stopMetrics := l.serveMetrics()
	notifyReady(l.o.log)
	return func() {
		notifyStopping(l.o.log)
		cancel()
		wg.Wait()
		stopMetrics()
	}
}

// rebindCapture re-opens the capture when the LAN interface was re-created
// (its ifindex changed): the old socket is bound to an index that is gone.
func (l *liveSite) rebindCapture() {
	l.mu.Lock()
	defer l.mu.Unlock()
	lan := l.cfg.LAN.Interface
	idx := ifindex(lan)
	if l.eng == nil || idx == 0 || idx == l.capIdx {
		return
	}
	c, err := dataplane.OpenCaptureWith(lan, peerPrefixes(l.cfg), captureOptions(l.cfg))
	if err != nil {
		l.o.log.Error("LAN interface re-created, but the capture cannot be re-opened", "lan", lan, "err", err)
		return
	}
	if err := l.eng.ReplaceCapture(c); err != nil {
		return // stopping
	}
	// Read after ReplaceCapture closed it: its counters as of Close.
	l.capBase = l.capBase.plus(readCaptureCounters(l.capture))
	l.o.log.Warn("LAN interface re-created; capture re-bound", "lan", lan, "old_ifindex", l.capIdx, "ifindex", idx)
	l.capture, l.capIdx = c, idx
	l.met.repairs.WithLabelValues("re-bind capture to "+lan, string(netcfg.Repaired)).Inc()
}

// captureCounters are the drop counters of the captures this site has
// run (the current one plus those re-binds replaced, so that they never
// go down), for status and metrics; ok is false before the dataplane
// started.
func (l *liveSite) captureCounters() (cc captureCounters, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.capBase.plus(readCaptureCounters(l.capture)), l.capture != nil
}

// ifindex returns the index of a link in the agent's namespace, 0 if none.
func ifindex(name string) int {
	link, err := netlink.LinkByName(name)
	if err != nil {
		return 0
	}
	return link.Attrs().Index
}

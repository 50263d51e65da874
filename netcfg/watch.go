package netcfg

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"time"
)

// WatchAction says what the Watcher did about one item.
type WatchAction string

// Watcher actions, as reported in WatchEvent.Action.
const (
	Repaired     WatchAction = "repaired"      // the item had drifted and was put back
	RepairFailed WatchAction = "repair failed" // putting it back failed; retried on the next change
	GaveUp       WatchAction = "gave up"       // repaired too often: left alone until the next reload
	// OwnerRemoved: an object that was on the host before `up` (the
	// journal records it as unchanged: a namespace, veth, address or
	// route someone else made) is gone. Its owner removed it; it is not
	// the agent's to re-create. Reported once, until it is back.
	OwnerRemoved WatchAction = "owner removed"
	// Displaced: a route the agent added was replaced by someone else's
	// route with the same destination and metric. The agent never
	// replaces a route it did not make. Reported once, until it changes.
	Displaced WatchAction = "displaced"
)

// WatchEvent reports one repair (or refusal to repair) of one item: an
// entry of the plan, named as in the journal ("set MTU of veth0 to 1420").
type WatchEvent struct {
	Item     string
	Kind     Kind
	NS, Link string
	Action   WatchAction
	From, To string // the drifted value and the value put back
	Err      error  // RepairFailed: why
}

// WatchOptions tune a Watcher. Zero fields take the defaults.
type WatchOptions struct {
	// MaxRepairs repairs of one item within Window are allowed; the next
	// drift of it is reported as GaveUp and the item is no longer
	// repaired until SetDesired/Reconfigure (a reload). Default 5.
	MaxRepairs int
	// Window is the anti-fight window. Default 60s.
	Window time.Duration
	// Debounce is how long Run waits after a change notification for more
	// to arrive before it checks (a deleted link brings a burst of
	// address and route deletions). Default 50ms.
	Debounce time.Duration
	// OnEvent receives every event; called with the Watcher's lock held,
	// so it must not call back into the Watcher.
	OnEvent func(WatchEvent)
	// OnChecked is called after every check pass (without the lock).
	OnChecked func()
	// Now is the clock (tests); default time.Now.
	Now func() time.Time
	// Journal is the journal Apply writes (the Watcher only reads it, in
	// Check): an object it records as found (unchanged) belongs to
	// someone else and is not re-created when it disappears. Nil: every
	// item is the agent's.
	Journal *Journal
}

// ChangeSource tells the Watcher that something changed in a namespace.
// NetlinkHost implements it with netlink subscriptions.
type ChangeSource interface {
	// Subscribe calls kick on every link, address or route change in the
	// named namespace ("" = the agent's) until done is closed. lost is
	// called if the subscription ends early (after which kick is no
	// longer called).
	Subscribe(ns string, kick func(), lost func(error), done <-chan struct{}) error
}

// namespaceForgetter is implemented by hosts that cache per-namespace
// handles: a namespace deleted behind the agent's back must be reopened
// once re-created.
type namespaceForgetter interface{ ForgetNamespace(name string) }

// Watcher keeps the host as a Desired state says: on every change
// notification it reads each entry of the plan with the same read ops
// Apply uses (from one view of the host per pass: each table is listed
// once) and re-applies the ones that drifted. It never writes the
// journal: the prior values recorded by the first Apply stay what Revert
// restores, and an object Apply created and someone deleted is re-created
// under the same entry, which Revert still removes.
//
// What the agent did not make is not re-created: an object the journal
// records as found before `up` (unchanged) that disappears was removed by
// its owner (OwnerRemoved), and a route of the agent's that someone
// replaced with their own is left to them (Displaced). Values (an MTU,
// features, a link up) that were already as configured and are changed
// later are repaired: the link is there either way, Revert leaves such a
// value as it is, and so it ends as it was found at `up`.
type Watcher struct {
	h   Host
	opt WatchOptions

	mu      sync.Mutex // serialises checks, reconfiguration and Host use
	d       Desired
	entries []Entry // Entries(d)
	// The state of each item, by its index in entries.
	history  map[int][]time.Time // recent repair times
	stopped  map[int]bool        // items given up on
	reported map[int]WatchAction // items reported as OwnerRemoved or Displaced
	found    map[target]bool     // targets the journal records as found (unchanged)
	foundLen int                 // len(journal entries) when found was built; -1: rebuild

	kick chan struct{}
}

// NewWatcher returns a Watcher of d on h. Nothing happens until Check or
// Run is called.
func NewWatcher(h Host, d Desired, o WatchOptions) *Watcher {
	if o.MaxRepairs <= 0 {
		o.MaxRepairs = 5
	}
	if o.Window <= 0 {
		o.Window = time.Minute
	}
	if o.Debounce <= 0 {
		o.Debounce = 50 * time.Millisecond
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	w := &Watcher{h: h, opt: o, d: d, kick: make(chan struct{}, 1)}
	w.resetLocked()
	return w
}

func (w *Watcher) resetLocked() {
	w.entries = Entries(w.d)
	w.history = map[int][]time.Time{}
	w.stopped = map[int]bool{}
	w.reported = map[int]WatchAction{}
	w.foundLen = -1
}

// foundLocked returns the targets whose latest journal entry says they
// were found as configured (not the agent's), rebuilt when the journal
// changed.
func (w *Watcher) foundLocked() map[target]bool {
	j := w.opt.Journal
	if j == nil {
		return nil
	}
	if w.foundLen != len(j.Entries) {
		w.found = make(map[target]bool, len(j.Entries))
		for i := range j.Entries {
			w.found[j.Entries[i].target()] = j.Entries[i].State == Unchanged
		}
		w.foundLen = len(j.Entries)
	}
	return w.found
}

// Kick asks Run for a check pass soon; it never blocks.
func (w *Watcher) Kick() {
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// SetDesired replaces the desired state and forgets the anti-fight state
// (items given up on are repaired again).
func (w *Watcher) SetDesired(d Desired) {
	w.mu.Lock()
	w.d = d
	w.resetLocked()
	w.mu.Unlock()
	w.Kick()
}

// Reconfigure applies the difference between the watched desired state and
// d to the host (see Reconfigure), then watches d (unless Reconfigure
// refused d for a route before changing anything). The Watcher's lock
// keeps it from running concurrently with a check.
func (w *Watcher) Reconfigure(d Desired, j *Journal, log *slog.Logger) error {
	w.mu.Lock()
	err := Reconfigure(w.h, w.d, d, j, log)
	var refused *ConflictError
	if !errors.As(err, &refused) { // refused before any change: keep watching the old state
		w.d = d
		w.resetLocked()
	}
	w.mu.Unlock()
	w.Kick()
	return err
}

// CheckReconfigure is CheckReconfigure for the watched desired state:
// whether Reconfigure(d, j, ...) would refuse d for a route, checked
// before anything changes.
func (w *Watcher) CheckReconfigure(d Desired, j *Journal) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return CheckReconfigure(w.h, w.d, d, j)
}

// Locked runs f with the Watcher's lock held, so that f may use the Host
// without racing a check.
func (w *Watcher) Locked(f func()) {
	w.mu.Lock()
	defer w.mu.Unlock()
	f()
}

// Check makes one pass over the plan and repairs what drifted. It returns
// the events of the pass (also passed to OnEvent).
func (w *Watcher) Check() []WatchEvent {
	w.mu.Lock()
	var out []WatchEvent
	v := newView(w.h)
	found := w.foundLocked()
	for i := range w.entries {
		if ev, ok := w.checkEntry(v, i, found); ok {
			out = append(out, ev)
			if w.opt.OnEvent != nil {
				w.opt.OnEvent(ev)
			}
		}
	}
	w.mu.Unlock()
	if w.opt.OnChecked != nil {
		w.opt.OnChecked()
	}
	return out
}

// checkEntry reads one entry and repairs it if it drifted. A target that
// cannot be read (a LAN interface that is gone, say) is left for a later
// pass: the change that brings it back triggers one.
func (w *Watcher) checkEntry(v *view, item int, found map[target]bool) (WatchEvent, bool) {
	e := w.entries[item]
	if w.stopped[item] {
		return WatchEvent{}, false
	}
	o := ops[e.Kind]
	cur := e
	matches, err := o.read(v, &cur)
	if err != nil {
		return WatchEvent{}, false
	}
	if matches {
		delete(w.reported, item)
		return WatchEvent{}, false
	}
	ev := WatchEvent{Item: e.String(), Kind: e.Kind, NS: e.NS, Link: e.Link, From: priorText(&cur), To: wantText(&cur)}
	if e.Kind == KindRoute || e.Kind == KindVeth || e.Kind == KindAddr || e.Kind == KindNamespace {
		ev.From = "absent"
		if cur.Prior.Route != nil {
			ev.From = cur.Prior.Route.Describe()
		}
		switch {
		case routeConflict(&cur):
			ev.Action = Displaced
		case found[e.target()]:
			ev.Action = OwnerRemoved
		}
	}
	if ev.Action != "" {
		if w.reported[item] == ev.Action {
			return WatchEvent{}, false
		}
		w.reported[item] = ev.Action
		return ev, true
	}
	if !w.allow(item) {
		w.stopped[item] = true
		ev.Action = GaveUp
		return ev, true
	}
	if e.Kind == KindNamespace {
		if f, ok := w.h.(namespaceForgetter); ok {
			f.ForgetNamespace(e.NS)
		}
	}
	if err := o.apply(w.h, &cur); err != nil {
		v.drop(cur.NS) // it may have done part of it: read again
		v.drop(cur.PeerNS)
		ev.Action, ev.Err = RepairFailed, err
		return ev, true
	}
	v.changed(&cur, false)
	ev.Action = Repaired
	return ev, true
}

// allow records a repair of item now, unless MaxRepairs happened within
// the window already.
func (w *Watcher) allow(item int) bool {
	now := w.opt.Now()
	h := slices.DeleteFunc(w.history[item], func(t time.Time) bool { return now.Sub(t) >= w.opt.Window })
	if len(h) >= w.opt.MaxRepairs {
		w.history[item] = h
		return false
	}
	w.history[item] = append(h, now)
	return true
}

// namespaces lists the namespaces the desired state touches ("" first).
func (w *Watcher) namespaces() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := []string{""}
	for _, e := range w.entries {
		if e.NS != "" && !slices.Contains(out, e.NS) {
			out = append(out, e.NS)
		}
	}
	return out
}

// Run subscribes to changes in every namespace of the desired state
// (including ones a reload adds), checks once at start and then after
// every burst of changes, until ctx is done. A lost subscription is
// re-established on the next pass (and the pass is made, since changes
// may have been missed).
func (w *Watcher) Run(ctx context.Context, src ChangeSource, log *slog.Logger) {
	subs := map[string]chan struct{}{}
	defer func() {
		for _, done := range subs {
			close(done)
		}
	}()
	lost := make(chan string, 16)
	w.Kick()
	for {
		w.subscribe(src, subs, lost, log)
		select {
		case <-ctx.Done():
			return
		case ns := <-lost:
			if done, ok := subs[ns]; ok {
				close(done)
				delete(subs, ns)
			}
			w.Kick()
			continue
		case <-w.kick:
		}
		if !sleepCtx(ctx, w.opt.Debounce) {
			return
		}
		w.drainKick()
		w.Check()
	}
}

func (w *Watcher) drainKick() {
	select {
	case <-w.kick:
	default:
	}
}

// subscribe subscribes to the namespaces not yet subscribed.
func (w *Watcher) subscribe(src ChangeSource, subs map[string]chan struct{}, lost chan string, log *slog.Logger) {
	for _, ns := range w.namespaces() {
		if _, ok := subs[ns]; ok {
			continue
		}
		done := make(chan struct{})
		onLost := func(err error) {
			log.Warn("netlink subscription lost; resubscribing", "namespace", ns, "err", err)
			select {
			case lost <- ns:
			case <-done:
			}
		}
		if err := src.Subscribe(ns, w.Kick, onLost, done); err != nil {
			if !errors.Is(err, ErrNotFound) {
				log.Warn("cannot watch namespace for changes", "namespace", ns, "err", err)
			}
			close(done)
			continue
		}
		subs[ns] = done
	}
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

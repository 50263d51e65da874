package netcfg_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	. "tunnel-agent/netcfg"
	"tunnel-agent/netcfg/netcfgtest"
)

// These tests run the Watcher's repair and anti-fight logic, and
// Reconfigure, against fakeHost (fakehost_test.go), without root.

// appliedVPS applies vpsDesired("ns1") to a VPS-like fake host and returns
// the host, its dump before Apply and the journal.
func appliedVPS(t *testing.T) (*netcfgtest.Host, string, *Journal) {
	t.Helper()
	h := vpsHost(t)
	before := h.Dump()
	j := newTestJournal(t)
	if err := Apply(h, vpsDesired("ns1"), j, discard); err != nil {
		t.Fatal(err)
	}
	return h, before, j
}

// fakeClock is a settable clock for the anti-fight window.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

func actions(evs []WatchEvent) string {
	var s []string
	for _, e := range evs {
		s = append(s, string(e.Action)+": "+e.Item+" ("+e.From+" -> "+e.To+")")
	}
	return strings.Join(s, "\n")
}

func TestWatchNoDriftNoRepair(t *testing.T) {
	h, _, _ := appliedVPS(t)
	w := NewWatcher(h, vpsDesired("ns1"), WatchOptions{})
	h.Must(t)
	if evs := w.Check(); len(evs) != 0 {
		t.Errorf("events on an unchanged host:\n%s", actions(evs))
	}
	if c := h.MutatingCalls(); len(c) != 0 {
		t.Errorf("mutating calls on an unchanged host: %v", c)
	}
}

// TestWatchRepairs: each drift the issue names is put back with one event
// saying what changed, and the host ends up exactly as Apply left it.
func TestWatchRepairs(t *testing.T) {
	bh := netip.MustParsePrefix("192.168.111.0/30")
	cases := []struct {
		name  string
		drift func(h *netcfgtest.Host) error
		want  string
	}{
		{"blackhole deleted", func(h *netcfgtest.Host) error {
			return h.DelRoute("", RouteSpec{Dst: bh, Type: RouteBlackhole, Protocol: RouteProtocol})
		}, "repaired: add route blackhole 192.168.111.0/30 (absent -> blackhole 192.168.111.0/30)"},
		{"LAN MTU", func(h *netcfgtest.Host) error { return h.SetMTU("", "veth0", 1500) },
			"repaired: set MTU of veth0 to 1420 (1500 -> 1420)"},
		{"LAN down", func(h *netcfgtest.Host) error { return h.SetUp("", "veth0", false) },
			"repaired: bring up veth0 (down -> up)"},
		{"rx checksum on", func(h *netcfgtest.Host) error {
			return h.SetFeatures("", "veth0", map[string]bool{"rx-checksum": true})
		},
			"repaired: set features of veth0: rx off, tx off (rx-checksum on -> rx-checksum off)"},
		{"namespace address", func(h *netcfgtest.Host) error {
			return h.DelAddr("ns1", "veth1", netip.MustParsePrefix("11.11.11.100/24"))
		}, "repaired: add address 11.11.11.100/24 to veth1 in ns1 (absent -> present)"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h, _, _ := appliedVPS(t)
			applied := h.Dump()
			w := NewWatcher(h, vpsDesired("ns1"), WatchOptions{})
			h.Must(t, c.drift(h))
			evs := w.Check()
			if got := actions(evs); !strings.Contains(got, c.want) {
				t.Errorf("events:\n%s\nwant a line %q", got, c.want)
			}
			checkDump(t, "after repair", h, applied)
		})
	}
}

// TestWatchVethRecreated: the veth pair deleted (the namespace end, its
// address and default route go with it) comes back whole in one pass.
func TestWatchVethRecreated(t *testing.T) {
	h, before, j := appliedVPS(t)
	applied := h.Dump()
	w := NewWatcher(h, vpsDesired("ns1"), WatchOptions{})
	h.Must(t, h.DeleteLink("", "veth0"))
	evs := w.Check()
	if len(evs) == 0 || evs[0].Item != "create veth pair veth0 <-> veth1 (veth1 in ns1)" {
		t.Errorf("first event should re-create the pair:\n%s", actions(evs))
	}
	checkDump(t, "after repair", h, applied)
	if err := Revert(h, j, discard); err != nil {
		t.Fatal(err)
	}
	checkDump(t, "after revert", h, before)
}

// TestWatchJournalUntouched: repairs never change the journal, so Revert
// restores the values from before Apply, not the drifted ones.
func TestWatchJournalUntouched(t *testing.T) {
	h, before, j := appliedVPS(t)
	saved, err := LoadJournal(j.Path())
	if err != nil {
		t.Fatal(err)
	}
	w := NewWatcher(h, vpsDesired("ns1"), WatchOptions{})
	h.Must(t, h.SetMTU("", "veth0", 9000), h.DeleteLink("", "veth0"))
	w.Check()
	again, err := LoadJournal(j.Path())
	if err != nil {
		t.Fatal(err)
	}
	if len(again.Entries) != len(saved.Entries) {
		t.Fatalf("journal changed by repairs: %d entries, was %d", len(again.Entries), len(saved.Entries))
	}
	if err := Revert(h, j, discard); err != nil {
		t.Fatal(err)
	}
	checkDump(t, "after revert", h, before)
}

// TestWatchAntiFight: after MaxRepairs repairs of one item within the
// window the watcher reports GaveUp once and leaves that item alone, other
// items are still repaired, and SetDesired (a reload) resets it.
func TestWatchAntiFight(t *testing.T) {
	h, _, _ := appliedVPS(t)
	clk := &fakeClock{t: time.Unix(1000, 0)}
	w := NewWatcher(h, vpsDesired("ns1"), WatchOptions{MaxRepairs: 3, Window: 10 * time.Second, Now: clk.now})
	bh := RouteSpec{Dst: netip.MustParsePrefix("192.168.111.0/30"), Type: RouteBlackhole, Protocol: RouteProtocol}
	var got []WatchAction
	for range 10 {
		_ = h.DelRoute("", bh) // fails once the watcher no longer puts it back
		for _, e := range w.Check() {
			got = append(got, e.Action)
		}
		clk.t = clk.t.Add(100 * time.Millisecond)
	}
	want := []WatchAction{Repaired, Repaired, Repaired, GaveUp}
	if strings.Join(actionStrings(got), ",") != strings.Join(actionStrings(want), ",") {
		t.Errorf("actions %v, want %v", got, want)
	}
	if _, err := h.Route("", bh.Dst); err == nil {
		t.Error("route repaired after giving up")
	}
	h.Must(t, h.SetMTU("", "veth0", 1500))
	if evs := w.Check(); len(evs) != 1 || evs[0].Action != Repaired {
		t.Errorf("other items must still be repaired: %s", actions(evs))
	}
	w.SetDesired(vpsDesired("ns1"))
	if evs := w.Check(); len(evs) != 1 || evs[0].Action != Repaired || evs[0].Kind != KindRoute {
		t.Errorf("after a reload the route must be repaired again: %s", actions(evs))
	}
}

// TestWatchWindowSlides: repairs spread wider than the window never trip
// the limit.
func TestWatchWindowSlides(t *testing.T) {
	h, _, _ := appliedVPS(t)
	clk := &fakeClock{t: time.Unix(1000, 0)}
	w := NewWatcher(h, vpsDesired("ns1"), WatchOptions{MaxRepairs: 2, Window: time.Second, Now: clk.now})
	for i := range 6 {
		h.Must(t, h.SetMTU("", "veth0", 1500))
		if evs := w.Check(); len(evs) != 1 || evs[0].Action != Repaired {
			t.Fatalf("repair %d: %s", i, actions(evs))
		}
		clk.t = clk.t.Add(600 * time.Millisecond)
	}
}

func actionStrings(a []WatchAction) []string {
	out := make([]string, len(a))
	for i, x := range a {
		out[i] = string(x)
	}
	return out
}

// TestReconfigure: a reload that adds a blackhole, drops another, changes
// an MTU and adds a namespace address changes only that, and Revert still
// restores the host from before the first Apply.
func TestReconfigure(t *testing.T) {
	h, before, j := appliedVPS(t)
	old := vpsDesired("ns1")
	nw := vpsDesired("ns1")
	nw.Routes = []Route{nw.Routes[0], {Dst: netip.MustParsePrefix("10.9.0.0/24"), Blackhole: true}}
	nw.Links[0].MTU = 1400
	nw.Links[1].Addrs = append(nw.Links[1].Addrs, netip.MustParsePrefix("11.11.11.101/24"))
	h.Must(t)
	w := NewWatcher(h, old, WatchOptions{})
	if err := w.Reconfigure(nw, j, discard); err != nil {
		t.Fatal(err)
	}
	calls := h.MutatingCalls()
	if len(calls) != 4 {
		t.Errorf("want 4 changes (del route, MTU, addr, add route), got %d: %v", len(calls), calls)
	}
	d := h.Dump()
	for _, l := range []string{"host route 10.9.0.0/24 type=6", "host link veth0 veth mtu=1400", "ns1 addr veth1 11.11.11.101/24"} {
		if !strings.Contains(d, l) {
			t.Errorf("dump lacks %q:\n%s", l, d)
		}
	}
	if strings.Contains(d, "192.168.111.0/30") {
		t.Errorf("dropped blackhole still there:\n%s", d)
	}
	if evs := w.Check(); len(evs) != 0 {
		t.Errorf("drift right after reconfigure: %s", actions(evs))
	}
	if err := Revert(h, j, discard); err != nil {
		t.Fatal(err)
	}
	checkDump(t, "after revert", h, before)
}

// fakeSource is a ChangeSource whose kicks the test fires.
type fakeSource struct {
	mu    sync.Mutex
	kicks map[string]func()
}

func (s *fakeSource) Subscribe(ns string, kick func(), lost func(error), done <-chan struct{}) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.kicks[ns] = kick
	return nil
}

func (s *fakeSource) kick(ns string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	k, ok := s.kicks[ns]
	if ok {
		k()
	}
	return ok
}

// TestWatchRun: Run subscribes to every namespace of the plan and checks
// after a change notification, not before.
func TestWatchRun(t *testing.T) {
	h, _, _ := appliedVPS(t)
	events := make(chan WatchEvent, 16)
	w := NewWatcher(h, vpsDesired("ns1"), WatchOptions{Debounce: time.Millisecond,
		OnEvent: func(e WatchEvent) { events <- e }})
	src := &fakeSource{kicks: map[string]func(){}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); w.Run(ctx, src, discard) }()
	defer func() { cancel(); <-done }()
	deadline := time.Now().Add(5 * time.Second)
	for !src.kick("ns1") || !src.kick("") {
		if time.Now().After(deadline) {
			t.Fatal("Run did not subscribe to both namespaces")
		}
		time.Sleep(time.Millisecond)
	}
	w.Locked(func() { h.Must(t, h.SetMTU("ns1", "veth1", 1500)) }) // the fake's call log is not goroutine-safe
	src.kick("ns1")
	select {
	case e := <-events:
		if e.Action != Repaired || e.Item != "set MTU of veth1 in ns1 to 1420" {
			t.Errorf("event %+v", e)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no repair after a kick")
	}
}

// TestWatchLeavesWhatIsNotOurs: objects Apply found (journaled as
// unchanged: someone else's) that their owner removes are not re-created,
// and are reported once; a route of the agent's that someone replaced
// with their own is left to them. Values that were found as configured
// and are changed later are still repaired.
func TestWatchLeavesWhatIsNotOurs(t *testing.T) {
	h := vpsHost(t)
	theirs := foundBlackhole
	halfThere(t, h)
	j := newTestJournal(t)
	if err := Apply(h, vpsDesired("ns1"), j, discard); err != nil {
		t.Fatal(err)
	}
	w := NewWatcher(h, vpsDesired("ns1"), WatchOptions{Journal: j})
	check := func(what, want string) {
		t.Helper()
		h.Must(t)
		evs := w.Check()
		if got := actions(evs); got != want {
			t.Errorf("%s: events\n%s\nwant\n%s", what, got, want)
		}
		for _, c := range h.MutatingCalls() {
			if !strings.HasPrefix(want, "repaired") {
				t.Errorf("%s: the watcher changed the host: %v", what, c)
			}
		}
	}

	// The owner removes its blackhole: reported once, not re-created.
	h.Must(t, h.DelRoute("", theirs))
	check("their route removed", "owner removed: add route blackhole 192.168.111.0/30 (absent -> blackhole 192.168.111.0/30)")
	check("their route still gone", "")
	h.Must(t, h.ReplaceRoute("", theirs))
	check("their route back", "")
	h.Must(t, h.DelRoute("", theirs))
	check("their route removed again", "owner removed: add route blackhole 192.168.111.0/30 (absent -> blackhole 192.168.111.0/30)")

	// An address found on veth0, removed by its owner.
	h.Must(t, h.DelAddr("", "veth0", netip.MustParsePrefix("11.11.11.1/24")))
	check("their address removed", "owner removed: add address 11.11.11.1/24 to veth0 (absent -> present)")

	// An MTU found as configured and changed later is repaired.
	h.Must(t, h.SetMTU("", "veth0", 1500))
	check("MTU found as configured, changed", "repaired: set MTU of veth0 to 1420 (1500 -> 1420)")

	// The route the agent added in ns1 replaced by someone else's route
	// (same destination and metric): left to them, reported once.
	h.Must(t, h.ReplaceRoute("ns1", RouteSpec{Dst: netip.MustParsePrefix("0.0.0.0/0"), Dev: "veth1", Type: RouteUnicast, Protocol: 4, Scope: 253}))
	check("our route displaced", "displaced: add route default via 11.11.11.1 in ns1 (default dev veth1 proto static metric 0 -> default via 11.11.11.1)")
	check("our route still displaced", "")

	// The veth pair and namespace found, removed by their owner: neither
	// comes back (what was on them cannot be read, and is skipped).
	h.Must(t, h.DeleteNamespace("ns1"))
	check("their namespace removed", "owner removed: create namespace ns1 (absent -> present)\n"+
		"owner removed: create veth pair veth0 <-> veth1 (veth1 in ns1) (absent -> present)")
	if ok, _ := h.NamespaceExists("ns1"); ok {
		t.Error("the watcher re-created a namespace it did not make")
	}

	// Revert leaves all of that as it is now.
	now := h.Dump()
	if err := Revert(h, j, discard); err != nil {
		t.Fatal(err)
	}
	checkDump(t, "after Revert", h, now)
}

// TestWatchRepairsOwnDeletedRoute: with the journal known, a route the
// agent added and someone deleted is still put back.
func TestWatchRepairsOwnDeletedRoute(t *testing.T) {
	h, _, j := appliedVPS(t)
	w := NewWatcher(h, vpsDesired("ns1"), WatchOptions{Journal: j})
	ours := RouteSpec{Dst: netip.MustParsePrefix("192.168.111.0/30"), Type: RouteBlackhole, Protocol: RouteProtocol}
	h.Must(t, h.DelRoute("", ours))
	if got := actions(w.Check()); got != "repaired: add route blackhole 192.168.111.0/30 (absent -> blackhole 192.168.111.0/30)" {
		t.Errorf("events after our route was deleted: %s", got)
	}
	if r, err := h.Route("", ours.Dst); err != nil || r.Protocol != RouteProtocol {
		t.Errorf("route after the repair: %+v, %v", r, err)
	}
}

// TestReconfigureRoutes: a reload that moves the namespace's default
// route to another gateway deletes the agent's route and adds the new one
// (never replacing); one that needs a route where the host has its own is
// refused before anything changes, by CheckReconfigure too.
func TestReconfigureRoutes(t *testing.T) {
	h, before, j := appliedVPS(t)
	old := vpsDesired("ns1")
	nw := vpsDesired("ns1")
	nw.Routes[0].Gw = netip.MustParseAddr("11.11.11.2")
	w := NewWatcher(h, old, WatchOptions{Journal: j})
	h.Must(t)
	if err := w.Reconfigure(nw, j, discard); err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(h.MutatingCalls()); !strings.Contains(got, "DelRoute ns1 0.0.0.0/0 type=1 gw=11.11.11.1") ||
		!strings.Contains(got, "AddRoute ns1 0.0.0.0/0 type=1 gw=11.11.11.2") {
		t.Errorf("calls: %s", got)
	}
	if r, err := h.Route("ns1", netip.MustParsePrefix("0.0.0.0/0")); err != nil || r.Gw != netip.MustParseAddr("11.11.11.2") {
		t.Errorf("default route: %+v, %v", r, err)
	}

	// Someone's route where the next reload wants a blackhole.
	theirs := RouteSpec{Dst: netip.MustParsePrefix("10.9.0.0/24"), Gw: netip.MustParseAddr("192.0.2.1"), Type: RouteUnicast, Protocol: 4}
	h.Must(t, h.ReplaceRoute("", theirs))
	third := nw
	third.Routes = append(third.Routes[:len(third.Routes):len(third.Routes)], Route{Dst: theirs.Dst, Blackhole: true})
	var ce *ConflictError
	if err := w.CheckReconfigure(third, j); !errors.As(err, &ce) {
		t.Errorf("CheckReconfigure: %v, want a *ConflictError", err)
	}
	saved := len(j.Entries)
	h.Must(t)
	if err := w.Reconfigure(third, j, discard); !errors.As(err, &ce) {
		t.Errorf("Reconfigure: %v, want a *ConflictError", err)
	}
	if c := h.MutatingCalls(); len(c) != 0 || len(j.Entries) != saved {
		t.Errorf("refused reload changed the host (%v) or the journal (%d entries, was %d)", c, len(j.Entries), saved)
	}
	if evs := w.Check(); len(evs) != 0 {
		t.Errorf("after a refused reload the watcher must watch the state before it: %s", actions(evs))
	}

	h.Must(t, h.DelRoute("", theirs))
	if err := Revert(h, j, discard); err != nil {
		t.Fatal(err)
	}
	checkDump(t, "after revert", h, before)
}

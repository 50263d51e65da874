package netcfg_test

import (
	"errors"
	"net/netip"
	"os"
	"strings"
	"testing"

	. "tunnel-agent/netcfg"
	"tunnel-agent/netcfg/netcfgtest"
)

// Route identity is the kernel's: family, main table, destination and
// metric, with the metric as the kernel reports it (IPv6 routes added
// without one get 1024). A route found on the host is left as found: an
// identical one is "already so", a different one where the agent needs
// its own refuses the plan before any change, and one at another metric
// is not in the way.

var (
	bh6a = netip.MustParsePrefix("fd00:202::/48")
	bh6b = netip.MustParsePrefix("fd00:203::/48")
	bh6c = netip.MustParsePrefix("fd00:204::/48")
	bh4  = netip.MustParsePrefix("10.9.0.0/24")
)

func blackholes(ps ...netip.Prefix) Desired {
	var d Desired
	for _, p := range ps {
		d.Routes = append(d.Routes, Route{Dst: p, Blackhole: true})
	}
	return d
}

// ipv6Host is vpsHost with the operator's own IPv6 blackholes: one added
// without a metric (`ip -6 route add blackhole fd00:202::/48 proto
// static`: the kernel stores it at 1024) and one at metric 500.
func ipv6Host(t *testing.T) *netcfgtest.Host {
	h := vpsHost(t)
	h.Must(t,
		h.ReplaceRoute("", RouteSpec{Dst: bh6a, Type: RouteBlackhole, Protocol: 4}),
		h.ReplaceRoute("", RouteSpec{Dst: bh6b, Type: RouteBlackhole, Protocol: 4, Metric: 500}),
	)
	return h
}

const ipv6Applied = `host link eth0 device mtu=1500 up
host addr eth0 192.0.2.10/24
host link lo device mtu=65536 up
host addr lo 127.0.0.1/8
host route 0.0.0.0/0 type=1 gw=192.0.2.1 dev=eth0 proto=3 scope=0 src=- metric=0
host route 10.9.0.0/24 type=6 gw=- dev=- proto=227 scope=0 src=- metric=0
host route 192.0.2.0/24 type=1 gw=- dev=eth0 proto=2 scope=253 src=192.0.2.10 metric=0
host route fd00:202::/48 type=6 gw=- dev=- proto=4 scope=0 src=- metric=1024
host route fd00:203::/48 type=6 gw=- dev=- proto=4 scope=0 src=- metric=500
host route fd00:203::/48 type=6 gw=- dev=- proto=227 scope=0 src=- metric=1024
host route fd00:204::/48 type=6 gw=- dev=- proto=227 scope=0 src=- metric=1024
`

// TestApplyIPv6RoutesGolden is the reproduction on the fake: the
// operator's IPv6 blackhole is already so and stays, through Apply, a
// second Apply, the watcher and Revert; the agent's IPv6 routes are at
// metric 1024 and recognised as its own.
func TestApplyIPv6RoutesGolden(t *testing.T) {
	h := ipv6Host(t)
	before := h.Dump()
	d := blackholes(bh6a, bh6b, bh6c, bh4)

	plan := FormatPlan(Preview(h, d))
	const wantPlan = `  1. add route blackhole fd00:202::/48  (already so: left as found)
  2. add route blackhole fd00:203::/48
  3. add route blackhole fd00:204::/48
  4. add route blackhole 10.9.0.0/24
`
	if plan != wantPlan {
		t.Errorf("plan:\n%s\nwant:\n%s", plan, wantPlan)
	}

	j := newTestJournal(t)
	if err := Apply(h, d, j, discard); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	checkDump(t, "after Apply", h, ipv6Applied)
	for i, want := range []struct {
		state  State
		metric int
	}{{Unchanged, 1024}, {Done, 1024}, {Done, 1024}, {Done, 0}} {
		if e := j.Entries[i]; e.State != want.state || e.Route.Metric != want.metric {
			t.Errorf("entry %q: %s metric %d, want %s metric %d", e.String(), e.State, e.Route.Metric, want.state, want.metric)
		}
	}
	onDisk, err := LoadJournal(j.Path())
	if err != nil || onDisk.Entries[2].Route.Metric != 1024 {
		t.Fatalf("journal on disk: %v; want the IPv6 route at metric 1024", err)
	}

	// Everything is recognised: nothing to apply again, nothing to
	// repair, the plan says so.
	h.Must(t)
	j2 := newTestJournal(t)
	if err := Apply(h, d, j2, discard); err != nil {
		t.Fatalf("second Apply: %v", err)
	}
	for _, e := range j2.Entries {
		if e.State != Unchanged {
			t.Errorf("second Apply: %q %s", e.String(), e.State)
		}
	}
	if evs := NewWatcher(h, d, WatchOptions{Journal: j}).Check(); len(evs) != 0 {
		t.Errorf("watcher events on a host as configured:\n%s", actions(evs))
	}
	if c := h.MutatingCalls(); len(c) != 0 {
		t.Errorf("changes on a host as configured: %v", c)
	}
	for _, c := range Preview(h, d) {
		if !c.Unchanged {
			t.Errorf("plan step %q: %s -> %s, want already so", c.Action, c.From, c.To)
		}
	}
	if err := Revert(h, j2, discard); err != nil {
		t.Fatal(err)
	}

	if err := Revert(h, j, discard); err != nil {
		t.Fatalf("Revert: %v", err)
	}
	checkDump(t, "after Revert", h, before)
	checkNoJournal(t, j)
}

// TestApplyRefusesForeignRoute: a different route at the destination and
// metric the agent would use is someone else's; Apply and Preview refuse
// the plan naming it, and nothing is changed.
func TestApplyRefusesForeignRoute(t *testing.T) {
	tests := []struct {
		name  string
		have  RouteSpec
		want  Desired
		named string // the host route, as the error names it
	}{
		{
			name:  "IPv4 gateway route where a blackhole goes",
			have:  RouteSpec{Dst: netip.MustParsePrefix("192.168.111.0/30"), Gw: netip.MustParseAddr("192.0.2.1"), Type: RouteUnicast, Protocol: 4},
			want:  vpsDesired("ns1"),
			named: "192.168.111.0/30 via 192.0.2.1 dev eth0 proto static metric 0",
		},
		{
			name:  "IPv6 route through a device where a blackhole goes",
			have:  RouteSpec{Dst: bh6a, Dev: "eth0", Type: RouteUnicast, Protocol: 16},
			want:  blackholes(bh4, bh6a),
			named: "fd00:202::/48 dev eth0 proto dhcp metric 1024",
		},
		{
			name:  "IPv4 blackhole where a gateway route goes",
			have:  RouteSpec{Dst: netip.MustParsePrefix("10.20.0.0/16"), Type: RouteBlackhole, Protocol: 3},
			want:  Desired{Routes: []Route{{Dst: netip.MustParsePrefix("10.20.0.0/16"), Gw: netip.MustParseAddr("192.0.2.1")}}},
			named: "blackhole 10.20.0.0/16 proto boot metric 0",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := vpsHost(t)
			h.Must(t, h.ReplaceRoute("", tt.have))
			before := h.Dump()

			plan := Preview(h, tt.want)
			var ce *ConflictError
			if err := Conflicts(plan); !errors.As(err, &ce) || len(ce.Conflicts) != 1 || !strings.Contains(err.Error(), tt.named) {
				t.Errorf("Conflicts(plan) = %v, want one naming %q", err, tt.named)
			}
			if text := FormatPlan(plan); !strings.Contains(text, "  [refused: the host has "+tt.named+", not made by this agent]\n") {
				t.Errorf("plan does not show the refusal:\n%s", text)
			}

			j := newTestJournal(t)
			err := Apply(h, tt.want, j, discard)
			if !errors.As(err, &ce) || len(ce.Conflicts) != 1 || ce.Conflicts[0].Have.Describe() != tt.named {
				t.Fatalf("Apply: %v, want a *ConflictError naming %q", err, tt.named)
			}
			if !strings.Contains(err.Error(), "never replaces or deletes such a route") {
				t.Errorf("error %q does not say why", err)
			}
			if c := h.MutatingCalls(); len(c) != 0 {
				t.Errorf("Apply changed the host before refusing: %v", c)
			}
			checkDump(t, "after the refusal", h, before)
			checkNoJournal(t, j)
		})
	}
}

// TestApplyRefusesDuplicateRoutes: a plan with two routes of one identity
// is refused before any change.
func TestApplyRefusesDuplicateRoutes(t *testing.T) {
	h := vpsHost(t)
	d := Desired{Routes: []Route{{Dst: bh4, Blackhole: true}, {Dst: bh4, Gw: netip.MustParseAddr("192.0.2.1")}}}
	j := newTestJournal(t)
	err := Apply(h, d, j, discard)
	if err == nil || !strings.Contains(err.Error(), "same destination and metric") {
		t.Errorf("Apply: %v", err)
	}
	if c := h.MutatingCalls(); len(c) != 0 {
		t.Errorf("changes: %v", c)
	}
}

// TestRevertOldJournalRoutes: a journal of an earlier version (no
// metrics) is reverted: the agent's IPv6 route (kernel metric 1024) is
// deleted, and the IPv4 route it had replaced is put back.
func TestRevertOldJournalRoutes(t *testing.T) {
	h := vpsHost(t)
	theirs := RouteSpec{Dst: bh4, Gw: netip.MustParseAddr("192.0.2.1"), Type: RouteUnicast, Protocol: 4}
	h.Must(t, h.ReplaceRoute("", theirs))
	before := h.Dump()
	// What the earlier version did: replace theirs, add an IPv6 route.
	h.Must(t,
		h.ReplaceRoute("", RouteSpec{Dst: bh4, Type: RouteBlackhole, Protocol: RouteProtocol}),
		h.ReplaceRoute("", RouteSpec{Dst: bh6a, Type: RouteBlackhole, Protocol: RouteProtocol}),
	)
	path := newTestJournal(t).Path()
	writeJournal(t, path, `{"version":1,"site":"s","pid":1,"started":"2026-01-01T00:00:00Z","entries":[
	  {"kind":"route","route":{"dst":"10.9.0.0/24","type":6,"protocol":227,"scope":0},
	   "prior":{"route":{"dst":"10.9.0.0/24","gw":"192.0.2.1","dev":"eth0","type":1,"protocol":4,"scope":0}},"state":"done"},
	  {"kind":"route","route":{"dst":"fd00:202::/48","type":6,"protocol":227,"scope":0},"prior":{},"state":"done"}]}`)
	down(t, h, path)
	checkDump(t, "after down", h, before)
}

func writeJournal(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

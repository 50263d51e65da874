package netcfg_test

import (
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	. "tunnel-agent/netcfg"
	"tunnel-agent/netcfg/netcfgtest"
)

// These tests run Apply and Revert against fakeHost (fakehost_test.go),
// without root, in the manner of tailscale's router_linux_test.go: golden
// dumps of the host model for known states, and random transitions that
// must always come back to where they started.

var discard = slog.New(slog.DiscardHandler)

// vpsDesired is the tutorial's VPS-side setup, with the namespace ns1.
func vpsDesired(ns1 string) Desired {
	return Desired{
		Namespaces: []string{ns1},
		Veths:      []Veth{{Name: "veth0", Peer: "veth1", PeerNS: ns1}},
		Links: []Link{
			{Name: "veth0", MTU: 1420, Features: []Feature{{"rx", false}, {"tx", false}},
				Addrs: []netip.Prefix{netip.MustParsePrefix("11.11.11.1/24")}, Up: true},
			{NS: ns1, Name: "veth1", MTU: 1420, Features: []Feature{{"rx", false}, {"tx", false}},
				Addrs: []netip.Prefix{netip.MustParsePrefix("11.11.11.100/24")}, Up: true},
			{NS: ns1, Name: "lo", Up: true},
		},
		Routes: []Route{
			{NS: ns1, Dst: netip.MustParsePrefix("0.0.0.0/0"), Gw: netip.MustParseAddr("11.11.11.1")},
			{Dst: netip.MustParsePrefix("192.168.111.0/30"), Blackhole: true},
		},
	}
}

// vpsApplied is the fake host's dump after applying vpsDesired("ns1") to
// netcfgtest.New(). TX checksums off take TSO down with them (still
// requested, no longer active), as on Linux.
const vpsApplied = `host link lo device mtu=65536 up
host addr lo 127.0.0.1/8
host link veth0 veth mtu=1420 up peer=ns1/veth1
host addr veth0 11.11.11.1/24
host feature veth0 rx-checksum requested=off active=off
host feature veth0 tx-checksum-ip-generic requested=off active=off
host feature veth0 tx-checksum-sctp requested=off active=off
host feature veth0 tx-tcp-ecn-segmentation requested=on active=off
host feature veth0 tx-tcp-mangleid-segmentation requested=on active=off
host feature veth0 tx-tcp-segmentation requested=on active=off
host feature veth0 tx-tcp6-segmentation requested=on active=off
host route 11.11.11.0/24 type=1 gw=- dev=veth0 proto=2 scope=253 src=11.11.11.1 metric=0
host route 192.168.111.0/30 type=6 gw=- dev=- proto=227 scope=0 src=- metric=0
ns1 namespace
ns1 link lo device mtu=65536 up
ns1 addr lo 127.0.0.1/8
ns1 link veth1 veth mtu=1420 up peer=host/veth0
ns1 addr veth1 11.11.11.100/24
ns1 feature veth1 rx-checksum requested=off active=off
ns1 feature veth1 tx-checksum-ip-generic requested=off active=off
ns1 feature veth1 tx-checksum-sctp requested=off active=off
ns1 feature veth1 tx-tcp-ecn-segmentation requested=on active=off
ns1 feature veth1 tx-tcp-mangleid-segmentation requested=on active=off
ns1 feature veth1 tx-tcp-segmentation requested=on active=off
ns1 feature veth1 tx-tcp6-segmentation requested=on active=off
ns1 route 0.0.0.0/0 type=1 gw=11.11.11.1 dev=veth1 proto=227 scope=0 src=- metric=0
ns1 route 11.11.11.0/24 type=1 gw=- dev=veth1 proto=2 scope=253 src=11.11.11.100 metric=0
`

// vpsSteps are the plan's steps for vpsDesired("ns1") on netcfgtest.New(),
// as Entry.String() gives them once read (features by kernel name). Each
// makes exactly one mutating Host call, in this order.
var vpsSteps = []string{
	"create namespace ns1",
	"create veth pair veth0 <-> veth1 (veth1 in ns1)",
	"set MTU of veth0 to 1420",
	"set features of veth0: rx-checksum off, tx-checksum-ip-generic off, tx-checksum-sctp off",
	"add address 11.11.11.1/24 to veth0",
	"bring up veth0",
	"set MTU of veth1 in ns1 to 1420",
	"set features of veth1 in ns1: rx-checksum off, tx-checksum-ip-generic off, tx-checksum-sctp off",
	"add address 11.11.11.100/24 to veth1 in ns1",
	"bring up veth1 in ns1",
	"bring up lo in ns1",
	"add route default via 11.11.11.1 in ns1",
	"add route blackhole 192.168.111.0/30",
}

func newTestJournal(t *testing.T) *Journal {
	t.Helper()
	return NewJournal(filepath.Join(t.TempDir(), "site.json"), "site")
}

// checkNoJournal fails the test if j's file exists.
func checkNoJournal(t *testing.T, j *Journal) {
	t.Helper()
	if _, err := os.Stat(j.Path()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("journal %s still exists (stat: %v)", j.Path(), err)
	}
}

// checkDump fails the test if the host's dump is not want.
func checkDump(t *testing.T, what string, h *netcfgtest.Host, want string) {
	t.Helper()
	if got := h.Dump(); got != want {
		t.Errorf("%s: host dump:\n%s\nwant:\n%s\ndiff:\n%s", what, got, want, lineDiff(want, got))
	}
}

// lineDiff lists the lines only in a (-) and only in b (+).
func lineDiff(a, b string) string {
	in := func(s string) map[string]bool {
		m := map[string]bool{}
		for _, l := range strings.Split(s, "\n") {
			m[l] = true
		}
		return m
	}
	ma, mb := in(a), in(b)
	var out []string
	for _, l := range strings.Split(a, "\n") {
		if !mb[l] {
			out = append(out, "- "+l)
		}
	}
	for _, l := range strings.Split(b, "\n") {
		if !ma[l] {
			out = append(out, "+ "+l)
		}
	}
	return strings.Join(out, "\n")
}

func TestApplyGolden(t *testing.T) {
	h := netcfgtest.New()
	before := h.Dump()
	j := newTestJournal(t)
	if err := Apply(h, vpsDesired("ns1"), j, discard); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	checkDump(t, "after Apply", h, vpsApplied)

	var steps []string
	for _, e := range j.Entries {
		if e.State != Done {
			t.Errorf("entry %q: state %s, want %s", e.String(), e.State, Done)
		}
		steps = append(steps, e.String())
	}
	if got, want := strings.Join(steps, "\n"), strings.Join(vpsSteps, "\n"); got != want {
		t.Errorf("journal entries:\n%s\nwant:\n%s", got, want)
	}
	if n := len(h.MutatingCalls()); n != len(vpsSteps) {
		t.Errorf("%d mutating calls, want %d (one per step)", n, len(vpsSteps))
	}
	onDisk, err := LoadJournal(j.Path())
	if err != nil || onDisk == nil || len(onDisk.Entries) != len(vpsSteps) {
		t.Fatalf("journal on disk after Apply: %+v, %v", onDisk, err)
	}

	// Applying again changes nothing and records nothing to revert.
	j2 := NewJournal(filepath.Join(t.TempDir(), "again.json"), "site")
	h.Must(t)
	if err := Apply(h, vpsDesired("ns1"), j2, discard); err != nil {
		t.Fatalf("second Apply: %v", err)
	}
	for _, e := range j2.Entries {
		if e.State != Unchanged {
			t.Errorf("second Apply: %q is %s, want %s", e.String(), e.State, Unchanged)
		}
	}
	if c := h.MutatingCalls(); len(c) != 0 {
		t.Errorf("second Apply made changes: %v", c)
	}
	if err := Revert(h, j2, discard); err != nil {
		t.Fatalf("Revert of the second journal: %v", err)
	}
	checkDump(t, "after reverting the no-op journal", h, vpsApplied)
	checkNoJournal(t, j2)

	if err := Revert(h, j, discard); err != nil {
		t.Fatalf("Revert: %v", err)
	}
	checkDump(t, "after Revert", h, before)
	checkNoJournal(t, j)
}

// foundBlackhole is the blackhole route of vpsDesired, as someone else
// added it (proto static).
var foundBlackhole = RouteSpec{Dst: netip.MustParsePrefix("192.168.111.0/30"), Type: RouteBlackhole, Protocol: 4}

// halfThere makes part of vpsDesired("ns1") on h, as someone else would
// have: the namespace with lo up, the veth pair, veth0's MTU, address and
// up, and foundBlackhole.
func halfThere(t *testing.T, h *netcfgtest.Host) {
	t.Helper()
	h.Must(t,
		h.CreateNamespace("ns1"),
		h.SetUp("ns1", "lo", true),
		h.AddVeth("veth0", "veth1", "ns1"),
		h.SetMTU("", "veth0", 1420),
		h.AddAddr("", "veth0", netip.MustParsePrefix("11.11.11.1/24")),
		h.SetUp("", "veth0", true),
		h.ReplaceRoute("", foundBlackhole),
	)
}

// TestApplyLeavesFoundStateAlone: what already matched is recorded as
// unchanged and is still there, exactly, after Revert.
func TestApplyLeavesFoundStateAlone(t *testing.T) {
	h := netcfgtest.New()
	blackhole := foundBlackhole
	halfThere(t, h)
	before := h.Dump()
	j := newTestJournal(t)
	if err := Apply(h, vpsDesired("ns1"), j, discard); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	want := []State{
		Unchanged, // create namespace ns1
		Unchanged, // create veth pair veth0 <-> veth1 (veth1 in ns1)
		Unchanged, // set MTU of veth0 to 1420
		Done,      // set features of veth0
		Unchanged, // add address 11.11.11.1/24 to veth0
		Unchanged, // bring up veth0
		Done,      // set MTU of veth1 in ns1 to 1420
		Done,      // set features of veth1 in ns1
		Done,      // add address 11.11.11.100/24 to veth1 in ns1
		Done,      // bring up veth1 in ns1
		Unchanged, // bring up lo in ns1
		Done,      // add route default via 11.11.11.1 in ns1
		Unchanged, // add route blackhole 192.168.111.0/30
	}
	if len(j.Entries) != len(want) {
		t.Fatalf("%d entries, want %d", len(j.Entries), len(want))
	}
	for i, e := range j.Entries {
		if e.String() != vpsSteps[i] || e.State != want[i] {
			t.Errorf("entry %d: %q %s, want %q %s", i+1, e.String(), e.State, vpsSteps[i], want[i])
		}
	}
	// The blackhole found is someone else's (proto static) and stays so.
	if r, err := h.Route("", blackhole.Dst); err != nil || r != blackhole {
		t.Errorf("blackhole after Apply = %+v, %v; want %+v left alone", r, err, blackhole)
	}

	if err := Revert(h, j, discard); err != nil {
		t.Fatalf("Revert: %v", err)
	}
	checkDump(t, "after Revert", h, before)
	for _, line := range []string{
		"host link veth0 veth mtu=1420 up peer=ns1/veth1",
		"host addr veth0 11.11.11.1/24",
		"host route 192.168.111.0/30 type=6 gw=- dev=- proto=4 scope=0 src=- metric=0",
		"ns1 link lo device mtu=65536 up",
	} {
		if !strings.Contains(h.Dump(), line+"\n") {
			t.Errorf("after Revert the dump lacks %q", line)
		}
	}
	checkNoJournal(t, j)
}

// vpsHost returns a host with an uplink, eth0, and its default route, as
// on a VPS.
func vpsHost(t testing.TB) *netcfgtest.Host {
	h := netcfgtest.New()
	h.AddLink(t, "", "eth0", "device", 1500, true)
	h.Must(t,
		h.AddAddr("", "eth0", netip.MustParsePrefix("192.0.2.10/24")),
		h.ReplaceRoute("", RouteSpec{Dst: netip.MustParsePrefix("0.0.0.0/0"), Gw: netip.MustParseAddr("192.0.2.1"), Type: RouteUnicast, Protocol: 3}),
	)
	return h
}

// TestRevertLeavesForeignRoute: a route of ours that someone replaced in
// the meantime is not ours to delete.
func TestRevertLeavesForeignRoute(t *testing.T) {
	h := netcfgtest.New()
	j := newTestJournal(t)
	if err := Apply(h, vpsDesired("ns1"), j, discard); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	theirs := RouteSpec{Dst: netip.MustParsePrefix("192.168.111.0/30"), Type: RouteBlackhole, Protocol: 4}
	h.Must(t, h.ReplaceRoute("", theirs))
	if err := Revert(h, j, discard); err != nil {
		t.Fatalf("Revert: %v", err)
	}
	if got, err := h.Route("", theirs.Dst); err != nil || got != theirs {
		t.Errorf("route after Revert = %+v, %v; want theirs, %+v", got, err, theirs)
	}
	checkNoJournal(t, j)
}

// TestApplyFailureRollsBack makes each step of the plan fail in turn:
// Apply names the step, and leaves the host and the disk as they were.
func TestApplyFailureRollsBack(t *testing.T) {
	for n, step := range vpsSteps {
		t.Run(step, func(t *testing.T) {
			h := netcfgtest.New()
			before := h.Dump()
			h.FailAt(n + 1)
			j := newTestJournal(t)
			err := Apply(h, vpsDesired("ns1"), j, discard)
			if err == nil {
				t.Fatal("Apply succeeded")
			}
			if !strings.HasPrefix(err.Error(), step+": ") || !errors.Is(err, netcfgtest.ErrInjected) {
				t.Errorf("error %q does not start with %q and wrap the fault", err, step+": ")
			}
			checkDump(t, "after failed Apply", h, before)
			checkNoJournal(t, j)
		})
	}
}

// TestApplyReadFailureRollsBack makes reading a step's current value fail.
func TestApplyReadFailureRollsBack(t *testing.T) {
	on := func(op, ns, link string) func(c netcfgtest.Call) bool {
		return func(c netcfgtest.Call) bool { return c.Op == op && c.NS == ns && (link == "" || c.Link == link) }
	}
	tests := []struct {
		fault func(c netcfgtest.Call) bool
		step  string
	}{
		{on("NamespaceExists", "ns1", ""), "create namespace ns1"},
		{on("Links", "", ""), "create veth pair veth0 <-> veth1 (veth1 in ns1)"},
		{on("Links", "ns1", ""), "set MTU of veth1 in ns1 to 1420"},
		{on("Features", "ns1", "veth1"), "set features of veth1 in ns1: rx off, tx off"},
		{on("Addrs", "ns1", ""), "add address 11.11.11.100/24 to veth1 in ns1"},
		{on("Routes", "ns1", ""), "add route default via 11.11.11.1 in ns1"},
		{on("Routes", "", ""), "add route blackhole 192.168.111.0/30"},
	}
	for _, tt := range tests {
		t.Run(tt.step, func(t *testing.T) {
			h := netcfgtest.New()
			before := h.Dump()
			h.FailIf(tt.fault)
			j := newTestJournal(t)
			err := Apply(h, vpsDesired("ns1"), j, discard)
			if err == nil || !strings.HasPrefix(err.Error(), tt.step+": ") || !errors.Is(err, netcfgtest.ErrInjected) {
				t.Errorf("Apply error %q, want one starting with %q", err, tt.step+": ")
			}
			checkDump(t, "after failed Apply", h, before)
			checkNoJournal(t, j)
		})
	}
}

// applyKilled runs Apply until the fake host panics with netcfgtest.ErrKilled, as
// when the agent is killed; it reports whether that happened.
func applyKilled(t *testing.T, h *netcfgtest.Host, d Desired, j *Journal) (killed bool) {
	t.Helper()
	defer func() {
		if r := recover(); r != nil {
			if r != netcfgtest.ErrKilled {
				panic(r)
			}
			killed = true
		}
	}()
	if err := Apply(h, d, j, discard); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	return false
}

// revertKilled is applyKilled for Revert.
func revertKilled(t *testing.T, h *netcfgtest.Host, j *Journal) (killed bool) {
	t.Helper()
	defer func() {
		if r := recover(); r != nil {
			if r != netcfgtest.ErrKilled {
				panic(r)
			}
			killed = true
		}
	}()
	if err := Revert(h, j, discard); err != nil {
		t.Fatalf("Revert: %v", err)
	}
	return false
}

// down does what `tunnel-agent down` does with the journal at path.
func down(t *testing.T, h Host, path string) {
	t.Helper()
	j, err := LoadJournal(path)
	if err != nil {
		t.Fatalf("LoadJournal: %v", err)
	}
	if j == nil {
		return
	}
	if err := Revert(h, j, discard); err != nil {
		t.Fatalf("Revert of the loaded journal: %v", err)
	}
}

// TestApplyKilled kills the agent at each step, before and after the
// kernel made the change: the journal left on disk alone is enough to
// restore the host, and `down` twice is harmless. The journal records the
// step as pending (and the rest of its batch, whose changes were not made
// yet, too).
func TestApplyKilled(t *testing.T) {
	for n, step := range vpsSteps {
		for _, after := range []bool{false, true} {
			name := "before " + step
			if after {
				name = "after " + step
			}
			t.Run(name, func(t *testing.T) {
				h := netcfgtest.New()
				before := h.Dump()
				h.KillAt(n+1, after)
				j := newTestJournal(t)
				if !applyKilled(t, h, vpsDesired("ns1"), j) {
					t.Fatal("not killed")
				}
				h.ClearFaults()
				onDisk, err := LoadJournal(j.Path())
				if err != nil || onDisk == nil {
					t.Fatalf("LoadJournal after the kill: %v, %v", onDisk, err)
				}
				if len(onDisk.Entries) < n+1 || onDisk.Entries[n].State != Pending || onDisk.Entries[n].String() != step {
					t.Fatalf("journal has %d entries; want at least %d, entry %d %q pending", len(onDisk.Entries), n+1, n+1, step)
				}
				for i, e := range onDisk.Entries {
					if want := vpsSteps[i]; e.String() != want || (i > n && e.State != Pending) {
						t.Errorf("entry %d: %q %s; want %q, pending after the killed step", i+1, e.String(), e.State, want)
					}
				}
				down(t, h, j.Path())
				checkDump(t, "after down", h, before)
				checkNoJournal(t, j)
				down(t, h, j.Path()) // nothing left: no-op
				checkDump(t, "after a second down", h, before)
			})
		}
	}
}

// TestRevertKilled kills the agent during Revert: a Revert of the journal
// still on disk finishes the job.
func TestRevertKilled(t *testing.T) {
	for n := range vpsSteps {
		h := netcfgtest.New()
		before := h.Dump()
		j := newTestJournal(t)
		if err := Apply(h, vpsDesired("ns1"), j, discard); err != nil {
			t.Fatalf("Apply: %v", err)
		}
		h.Must(t)
		h.KillAt(n+1, false)
		if !revertKilled(t, h, j) {
			t.Fatalf("revert step %d: not killed", n+1)
		}
		h.ClearFaults()
		down(t, h, j.Path())
		checkDump(t, "after down", h, before)
		checkNoJournal(t, j)
		// Revert of the journal object that was interrupted, again: its
		// targets are gone or already restored.
		if err := Revert(h, j, discard); err != nil {
			t.Errorf("revert step %d: Revert again: %v", n+1, err)
		}
		checkDump(t, "after Revert again", h, before)
	}
}

// TestRevertFailureKeepsEntry: an entry that cannot be reverted stays in
// the journal on disk, alone, and the error names it; once the fault is
// gone, a second Revert finishes and removes the journal.
func TestRevertFailureKeepsEntry(t *testing.T) {
	tests := []struct {
		fault  func(c netcfgtest.Call) bool
		entry  string
		during []string // lines the dump has, beyond the original, between the two Reverts
	}{
		{
			fault:  func(c netcfgtest.Call) bool { return c.Op == "DelRoute" && c.NS == "" },
			entry:  "add route blackhole 192.168.111.0/30",
			during: []string{"host route 192.168.111.0/30 type=6 gw=- dev=- proto=227 scope=0 src=- metric=0"},
		},
		{
			// The address goes with the namespace; the second Revert
			// finds it gone.
			fault: func(c netcfgtest.Call) bool { return c.Op == "DelAddr" && c.Link == "veth1" },
			entry: "add address 11.11.11.100/24 to veth1 in ns1",
		},
		{
			fault: func(c netcfgtest.Call) bool { return c.Op == "SetMTU" && c.Link == "veth0" },
			entry: "set MTU of veth0 to 1420",
		},
		{
			fault: func(c netcfgtest.Call) bool { return c.Op == "DeleteNamespace" },
			entry: "create namespace ns1",
			// lo keeps the 127.0.0.1/8 it got when it came up.
			during: []string{"ns1 namespace", "ns1 link lo device mtu=65536 down", "ns1 addr lo 127.0.0.1/8"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.entry, func(t *testing.T) {
			h := netcfgtest.New()
			before := h.Dump()
			j := newTestJournal(t)
			if err := Apply(h, vpsDesired("ns1"), j, discard); err != nil {
				t.Fatalf("Apply: %v", err)
			}
			h.FailIf(tt.fault)
			err := Revert(h, j, discard)
			if err == nil || !strings.Contains(err.Error(), `revert "`+tt.entry+`": `) || !errors.Is(err, netcfgtest.ErrInjected) {
				t.Fatalf("Revert error %q, want one naming %q", err, tt.entry)
			}
			onDisk, lerr := LoadJournal(j.Path())
			if lerr != nil || onDisk == nil || len(onDisk.Entries) != 1 || onDisk.Entries[0].String() != tt.entry {
				t.Fatalf("journal on disk: %+v, %v; want the one entry %q", onDisk, lerr, tt.entry)
			}
			if got := lineDiff(before, h.Dump()); got != plusLines(tt.during) {
				t.Errorf("between the Reverts the dump differs from the original by:\n%s\nwant:\n%s", got, plusLines(tt.during))
			}

			h.ClearFaults()
			if err := Revert(h, onDisk, discard); err != nil {
				t.Fatalf("second Revert: %v", err)
			}
			checkDump(t, "after the second Revert", h, before)
			checkNoJournal(t, j)
		})
	}
}

func plusLines(lines []string) string {
	var out []string
	for _, l := range lines {
		out = append(out, "+ "+l)
	}
	return strings.Join(out, "\n")
}

// TestApplyJournalWriteFails: Apply changes nothing when it cannot journal.
func TestApplyJournalWriteFails(t *testing.T) {
	h := netcfgtest.New()
	before := h.Dump()
	blocker := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(blocker, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	j := NewJournal(filepath.Join(blocker, "site.json"), "site") // its directory is a file
	err := Apply(h, vpsDesired("ns1"), j, discard)
	if err == nil || !strings.Contains(err.Error(), "write journal") {
		t.Errorf("Apply error %v, want a journal write error", err)
	}
	checkDump(t, "after Apply", h, before)
}

// ---- Random transitions ----

// The random states draw from these pools: a small name space, so that
// states often overlap with each other and with what the host had.
var (
	randVeths = []Veth{
		{"veth0", "veth1", "ns1"},
		{"veth2", "veth3", "ns2"},
		{"veth4", "veth5", ""},
		{"vo0", "vo1", "other"}, // pre-existing
	}
	// randLinks are the links a state may configure, with the addresses
	// it may give them (one subnet per namespace and link).
	randLinks = []struct {
		ns, name string
		addrs    []netip.Prefix
	}{
		{"", "eth0", prefixes("198.51.100.1/24", "192.0.2.10/24")},
		{"", "eth1", prefixes("10.9.0.1/24", "10.9.9.9/32")},
		{"", "veth0", prefixes("10.1.0.1/24", "fd00:1::1/64")},
		{"ns1", "veth1", prefixes("10.1.0.2/24", "10.21.0.1/24")},
		{"", "veth2", prefixes("10.2.0.1/24")},
		{"ns2", "veth3", prefixes("10.2.0.2/24")},
		{"", "veth4", prefixes("10.4.0.1/24")},
		{"", "veth5", prefixes("10.5.0.1/24")},
		{"", "vo0", prefixes("10.7.0.1/24")},
		{"other", "vo1", prefixes("10.7.0.2/24", "10.17.0.1/24")},
		{"ns1", "lo", nil},
		{"ns2", "lo", nil},
		{"other", "lo", nil},
	}
	randMTUs     = []int{0, 0, 1280, 1420, 1500, 9000}
	randFeatures = []Feature{
		{"rx", false}, {"rx", true}, {"tx", false}, {"tx", true}, {"tso", false}, {"tso", true},
		{"sg", false}, {"gro", true}, {"rx-gro", false},
		{"tx-checksum-sctp", true}, // changeable on a veth, fixed off (an error) on eth0/eth1
		{"lro", true},              // nothing changeable on these devices
		{"tx-lockless", true},      // fixed on a veth (skipped), fixed off (an error) on eth0/eth1
	}
	randRouteDsts = map[string][]netip.Prefix{
		"":      prefixes("192.168.111.0/30", "10.50.0.0/16", "10.70.0.0/16", "2001:db8::/32", "2001:db8:1::/48"),
		"ns1":   prefixes("0.0.0.0/0", "10.50.0.0/16"),
		"ns2":   prefixes("0.0.0.0/0", "10.50.0.0/16"),
		"other": prefixes("0.0.0.0/0", "10.50.0.0/16"),
	}
)

func prefixes(s ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, p := range s {
		out = append(out, netip.MustParsePrefix(p))
	}
	return out
}

// randHost is the starting host of TestRandomStates: an uplink with the
// default route and a static route, a spare NIC (eth1), a namespace
// "other" holding the peer of vo0, and the bystanders (dummy0, namespace
// "bystander") that only the test touches.
func randHost(t *testing.T) *netcfgtest.Host {
	h := vpsHost(t)
	h.AddLink(t, "", "eth1", "device", 1500, false)
	h.AddLink(t, "", "dummy0", "dummy", 1500, true)
	h.Must(t,
		h.ReplaceRoute("", RouteSpec{Dst: netip.MustParsePrefix("10.60.0.0/16"), Gw: netip.MustParseAddr("192.0.2.1"), Type: RouteUnicast, Protocol: 4}),
		h.AddAddr("", "dummy0", netip.MustParsePrefix("172.31.0.1/24")),
		h.CreateNamespace("other"),
		h.SetUp("other", "lo", true),
		h.AddVeth("vo0", "vo1", "other"),
		h.SetUp("other", "vo1", true),
		h.AddAddr("other", "vo1", netip.MustParsePrefix("10.7.0.2/24")),
		h.CreateNamespace("bystander"),
		h.SetUp("bystander", "lo", true),
	)
	return h
}

type randRun struct {
	t   *testing.T
	rng *rand.Rand
	h   *netcfgtest.Host
	dir string

	// stack holds the applied states, innermost last, each with a copy
	// of the host taken just before it was applied.
	stack []applied
	stats map[string]int
	n     int // journals made
}

type applied struct {
	d      Desired
	j      *Journal
	before *netcfgtest.Host
}

func (r *randRun) link(ns, name string) *netcfgtest.LinkState {
	if l, ok := r.h.LinkState(ns, name); ok {
		return &l
	}
	return nil
}

// desired draws a random desired state that should apply cleanly to the
// current host (except when it asks for a fixed feature it cannot have).
func (r *randRun) desired() Desired {
	rng := r.rng
	var d Desired
	nsAfter := map[string]bool{"": true}
	newNS := map[string]bool{}
	for _, ns := range r.h.Namespaces() {
		nsAfter[ns] = true
	}
	for _, ns := range []string{"ns1", "ns2", "other"} {
		if rng.IntN(2) == 0 {
			d.Namespaces = append(d.Namespaces, ns)
			if !nsAfter[ns] {
				newNS[ns] = true
			}
			nsAfter[ns] = true
		}
	}
	created := map[string]bool{} // "ns/name" of veth ends this state creates
	for _, v := range randVeths {
		if nsAfter[v.PeerNS] && rng.IntN(2) == 0 {
			d.Veths = append(d.Veths, v)
			created[v.PeerNS+"/"+v.Peer], created["/"+v.Name] = true, true
		}
	}
	type upAddr struct {
		ns string
		p  netip.Prefix
	}
	var connected []upAddr // addresses on links that will be up
	for _, i := range rng.Perm(len(randLinks)) {
		rl := randLinks[i]
		cur := r.link(rl.ns, rl.name)
		if (cur == nil && !created[rl.ns+"/"+rl.name] && !(rl.name == "lo" && newNS[rl.ns])) || !nsAfter[rl.ns] {
			continue
		}
		if rng.IntN(10) < 4 {
			continue
		}
		l := Link{NS: rl.ns, Name: rl.name, MTU: randMTUs[rng.IntN(len(randMTUs))]}
		for range rng.IntN(3) {
			f := randFeatures[rng.IntN(len(randFeatures))]
			if (cur == nil || cur.Type != "device") || !strings.HasPrefix(f.Name, "tx-") || rng.IntN(5) == 0 {
				l.Features = append(l.Features, f)
			}
		}
		for _, p := range rl.addrs {
			if rng.IntN(2) == 0 {
				l.Addrs = append(l.Addrs, p)
			}
		}
		// Bringing up the lo of a namespace found with lo down is not
		// revertible exactly (the kernel gives lo 127.0.0.1/8 for good).
		l.Up = rng.IntN(2) == 0 && (rl.name != "lo" || newNS[rl.ns] || (cur != nil && cur.Up))
		d.Links = append(d.Links, l)
		if rng.IntN(10) == 0 { // the same link twice
			l2 := l
			l2.MTU = randMTUs[rng.IntN(len(randMTUs))]
			d.Links = append(d.Links, l2)
		}
		if l.Up || (cur != nil && cur.Up) {
			for _, p := range l.Addrs {
				connected = append(connected, upAddr{rl.ns, p})
			}
			if cur != nil {
				for _, p := range cur.Addrs {
					connected = append(connected, upAddr{rl.ns, p})
				}
			}
		}
	}
	for _, ns := range slices.Sorted(maps.Keys(nsAfter)) {
		for _, dst := range randRouteDsts[ns] {
			if rng.IntN(10) < 7 {
				continue
			}
			var gws []netip.Addr
			for _, c := range connected {
				if c.ns == ns && c.p.Addr().Is4() && c.p.Bits() == 24 {
					a := c.p.Masked().Addr().As4()
					a[3] = 254
					gws = append(gws, netip.AddrFrom4(a))
				}
			}
			rt := Route{NS: ns, Dst: dst, Blackhole: true}
			if len(gws) > 0 && rng.IntN(2) == 0 {
				rt.Blackhole, rt.Gw = false, gws[rng.IntN(len(gws))]
			}
			d.Routes = append(d.Routes, rt)
		}
	}
	return d
}

// mutateWorld changes pre-existing state that a later state may touch.
func (r *randRun) mutateWorld() {
	h, rng := r.h, r.rng
	var err error
	switch rng.IntN(7) {
	case 0:
		err = h.SetUp("", "eth1", !r.link("", "eth1").Up)
	case 1:
		err = h.SetMTU("", "eth1", []int{1500, 9000}[rng.IntN(2)])
	case 2:
		p := netip.MustParsePrefix("10.9.0.5/24")
		if slices.Contains(r.link("", "eth1").Addrs, p) {
			err = h.DelAddr("", "eth1", p)
		} else {
			err = h.AddAddr("", "eth1", p)
		}
	case 3:
		err = h.SetFeatures("", "eth1", map[string]bool{"rx-checksum": rng.IntN(2) == 0, "tx-checksum-ipv4": rng.IntN(2) == 0})
	case 4:
		// Someone else's routes to destinations the states use: at the
		// metric the agent uses (states that need another route there
		// are refused) or at another one (left alone).
		dst := prefixes("10.50.0.0/16", "192.168.111.0/30", "2001:db8::/32")[rng.IntN(3)]
		metric := []int{0, 100}[rng.IntN(2)]
		switch rng.IntN(4) {
		case 0:
			if err = h.DelRoute("", RouteSpec{Dst: dst}); errors.Is(err, ErrNotFound) {
				err = nil
			}
		case 1, 2:
			err = h.ReplaceRoute("", RouteSpec{Dst: dst, Type: RouteBlackhole, Protocol: 4, Metric: metric})
		case 3:
			if dst.Addr().Is4() {
				err = h.ReplaceRoute("", RouteSpec{Dst: dst, Gw: netip.MustParseAddr("192.0.2.1"), Type: RouteUnicast, Protocol: 4, Metric: metric})
			}
		}
	case 5:
		if h.HasNamespace("ns2") {
			err = h.DeleteNamespace("ns2")
		} else if err = h.CreateNamespace("ns2"); err == nil && rng.IntN(2) == 0 {
			err = h.SetUp("ns2", "lo", true)
		}
	case 6:
		if r.link("", "veth4") != nil {
			err = h.DeleteLink("", "veth4")
		} else if err = h.AddVeth("veth4", "veth5", ""); err == nil {
			err = h.SetMTU("", "veth5", 9000)
		}
	}
	if err != nil {
		r.t.Fatalf("mutating the world: %v", err)
	}
}

// bystander returns a change to state no desired state touches; it is
// made to the host and to every saved copy.
func (r *randRun) bystander() func(h *netcfgtest.Host) error {
	rng := r.rng
	switch rng.IntN(5) {
	case 0:
		mtu := []int{1500, 1400, 9000}[rng.IntN(3)]
		return func(h *netcfgtest.Host) error { return h.SetMTU("", "dummy0", mtu) }
	case 1:
		up := rng.IntN(2) == 0
		return func(h *netcfgtest.Host) error { return h.SetUp("", "dummy0", up) }
	case 2:
		p := prefixes("172.31.0.1/24", "172.31.1.1/24")[rng.IntN(2)]
		return func(h *netcfgtest.Host) error {
			if l, _ := h.LinkState("", "dummy0"); slices.Contains(l.Addrs, p) {
				return h.DelAddr("", "dummy0", p)
			}
			return h.AddAddr("", "dummy0", p)
		}
	case 3:
		dst := netip.PrefixFrom(netip.AddrFrom4([4]byte{172, 16, byte(rng.IntN(4)), 0}), 24)
		del := rng.IntN(2) == 0
		return func(h *netcfgtest.Host) error {
			if del {
				return h.DelRoute("", RouteSpec{Dst: dst, Type: RouteBlackhole})
			}
			return h.ReplaceRoute("", RouteSpec{Dst: dst, Type: RouteBlackhole, Protocol: 4})
		}
	default:
		return func(h *netcfgtest.Host) error {
			if h.HasNamespace("bystander") {
				return h.DeleteNamespace("bystander")
			}
			return h.CreateNamespace("bystander")
		}
	}
}

func (r *randRun) journal() *Journal {
	r.n++
	return NewJournal(filepath.Join(r.dir, fmt.Sprintf("j%d.json", r.n)), "site")
}

// apply applies a random state, possibly with a fault or a kill on the
// way; if it fails, it checks that the host is as before.
func (r *randRun) apply() {
	t, h := r.t, r.h
	d := r.desired()
	before := h.Clone()
	j := r.journal()
	h.Must(t)
	fault := r.rng.IntN(10)
	switch {
	case fault == 0:
		h.FailAt(1 + r.rng.IntN(15))
	case fault == 1:
		h.KillAt(1+r.rng.IntN(15), r.rng.IntN(2) == 0)
	}
	var err error
	killed := false
	func() {
		defer func() {
			if p := recover(); p != nil {
				if p != netcfgtest.ErrKilled {
					panic(p)
				}
				killed = true
			}
		}()
		err = Apply(h, d, j, discard)
	}()
	h.ClearFaults()
	switch {
	case killed:
		r.stats["apply killed"]++
		down(t, h, j.Path())
	case err != nil && strings.Contains(err.Error(), "\nroll back: "):
		// The fault hit the rollback (Apply had failed by itself
		// before): the journal stays for `down`.
		r.stats["apply and rollback failed"]++
		if !errors.Is(err, netcfgtest.ErrInjected) {
			t.Fatalf("Apply of %+v: rollback failed by itself: %v", d, err)
		}
		down(t, h, j.Path())
	case err != nil:
		if errors.Is(err, netcfgtest.ErrInjected) {
			r.stats["apply failed (injected)"]++
		} else {
			r.stats["apply failed (invalid)"]++
		}
	default:
		r.stats["applied"]++
		r.stack = append(r.stack, applied{d, j, before})
		if r.rng.IntN(4) == 0 {
			r.reapply(d)
		}
		return
	}
	checkNoJournal(t, j)
	if got, want := h.Dump(), before.Dump(); got != want {
		t.Fatalf("after a failed or killed Apply (err %v) of %+v the host differs from before:\n%s", err, d, lineDiff(want, got))
	}
}

// reapply applies the state just applied again: no change, and reverting
// that second journal changes nothing either.
func (r *randRun) reapply(d Desired) {
	t, h := r.t, r.h
	want := h.Dump()
	j := r.journal()
	if err := Apply(h, d, j, discard); err != nil {
		t.Fatalf("applying %+v again: %v", d, err)
	}
	if got := h.Dump(); got != want {
		t.Fatalf("applying %+v again changed the host:\n%s", d, lineDiff(want, got))
	}
	if err := Revert(h, j, discard); err != nil {
		t.Fatalf("reverting the second Apply: %v", err)
	}
	if got := h.Dump(); got != want {
		t.Fatalf("reverting the second Apply of %+v changed the host:\n%s", d, lineDiff(want, got))
	}
	checkNoJournal(t, j)
	r.stats["applied again"]++
}

// revert reverts the innermost applied state, possibly with a fault or a
// kill on the way (then `down` finishes), and checks that the host is as
// before that state was applied.
func (r *randRun) revert() {
	t, h := r.t, r.h
	top := r.stack[len(r.stack)-1]
	r.stack = r.stack[:len(r.stack)-1]
	h.Must(t)
	switch r.rng.IntN(8) {
	case 0:
		h.FailAt(1 + r.rng.IntN(10))
	case 1:
		h.KillAt(1+r.rng.IntN(10), r.rng.IntN(2) == 0)
	}
	var err error
	killed := false
	func() {
		defer func() {
			if p := recover(); p != nil {
				if p != netcfgtest.ErrKilled {
					panic(p)
				}
				killed = true
			}
		}()
		err = Revert(h, top.j, discard)
	}()
	h.ClearFaults()
	switch {
	case killed:
		r.stats["revert killed"]++
		down(t, h, top.j.Path())
	case err != nil:
		if !errors.Is(err, netcfgtest.ErrInjected) {
			t.Fatalf("Revert of %+v: %v", top.d, err)
		}
		r.stats["revert failed (injected)"]++
		down(t, h, top.j.Path())
	default:
		r.stats["reverted"]++
	}
	checkNoJournal(t, top.j)
	if got, want := h.Dump(), top.before.Dump(); got != want {
		t.Fatalf("after reverting %+v the host differs from before it was applied:\n%s", top.d, lineDiff(want, got))
	}
}

// fastTempDir is a temporary directory in memory where there is one: the
// random test saves (and fsyncs) journals thousands of times.
func fastTempDir(t testing.TB) string {
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		if dir, err := os.MkdirTemp("/dev/shm", "netcfg-test-"); err == nil {
			t.Cleanup(func() { os.RemoveAll(dir) })
			return dir
		}
	}
	return t.TempDir()
}

// TestRandomStates applies and reverts random desired states, nested up
// to three deep, with faults and kills, while bystanders change things
// the agent does not own; every Revert must give back the host exactly as
// it was before the matching Apply (plus the bystanders' changes). Between
// runs, the pre-existing state the agent may touch changes too. The pools
// keep clear of what TestRevertKernelSideEffects shows cannot be
// reverted: no foreign routes through a link whose addresses a state
// adds, no lo brought up in a namespace found with lo down. Set
// NETCFG_SEED to replay a seed.
func TestRandomStates(t *testing.T) {
	seeds := []int64{1, time.Now().UnixNano()}
	if s := os.Getenv("NETCFG_SEED"); s != "" {
		seed, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			t.Fatalf("NETCFG_SEED: %v", err)
		}
		seeds = []int64{seed}
	}
	steps := 200
	if testing.Short() {
		steps = 50
	}
	for _, seed := range seeds {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) {
			defer func() {
				if t.Failed() {
					t.Logf("replay with NETCFG_SEED=%d", seed)
				}
			}()
			r := &randRun{
				t: t, rng: rand.New(rand.NewPCG(uint64(seed), 0)), h: randHost(t),
				dir: fastTempDir(t), stats: map[string]int{},
			}
			start := r.h.Dump()
			for range steps {
				switch x := r.rng.IntN(10); {
				case x < 4 && len(r.stack) < 3:
					r.apply()
				case x < 7 && len(r.stack) > 0:
					r.revert()
				case x < 8 && len(r.stack) == 0:
					r.mutateWorld()
				default:
					change := r.bystander()
					err := change(r.h)
					for _, a := range r.stack {
						if err2 := change(a.before); (err == nil) != (err2 == nil) {
							t.Fatalf("a bystander change gave %v on the host, %v on a copy", err, err2)
						}
					}
					r.stats["bystander changes"]++
				}
			}
			for len(r.stack) > 0 {
				r.revert()
			}
			if r.stats["applied"] < steps/10 || r.stats["reverted"] < steps/10 {
				t.Errorf("too few successful transitions: %v", r.stats)
			}
			t.Logf("seed %d: %v", seed, r.stats)
			if got := r.h.Dump(); strings.Count(got, "\n") < strings.Count(start, "\n")/2 {
				t.Errorf("the world shrank too much to be interesting:\n%s", got)
			}
		})
	}
}

// TestRevertFailureKeepsOrder: when an entry cannot be reverted, earlier
// entries for the same target must wait for it; restoring their older
// value first would leave the failed entry's (newer) prior in place once
// it is retried. Here eth0 is set twice: 1500 -> 1400 -> 9000.
func TestRevertFailureKeepsOrder(t *testing.T) {
	tests := []struct {
		name  string
		d     Desired
		fault func(c netcfgtest.Call) bool // fails undoing the second change
	}{
		{
			name: "MTU",
			d:    Desired{Links: []Link{{Name: "eth0", MTU: 1400}, {Name: "eth0", MTU: 9000}}},
			fault: func(c netcfgtest.Call) bool {
				return c.Op == "SetMTU" && c.Arg == "1400"
			},
		},
		{
			name: "features",
			d: Desired{Links: []Link{
				{Name: "eth0", Features: []Feature{{"rx", false}, {"gro", false}}},
				{Name: "eth0", Features: []Feature{{"rx", true}}},
			}},
			fault: func(c netcfgtest.Call) bool { return c.Op == "SetFeatures" && c.Arg == "rx-checksum off" },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := vpsHost(t)
			before := h.Dump()
			j := newTestJournal(t)
			if err := Apply(h, tt.d, j, discard); err != nil {
				t.Fatalf("Apply: %v", err)
			}
			h.FailIf(tt.fault)
			if err := Revert(h, j, discard); !errors.Is(err, netcfgtest.ErrInjected) {
				t.Fatalf("Revert: %v, want the injected fault", err)
			}
			h.ClearFaults()
			down(t, h, j.Path())
			checkDump(t, "after down", h, before)
			checkNoJournal(t, j)
		})
	}
}

// TestRevertKernelSideEffects covers two kernel side effects that no
// journal entry records, so Revert cannot undo them (the fake reproduces
// both as Linux 6.18 does). They skip, showing the difference, until
// netcfg handles them; TestRandomStates avoids them.
func TestRevertKernelSideEffects(t *testing.T) {
	tests := []struct {
		name  string
		setup func(h *netcfgtest.Host)
		d     Desired
	}{
		{
			// Deleting a link's last IPv4 address flushes every route
			// through the link, also routes someone else added.
			name: "last IPv4 address of a link",
			setup: func(h *netcfgtest.Host) {
				h.AddLink(t, "", "eth1", "device", 1500, true)
				h.Must(t, h.ReplaceRoute("", RouteSpec{Dst: netip.MustParsePrefix("10.11.0.0/16"), Dev: "eth1", Type: RouteUnicast, Protocol: 4, Scope: 253}))
			},
			d: Desired{Links: []Link{{Name: "eth1", Addrs: prefixes("10.9.0.1/24")}}},
		},
		{
			// Bringing lo up gives it 127.0.0.1/8, which stays when lo
			// goes down again.
			name:  "lo of a namespace found down",
			setup: func(h *netcfgtest.Host) { h.Must(t, h.CreateNamespace("ns1")) },
			d:     Desired{Links: []Link{{NS: "ns1", Name: "lo", Up: true}}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := vpsHost(t)
			tt.setup(h)
			before := h.Dump()
			j := newTestJournal(t)
			if err := Apply(h, tt.d, j, discard); err != nil {
				t.Fatalf("Apply: %v", err)
			}
			if err := Revert(h, j, discard); err != nil {
				t.Fatalf("Revert: %v", err)
			}
			if d := lineDiff(before, h.Dump()); d != "" {
				t.Skipf("known limitation: after Revert the host differs:\n%s", d)
			}
		})
	}
}

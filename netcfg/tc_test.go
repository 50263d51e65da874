package netcfg_test

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	. "tunnel-agent/netcfg"
	"tunnel-agent/netcfg/netcfgtest"
)

// tcHost is the in-memory host with tc hooks it can remove.
type tcHost struct {
	*netcfgtest.Host
	removed []string
}

func (h *tcHost) RemoveTC(ns, link string, t TCSpec) error {
	h.removed = append(h.removed, link+" "+t.Name)
	return nil
}

// TestTCEntries: hooks recorded after Apply survive a reload's
// Reconfigure, are removed first by Revert (newest first), and ForgetTC
// takes them out of the journal once detached.
func TestTCEntries(t *testing.T) {
	base, before, j := appliedVPS(t)
	h := &tcHost{Host: base}
	hooks := []TCSpec{{Index: 5, Name: "tunnel-agent-wan_ingress", Parent: 0xfffffff2, Priority: 0xc0de, Handle: 1},
		{Index: 7, Name: "tunnel-agent-lan_ingress", Parent: 0xfffffff2, Priority: 0xc0de, Handle: 1, QdiscCreated: true}}
	if err := RecordTC(j, []string{"eth0", "veth0"}, hooks); err != nil {
		t.Fatal(err)
	}
	onDisk, err := LoadJournal(j.Path())
	if err != nil || onDisk == nil || onDisk.Entries[len(onDisk.Entries)-1].Kind != KindTC {
		t.Fatalf("journal on disk: %+v, %v", onDisk, err)
	}
	if s := onDisk.Entries[len(onDisk.Entries)-1].String(); !strings.Contains(s, "tunnel-agent-lan_ingress") || !strings.Contains(s, "created") {
		t.Errorf("entry reads %q", s)
	}
	nw := vpsDesired("ns1")
	nw.Routes = append(nw.Routes, Route{Dst: netip.MustParsePrefix("10.9.0.0/24"), Blackhole: true})
	w := NewWatcher(h, vpsDesired("ns1"), WatchOptions{})
	if err := w.Reconfigure(nw, j, discard); err != nil {
		t.Fatal(err)
	}
	if n := len(slices.DeleteFunc(slices.Clone(j.Entries), func(e Entry) bool { return e.Kind != KindTC })); n != 2 || len(h.removed) != 0 {
		t.Fatalf("after a reload: %d tc entries (want 2), removed %v", n, h.removed)
	}
	if err := Revert(h, j, discard); err != nil {
		t.Fatal(err)
	}
	if want := []string{"veth0 tunnel-agent-lan_ingress", "eth0 tunnel-agent-wan_ingress"}; !slices.Equal(h.removed, want) {
		t.Errorf("removed %v, want %v", h.removed, want)
	}
	checkDump(t, "after revert", base, before)

	j2 := newTestJournal(t)
	if err := RecordTC(j2, []string{"eth0"}, hooks[:1]); err != nil {
		t.Fatal(err)
	}
	if err := ForgetTC(j2); err != nil || len(j2.Entries) != 0 {
		t.Fatalf("ForgetTC: %v, entries %v", err, j2.Entries)
	}
	// A host that cannot remove tc hooks keeps the entry for `down`.
	if err := RecordTC(j2, []string{"eth0"}, hooks[:1]); err != nil {
		t.Fatal(err)
	}
	if err := Revert(netcfgtest.New(), j2, discard); err == nil || len(j2.Entries) != 1 {
		t.Errorf("Revert without TCHost: %v, entries %v", err, j2.Entries)
	}
}

package netcfg_test

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	. "tunnel-agent/netcfg"
	"tunnel-agent/netcfg/netcfgtest"
)

// TestJournalRecordsNetNS: Apply records the namespace its changes are
// made in, and the field survives the journal's round trip.
func TestJournalRecordsNetNS(t *testing.T) {
	h := netcfgtest.New()
	id := NetNSID{Dev: 4, Ino: 4026532281, Name: "site-a"}
	h.SetNetNS(id)
	j := newTestJournal(t)
	if err := Apply(h, vpsDesired("ns1"), j, discard); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	loaded, err := LoadJournal(j.Path())
	if err != nil || loaded == nil {
		t.Fatalf("LoadJournal: %v, %v", loaded, err)
	}
	if loaded.NetNS == nil || *loaded.NetNS != id {
		t.Errorf("journal records namespace %v, want %v", loaded.NetNS, id)
	}
	if err := Revert(h, loaded, discard); err != nil {
		t.Fatalf("Revert in the same namespace: %v", err)
	}
	checkNoJournal(t, j)
}

// TestRevertRefusesOtherNetNS is the reproduced failure: `down` from
// another network namespace "reverted 13 recorded changes", changed
// nothing and deleted the journal. Now the revert refuses, touches
// nothing, names both namespaces and keeps the journal.
func TestRevertRefusesOtherNetNS(t *testing.T) {
	h := netcfgtest.New()
	j := newTestJournal(t)
	if err := Apply(h, vpsDesired("ns1"), j, discard); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	during := h.Dump()
	loaded, err := LoadJournal(j.Path())
	if err != nil {
		t.Fatal(err)
	}
	other := h.Clone()
	other.SetNetNS(NetNSID{Dev: 4, Ino: 4026532999, Name: "elsewhere"})
	err = Revert(other, loaded, discard)
	if !errors.Is(err, ErrOtherNetNS) {
		t.Fatalf("Revert from another namespace: %v, want ErrOtherNetNS", err)
	}
	for _, want := range []string{"net:[4026531840]", "net:[4026532999] (/run/netns/elsewhere)", "nothing was reverted", j.Path()} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if calls := other.MutatingCalls(); len(calls) != 0 {
		t.Errorf("refused revert changed the host: %v", calls)
	}
	again, err := LoadJournal(j.Path())
	if err != nil || again == nil || len(again.Entries) != len(j.Entries) {
		t.Fatalf("journal after the refusal: %v, %v; want it kept whole", again, err)
	}
	checkDump(t, "original host", h, during)
}

// noopHost answers "already gone" to every removal without removing
// anything: what a revert sees from the wrong place.
type noopHost struct{ *netcfgtest.Host }

func (n noopHost) DeleteNamespace(string) error     { return fmt.Errorf("gone: %w", ErrNotFound) }
func (n noopHost) DeleteLink(string, string) error  { return fmt.Errorf("gone: %w", ErrNotFound) }
func (n noopHost) DelRoute(string, RouteSpec) error { return fmt.Errorf("gone: %w", ErrNotFound) }
func (n noopHost) SetMTU(string, string, int) error { return fmt.Errorf("gone: %w", ErrNotFound) }
func (n noopHost) SetUp(string, string, bool) error { return fmt.Errorf("gone: %w", ErrNotFound) }
func (n noopHost) DelAddr(string, string, netip.Prefix) error {
	return fmt.Errorf("gone: %w", ErrNotFound)
}
func (n noopHost) SetFeatures(string, string, map[string]bool) error {
	return fmt.Errorf("gone: %w", ErrNotFound)
}

// TestRevertVerifies: a revert whose every step reported "already gone"
// while the changes stayed is not success; the journal keeps them.
func TestRevertVerifies(t *testing.T) {
	h := netcfgtest.New()
	j := newTestJournal(t)
	if err := Apply(h, vpsDesired("ns1"), j, discard); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	n := len(j.Entries)
	err := Revert(noopHost{h}, j, discard)
	if err == nil {
		t.Fatal("Revert that changed nothing reported success")
	}
	for _, want := range []string{`"create namespace ns1": the change is still in place`, `"add route blackhole 192.168.111.0/30"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	kept, lerr := LoadJournal(j.Path())
	if lerr != nil || kept == nil || len(kept.Entries) != n {
		t.Fatalf("journal after the failed verification: %v, %v; want all %d entries", kept, lerr, n)
	}
	if err := Revert(h, kept, discard); err != nil {
		t.Fatalf("Revert on the real host: %v", err)
	}
	checkNoJournal(t, j)
}

package netcfg_test

import (
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vishvananda/netns"

	"tunnel-agent/internal/hostdump"
	"tunnel-agent/internal/nstest"

	. "tunnel-agent/netcfg"
)

func dump(t *testing.T, h netns.NsHandle) string {
	t.Helper()
	d, err := hostdump.Take(h)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// netlinkTestHost returns a throwaway namespace standing in for the
// host, a NetlinkHost on it, and a unique name for the tutorial's ns1
// (removed in t.Cleanup if the test leaves it).
func netlinkTestHost(t *testing.T, prefix string) (*nstest.NS, *NetlinkHost, string) {
	t.Helper()
	host := nstest.New(t, prefix)
	ns1 := nstest.UniqueName(prefix + "1")
	t.Cleanup(func() { _ = netns.DeleteNamed(ns1) })
	self, err := netns.GetFromName(host.Name)
	if err != nil {
		t.Fatal(err)
	}
	h := NewNetlinkHostAt(self)
	t.Cleanup(h.Close)
	return host, h, ns1
}

// TestNetlinkApplyRevert applies the tutorial's setup to a throwaway
// namespace standing in for the host, checks the result, reverts, and
// compares full dumps.
func TestNetlinkApplyRevert(t *testing.T) {
	host, h, ns1 := netlinkTestHost(t, "tanc")
	before := dump(t, host.Handle)

	j := NewJournal(filepath.Join(t.TempDir(), "s.json"), "s")
	if err := Apply(h, vpsDesired(ns1), j, slog.Default()); err != nil {
		t.Fatalf("apply: %v", err)
	}
	during := dump(t, host.Handle)
	for _, want := range []string{
		"link veth0 type=veth mtu=1420 flags=up",
		"addr veth0 11.11.11.1/24",
		"feature veth0 rx-checksum=false",
		"feature veth0 tx-checksum-ip-generic=false",
		"route table=254 dst=192.168.111.0/30 gw=<nil> dev= type=6 proto=227",
	} {
		if !strings.Contains(during, want) {
			t.Errorf("dump during apply lacks %q:\n%s", want, during)
		}
	}
	// Applying the same state again changes nothing.
	j2 := NewJournal(filepath.Join(t.TempDir(), "s2.json"), "s")
	if err := Apply(h, vpsDesired(ns1), j2, slog.Default()); err != nil {
		t.Fatalf("second apply: %v", err)
	}
	for _, e := range j2.Entries {
		if e.State != Unchanged {
			t.Errorf("second apply changed %s (state %s)", e.String(), e.State)
		}
	}
	if err := Revert(h, j, slog.Default()); err != nil {
		t.Fatalf("revert: %v", err)
	}
	if d := hostdump.Diff(before, dump(t, host.Handle)); d != "" {
		t.Errorf("host differs after revert:\n%s", d)
	}
	if ok, _ := h.NamespaceExists(ns1); ok {
		t.Errorf("namespace %s still exists after revert", ns1)
	}
}

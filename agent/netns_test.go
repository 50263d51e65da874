package agent

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vishvananda/netns"

	"tunnel-agent/netcfg"
)

// TestRevertNetNS: a journal is reverted where its changes were made:
// here, in its namespace opened by name, or nowhere (an error naming it).
func TestRevertNetNS(t *testing.T) {
	here := netcfg.NetNSID{Dev: 4, Ino: 4026531840}
	there := netcfg.NetNSID{Dev: 4, Ino: 4026532281, Name: "gw"}
	j := netcfg.NewJournal(filepath.Join(t.TempDir(), "s.json"), "s")
	opened := netns.NsHandle(42)
	var asked []netcfg.NetNSID
	open := func(id netcfg.NetNSID) (netns.NsHandle, error) {
		asked = append(asked, id)
		if id.Name == "gw" {
			return opened, nil
		}
		return netns.None(), errors.New("network namespace has no name under /run/netns: " + netcfg.ErrNotFound.Error())
	}

	// A journal of an older agent, and one of this namespace: here.
	for _, rec := range []*netcfg.NetNSID{nil, {Dev: 4, Ino: 4026531840, Name: "stale-name"}} {
		j.NetNS = rec
		if h, err := revertNetNS(j, here, open); err != nil || h != netns.None() {
			t.Errorf("journal of %v: %v, %v; want here", rec, h, err)
		}
	}
	if len(asked) != 0 {
		t.Errorf("opened %v for a journal of this namespace", asked)
	}
	// Another namespace with a name: opened.
	j.NetNS = &there
	if h, err := revertNetNS(j, here, open); err != nil || h != opened {
		t.Errorf("journal of %v: %v, %v; want the opened namespace", there, h, err)
	}
	// Another namespace that cannot be opened: refused, naming both.
	gone := netcfg.NetNSID{Dev: 4, Ino: 4026532999}
	j.NetNS = &gone
	h, err := revertNetNS(j, here, open)
	if err == nil || h != netns.None() {
		t.Fatalf("journal of an unreachable namespace: %v, %v; want an error", h, err)
	}
	for _, want := range []string{j.Path(), "net:[4026532999]", "not in this one (net:[4026531840])", "nothing was reverted", "nsenter"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}

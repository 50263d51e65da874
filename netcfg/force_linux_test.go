package netcfg_test

import (
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"

	"tunnel-agent/internal/hostdump"
	"tunnel-agent/internal/nsutil"

	. "tunnel-agent/netcfg"
)

// TestForceRemove: without a journal, ForceRemove removes the tutorial's
// setup, which carries the agent's marks, and leaves look-alikes that do
// not: a veth of the same name whose peer is elsewhere, a namespace of
// the same name holding other interfaces, a route of another protocol.
func TestForceRemove(t *testing.T) {
	host, h, ns1 := netlinkTestHost(t, "tanf")
	before := dump(t, host.Handle)
	d := vpsDesired(ns1)
	if err := Apply(h, d, NewJournal(filepath.Join(t.TempDir(), "s.json"), "s"), slog.Default()); err != nil {
		t.Fatalf("apply: %v", err)
	}
	removed, left, err := h.ForceRemove(d, nil)
	if err != nil || len(left) != 0 || len(removed) != 4 {
		t.Fatalf("ForceRemove = removed %q, left %q, %v; want the route, the default route in %s, the veth pair and the namespace", removed, left, err, ns1)
	}
	if diff := hostdump.Diff(before, dump(t, host.Handle)); diff != "" {
		t.Errorf("host after ForceRemove:\n%s", diff)
	}
	if ok, _ := h.NamespaceExists(ns1); ok {
		t.Errorf("namespace %s remains", ns1)
	}

	// Look-alikes.
	nsH, err := nsutil.NewNamed(ns1)
	if err != nil {
		t.Fatal(err)
	}
	defer nsH.Close()
	nl1, err := netlink.NewHandleAt(nsH)
	if err != nil {
		t.Fatal(err)
	}
	defer nl1.Close()
	for _, err := range []error{
		host.NL.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "veth0"}, PeerName: "vx"}),
		nl1.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "veth1"}, PeerName: "other"}),
		host.NL.RouteAdd(&netlink.Route{Dst: &net.IPNet{IP: net.IPv4(192, 168, 111, 0), Mask: net.CIDRMask(30, 32)},
			Type: 6, Protocol: 4}),
	} {
		if err != nil {
			t.Fatalf("set up look-alikes: %v", err)
		}
	}
	lookalikes := dump(t, host.Handle)
	removed, left, err = h.ForceRemove(d, nil)
	if err != nil || len(removed) != 0 {
		t.Fatalf("ForceRemove of look-alikes: removed %q, %v; want nothing", removed, err)
	}
	all := strings.Join(left, "\n")
	for _, want := range []string{"route 192.168.111.0/30: protocol 4, not the agent's 227",
		"interface veth0: its peer is not veth1 in " + ns1, "namespace " + ns1 + ": holds interfaces the site file does not create ([other veth1])"} {
		if !strings.Contains(all, want) {
			t.Errorf("left lacks %q:\n%s", want, all)
		}
	}
	if diff := hostdump.Diff(lookalikes, dump(t, host.Handle)); diff != "" {
		t.Errorf("ForceRemove changed look-alikes:\n%s", diff)
	}
	// Another site's claim is left too.
	_, left, _ = h.ForceRemove(Desired{Namespaces: []string{ns1}}, func(kind, name string) string {
		return `site "x"`
	})
	if len(left) != 1 || !strings.Contains(left[0], `claimed by site "x"`) {
		t.Errorf("claimed namespace: left %q", left)
	}
}

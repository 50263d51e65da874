package netcfg

import (
	"testing"

	"golang.org/x/sys/unix"
)

// TestNetlinkHostRouteOnly: the host's netlink handles are NETLINK_ROUTE
// sockets only; netlink.NewHandle without a family also opens XFRM and
// netfilter sockets, which kernels built without XFRM and qemu-user
// refuse. Opening one needs no privilege.
func TestNetlinkHostRouteOnly(t *testing.T) {
	h, err := NewNetlinkHost()
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	x, err := h.handles("")
	if err != nil {
		t.Fatal(err)
	}
	if !x.nl.SupportsNetlinkFamily(unix.NETLINK_ROUTE) {
		t.Error("no NETLINK_ROUTE socket")
	}
	for name, fam := range map[string]int{"XFRM": unix.NETLINK_XFRM, "NETFILTER": unix.NETLINK_NETFILTER} {
		if x.nl.SupportsNetlinkFamily(fam) {
			t.Errorf("a NETLINK_%s socket was opened", name)
		}
	}
}

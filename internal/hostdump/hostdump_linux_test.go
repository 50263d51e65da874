package hostdump

import (
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"tunnel-agent/internal/nstest"
)

// TestKernelLinkLocalLeftOut dumps a veth end that is up but has no
// carrier yet (its peer is down), then brings the peer up and waits until
// the kernel has given the end its IPv6 link-local address and finished
// DAD: that end's lines in the two dumps are equal, and a configured
// address still shows.
func TestKernelLinkLocalLeftOut(t *testing.T) {
	ns := nstest.New(t, "hd")
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "hd0"}, PeerName: "hd1"}
	if err := ns.NL.LinkAdd(veth); err != nil {
		t.Fatalf("add veth: %v", err)
	}
	a, _ := netlink.ParseAddr("198.18.7.1/24")
	a6, _ := netlink.ParseAddr("2001:db8:7::1/64")
	setUp := func(name string) {
		t.Helper()
		l, err := ns.NL.LinkByName(name)
		if err == nil {
			err = ns.NL.LinkSetUp(l)
		}
		if err != nil {
			t.Fatalf("bring %s up: %v", name, err)
		}
	}
	l0, err := ns.NL.LinkByName("hd0")
	if err == nil {
		err = ns.NL.AddrAdd(l0, a)
	}
	if err == nil {
		a6.Flags = unix.IFA_F_NODAD
		err = ns.NL.AddrAdd(l0, a6)
	}
	if err != nil {
		t.Fatalf("address hd0: %v", err)
	}
	setUp("hd0")
	before := linesOf(t, ns, "hd0")
	setUp("hd1")
	// Wait (up to 20 s on a loaded machine) for hd0's link-local address
	// to leave the tentative state: its routes exist then too.
	deadline := time.Now().Add(20 * time.Second)
	for !linkLocalSettled(t, ns.NL, "hd0") {
		if time.Now().After(deadline) {
			t.Skip("the kernel gave the veth no settled IPv6 link-local address within 20 s (IPv6 disabled?)")
		}
		time.Sleep(50 * time.Millisecond)
	}
	after := linesOf(t, ns, "hd0")
	if d := Diff(before, after); d != "" {
		t.Errorf("hd0's dump changed while the kernel made link-local state:\n%s", d)
	}
	for _, want := range []string{"addr hd0 198.18.7.1/24", "addr hd0 2001:db8:7::1/64"} {
		if !strings.Contains(after, want) {
			t.Errorf("configured address %q missing from the dump:\n%s", want, after)
		}
	}
}

// linesOf returns the lines of a dump of ns that name link.
func linesOf(t *testing.T, ns *nstest.NS, link string) string {
	t.Helper()
	d, err := Take(ns.Handle)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range strings.Split(d, "\n") {
		if strings.Contains(l, " "+link+" ") || strings.Contains(l, "dev="+link+" ") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// linkLocalSettled reports whether every named link has an IPv6
// link-local address that is no longer tentative.
func linkLocalSettled(t *testing.T, h *netlink.Handle, names ...string) bool {
	t.Helper()
	for _, name := range names {
		l, err := h.LinkByName(name)
		if err != nil {
			t.Fatalf("link %s: %v", name, err)
		}
		addrs, err := h.AddrList(l, netlink.FAMILY_V6)
		if err != nil {
			t.Fatalf("addresses of %s: %v", name, err)
		}
		ok := false
		for _, a := range addrs {
			if a.IP.IsLinkLocalUnicast() && a.Flags&unix.IFA_F_TENTATIVE == 0 {
				ok = true
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

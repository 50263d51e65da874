// Package nstest creates throwaway named network namespaces for tests that
// need root. Every namespace it creates is removed by t.Cleanup, also when
// the test fails. The calling goroutine's namespace is never changed: the
// switch happens on a locked OS thread that is restored (or discarded).
package nstest

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"tunnel-agent/internal/nsutil"
)

// RequireRoot skips the test with a clear message unless it runs as root.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("end-to-end test: needs root to create network namespaces (run as root, as CI does)")
	}
}

// UniqueName returns prefix followed by random hex, short enough to also be
// used inside interface names when prefix is short.
func UniqueName(prefix string) string {
	var b [3]byte
	_, _ = rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

// NS is a named network namespace created for one test.
type NS struct {
	Name   string
	Path   string // /run/netns/<Name>
	Handle netns.NsHandle
	NL     *netlink.Handle // netlink handle bound to the namespace
}

// New creates a named namespace (name = prefix + random suffix) with its lo
// up, and registers its removal with t.Cleanup.
func New(t testing.TB, prefix string) *NS {
	t.Helper()
	RequireRoot(t)
	name := UniqueName(prefix)
	h, err := nsutil.NewNamed(name)
	if err != nil {
		t.Fatalf("create namespace %s: %v", name, err)
	}
	ns := &NS{Name: name, Path: "/run/netns/" + name, Handle: h}
	t.Cleanup(func() { ns.remove(t) })
	ns.NL, err = netlink.NewHandleAt(h, unix.NETLINK_ROUTE)
	if err != nil {
		t.Fatalf("netlink handle in %s: %v", name, err)
	}
	lo, err := ns.NL.LinkByName("lo")
	if err == nil {
		err = ns.NL.LinkSetUp(lo)
	}
	if err != nil {
		t.Fatalf("bring lo up in %s: %v", name, err)
	}
	return ns
}

func (ns *NS) remove(t testing.TB) {
	if ns.NL != nil {
		ns.NL.Close()
	}
	ns.Handle.Close()
	if err := netns.DeleteNamed(ns.Name); err != nil && !os.IsNotExist(err) {
		t.Errorf("remove namespace %s: %v", ns.Name, err)
	}
}

// Do runs fn on a locked OS thread switched into the namespace (for
// opening sockets there).
func (ns *NS) Do(fn func() error) error {
	return nsutil.Do(ns.Handle, fn)
}

package netcfg

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"sync"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
	"tunnel-agent/internal/ethfeat"

	"tunnel-agent/internal/nsutil"
)

var _ Host = (*NetlinkHost)(nil)

// NetlinkHost is the Host that changes the real system through netlink and
// ethtool ioctls, with one netlink handle (and one ethtool socket) per
// namespace. It never switches the calling thread's namespace.
type NetlinkHost struct {
	mu   sync.Mutex
	self netns.NsHandle // the agent's own namespace, NS ""
	nss  map[string]*nsHandles
	// current: self is the calling process's namespace, so NS "" needs
	// no setns (which takes CAP_SYS_ADMIN even into one's own namespace).
	current bool
}

type nsHandles struct {
	ns netns.NsHandle
	nl *netlink.Handle
	et *ethfeat.Socket
}

// NewNetlinkHost returns a Host for the namespace the process runs in and
// the named namespaces below /run/netns.
func NewNetlinkHost() (*NetlinkHost, error) {
	self, err := netns.Get()
	if err != nil {
		return nil, fmt.Errorf("open own network namespace: %w", err)
	}
	h := NewNetlinkHostAt(self)
	h.current = true
	return h, nil
}

// NewNetlinkHostAt returns a Host whose NS "" is the namespace self (tests
// use it to stand a throwaway namespace in for the host). It takes
// ownership of self.
func NewNetlinkHostAt(self netns.NsHandle) *NetlinkHost {
	return &NetlinkHost{self: self, nss: map[string]*nsHandles{}}
}

// Close releases every handle.
func (h *NetlinkHost) Close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for name := range h.nss {
		h.dropLocked(name)
	}
	h.self.Close()
}

func (h *NetlinkHost) dropLocked(name string) {
	if x := h.nss[name]; x != nil {
		x.nl.Close()
		if x.et != nil {
			x.et.Close()
		}
		if name != "" {
			x.ns.Close()
		}
		delete(h.nss, name)
	}
}

// handles returns (opening on first use) the handles of namespace name.
func (h *NetlinkHost) handles(name string) (*nsHandles, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if x := h.nss[name]; x != nil {
		return x, nil
	}
	ns := h.self
	if name != "" {
		var err error
		if ns, err = netns.GetFromName(name); err != nil {
			return nil, fmt.Errorf("namespace %s: %w", name, mapErr(err))
		}
	}
	nl, err := h.newHandle(name, ns)
	if err != nil {
		if name != "" {
			ns.Close()
		}
		return nil, fmt.Errorf("netlink in namespace %q: %w", name, err)
	}
	x := &nsHandles{ns: ns, nl: nl}
	h.nss[name] = x
	return x, nil
}

// inCurrent reports whether namespace name is the one the process runs in.
func (h *NetlinkHost) inCurrent(name string) bool { return name == "" && h.current }

// newHandle opens a netlink handle in namespace name (handle ns), for
// NETLINK_ROUTE only: without a family netlink.NewHandle also opens XFRM
// and netfilter sockets, which kernels built without XFRM (small routers)
// and emulators (qemu-user) refuse.
func (h *NetlinkHost) newHandle(name string, ns netns.NsHandle) (*netlink.Handle, error) {
	if h.inCurrent(name) {
		return netlink.NewHandle(unix.NETLINK_ROUTE)
	}
	return netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
}

// ethtoolIn returns an ethtool socket opened inside namespace name.
func (h *NetlinkHost) ethtoolIn(name string) (*ethfeat.Socket, error) {
	x, err := h.handles(name)
	if err != nil {
		return nil, err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if x.et == nil {
		open := func() (err error) {
			x.et, err = ethfeat.Open()
			return err
		}
		if h.inCurrent(name) {
			err = open()
		} else {
			err = nsutil.Do(x.ns, open)
		}
		if err != nil {
			return nil, fmt.Errorf("ethtool socket in namespace %q: %w", name, err)
		}
	}
	return x.et, nil
}

func (h *NetlinkHost) link(ns, name string) (netlink.Link, *nsHandles, error) {
	x, err := h.handles(ns)
	if err != nil {
		return nil, nil, err
	}
	l, err := x.nl.LinkByName(name)
	if err != nil {
		return nil, nil, fmt.Errorf("link %s%s: %w", name, where(ns), mapErr(err))
	}
	return l, x, nil
}

// mapErr turns the kernel's "does not exist" and "exists" answers into
// ErrNotFound and ErrExists, keeping the original error in the chain.
func mapErr(err error) error {
	var lnf netlink.LinkNotFoundError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &lnf), errors.Is(err, fs.ErrNotExist), errors.Is(err, unix.ENOENT),
		errors.Is(err, unix.ESRCH), errors.Is(err, unix.ENODEV), errors.Is(err, unix.EADDRNOTAVAIL):
		return fmt.Errorf("%w (%w)", ErrNotFound, err)
	case errors.Is(err, unix.EEXIST):
		return fmt.Errorf("%w (%w)", ErrExists, err)
	}
	return err
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// dumpRetries bounds how often a dump the kernel reports as interrupted
// (the table changed while it was read: NLM_F_DUMP_INTR) is read again.
const dumpRetries = 5

// listAll runs list until it completes without the kernel flagging it as
// interrupted, at most dumpRetries times; list must start afresh.
func listAll(what string, list func() error) error {
	var err error
	for range dumpRetries {
		if err = list(); !errors.Is(err, netlink.ErrDumpInterrupted) {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("list %s: %w", what, mapErr(err))
	}
	return nil
}

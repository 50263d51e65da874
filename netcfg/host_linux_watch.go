package netcfg

import (
	"fmt"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// Subscribe implements ChangeSource: netlink link, address and route
// multicast groups of the namespace, each forwarded as a kick. Link
// updates also cover ethtool feature changes (the kernel announces
// NETDEV_FEAT_CHANGE as RTM_NEWLINK), so features are re-read on them.
func (h *NetlinkHost) Subscribe(ns string, kick func(), lost func(error), done <-chan struct{}) error {
	x, err := h.handles(ns)
	if err != nil {
		return err
	}
	var nsh *netns.NsHandle // nil: the current namespace, no setns
	if !h.inCurrent(ns) {
		nsh = &x.ns
	}
	links := make(chan netlink.LinkUpdate, 64)
	addrs := make(chan netlink.AddrUpdate, 64)
	routes := make(chan netlink.RouteUpdate, 64)
	ignore := func(error) {} // non-fatal receive problems; a fatal one closes the channel
	if err := netlink.LinkSubscribeWithOptions(links, done, netlink.LinkSubscribeOptions{Namespace: nsh, ErrorCallback: ignore}); err != nil {
		return fmt.Errorf("subscribe to link changes%s: %w", where(ns), err)
	}
	if err := netlink.AddrSubscribeWithOptions(addrs, done, netlink.AddrSubscribeOptions{Namespace: nsh, ErrorCallback: ignore}); err != nil {
		return fmt.Errorf("subscribe to address changes%s: %w", where(ns), err)
	}
	if err := netlink.RouteSubscribeWithOptions(routes, done, netlink.RouteSubscribeOptions{Namespace: nsh, ErrorCallback: ignore}); err != nil {
		return fmt.Errorf("subscribe to route changes%s: %w", where(ns), err)
	}
	go forwardKicks(links, kick, lost, done)
	go forwardKicks(addrs, kick, lost, done)
	go forwardKicks(routes, kick, lost, done)
	return nil
}

// forwardKicks kicks on every update until ch closes; a close before done
// means the subscription broke (e.g. the socket overflowed).
func forwardKicks[T any](ch <-chan T, kick func(), lost func(error), done <-chan struct{}) {
	for range ch {
		kick()
	}
	select {
	case <-done:
	default:
		lost(fmt.Errorf("netlink subscription closed"))
	}
}

// ForgetNamespace drops the cached handles of a namespace, so that the
// next use opens it again by name (after someone deleted and the watcher
// re-created it).
func (h *NetlinkHost) ForgetNamespace(name string) {
	if name == "" {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.dropLocked(name)
}

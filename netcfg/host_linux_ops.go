//go:build linux

package netcfg

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"tunnel-agent/internal/nsutil"
)

// NamespaceExists reports whether /run/netns/<name> is a namespace.
func (h *NetlinkHost) NamespaceExists(name string) (bool, error) {
	ns, err := netns.GetFromName(name)
	if err != nil {
		if errors.Is(mapErr(err), ErrNotFound) {
			return false, nil
		}
		return false, fmt.Errorf("look up namespace %s: %w", name, err)
	}
	ns.Close()
	return true, nil
}

// CreateNamespace creates the named namespace (its lo is brought up by a
// separate Link entry of the plan, so that revert restores it too).
func (h *NetlinkHost) CreateNamespace(name string) error {
	if ok, _ := h.NamespaceExists(name); ok {
		return fmt.Errorf("namespace %s: %w", name, ErrExists)
	}
	ns, err := nsutil.NewNamed(name)
	if err != nil {
		return err
	}
	ns.Close()
	return nil
}

// DeleteNamespace removes the named namespace (its links go with it).
func (h *NetlinkHost) DeleteNamespace(name string) error {
	h.mu.Lock()
	h.dropLocked(name)
	h.mu.Unlock()
	return mapErr(netns.DeleteNamed(name))
}

// Links lists the links of a namespace: type, MTU and admin state.
func (h *NetlinkHost) Links(ns string) ([]LinkInfo, error) {
	x, err := h.handles(ns)
	if err != nil {
		return nil, err
	}
	ls, err := x.linkList(ns)
	if err != nil {
		return nil, err
	}
	out := make([]LinkInfo, len(ls))
	for i, l := range ls {
		a := l.Attrs()
		out[i] = LinkInfo{Name: a.Name, Type: l.Type(), MTU: a.MTU, Up: a.RawFlags&unix.IFF_UP != 0}
	}
	return out, nil
}

func (x *nsHandles) linkList(ns string) (ls []netlink.Link, err error) {
	err = listAll("links"+where(ns), func() (err error) { ls, err = x.nl.LinkList(); return err })
	return ls, err
}

// linkNames maps the interface indexes of a namespace to names.
func (x *nsHandles) linkNames(ns string) (map[int]string, error) {
	ls, err := x.linkList(ns)
	if err != nil {
		return nil, err
	}
	names := make(map[int]string, len(ls))
	for _, l := range ls {
		names[l.Attrs().Index] = l.Attrs().Name
	}
	return names, nil
}

// AddVeth creates a veth pair with the peer end directly in peerNS.
func (h *NetlinkHost) AddVeth(name, peer, peerNS string) error {
	self, err := h.handles("")
	if err != nil {
		return err
	}
	v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name}, PeerName: peer}
	if peerNS != "" {
		px, err := h.handles(peerNS)
		if err != nil {
			return err
		}
		v.PeerNamespace = netlink.NsFd(int(px.ns))
	}
	return mapErr(self.nl.LinkAdd(v))
}

// DeleteLink deletes a link (for a veth, both ends).
func (h *NetlinkHost) DeleteLink(ns, name string) error {
	l, x, err := h.link(ns, name)
	if err != nil {
		return err
	}
	return mapErr(x.nl.LinkDel(l))
}

// SetMTU sets a link's MTU.
func (h *NetlinkHost) SetMTU(ns, name string, mtu int) error {
	l, x, err := h.link(ns, name)
	if err != nil {
		return err
	}
	return mapErr(x.nl.LinkSetMTU(l, mtu))
}

// SetUp sets a link administratively up or down.
func (h *NetlinkHost) SetUp(ns, name string, up bool) error {
	l, x, err := h.link(ns, name)
	if err != nil {
		return err
	}
	if up {
		return mapErr(x.nl.LinkSetUp(l))
	}
	return mapErr(x.nl.LinkSetDown(l))
}

// Features reads a link's ethtool features.
func (h *NetlinkHost) Features(ns, name string) (map[string]FeatureInfo, error) {
	if _, _, err := h.link(ns, name); err != nil {
		return nil, err
	}
	et, err := h.ethtoolIn(ns)
	if err != nil {
		return nil, err
	}
	st, err := et.Features(name)
	if err != nil {
		return nil, fmt.Errorf("read features of %s: %w", name, mapErr(err))
	}
	out := make(map[string]FeatureInfo, len(st))
	for k, s := range st {
		out[k] = FeatureInfo{Requested: s.Requested, Active: s.Active, Fixed: !s.Available}
	}
	return out, nil
}

// SetFeatures requests the given kernel feature values.
func (h *NetlinkHost) SetFeatures(ns, name string, f map[string]bool) error {
	if _, _, err := h.link(ns, name); err != nil {
		return err
	}
	et, err := h.ethtoolIn(ns)
	if err != nil {
		return err
	}
	return mapErr(et.Change(name, f))
}

// Addrs lists the addresses of every link of a namespace.
func (h *NetlinkHost) Addrs(ns string) (map[string][]netip.Prefix, error) {
	x, err := h.handles(ns)
	if err != nil {
		return nil, err
	}
	names, err := x.linkNames(ns)
	if err != nil {
		return nil, err
	}
	var addrs []netlink.Addr
	if err := listAll("addresses"+where(ns), func() (err error) {
		addrs, err = x.nl.AddrList(nil, netlink.FAMILY_ALL)
		return err
	}); err != nil {
		return nil, err
	}
	out := map[string][]netip.Prefix{}
	for _, a := range addrs {
		ip, ok := netip.AddrFromSlice(a.IP)
		name := names[a.LinkIndex]
		if !ok || name == "" || a.IPNet == nil {
			continue
		}
		ones, _ := a.Mask.Size()
		out[name] = append(out[name], netip.PrefixFrom(ip.Unmap(), ones))
	}
	return out, nil
}

// AddAddr adds an address to a link. An IPv6 address is added without
// duplicate address detection (IFA_F_NODAD): the links netcfg addresses
// are the veth pairs it creates, whose two ends validation has given
// different addresses, and DAD would only leave the address "tentative",
// unusable as a source, for the first second or two after `up`.
func (h *NetlinkHost) AddAddr(ns, link string, p netip.Prefix) error {
	l, x, err := h.link(ns, link)
	if err != nil {
		return err
	}
	a := &netlink.Addr{IPNet: ipNet(p)}
	if p.Addr().Is6() {
		a.Flags = unix.IFA_F_NODAD
	}
	return mapErr(x.nl.AddrAdd(l, a))
}

// DelAddr removes an address from a link.
func (h *NetlinkHost) DelAddr(ns, link string, p netip.Prefix) error {
	l, x, err := h.link(ns, link)
	if err != nil {
		return err
	}
	return mapErr(x.nl.AddrDel(l, &netlink.Addr{IPNet: ipNet(p)}))
}

//go:build linux

package netcfg

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Route returns the main-table route to exactly dst with metric 0.
func (h *NetlinkHost) Route(ns string, dst netip.Prefix) (RouteSpec, error) {
	x, err := h.handles(ns)
	if err != nil {
		return RouteSpec{}, err
	}
	filter := &netlink.Route{Table: unix.RT_TABLE_MAIN, Dst: ipNet(dst)}
	rs, err := x.nl.RouteListFiltered(family(dst.Addr()), filter, netlink.RT_FILTER_TABLE|netlink.RT_FILTER_DST)
	if err != nil {
		return RouteSpec{}, fmt.Errorf("list routes to %s: %w", dst, err)
	}
	for _, r := range rs {
		if r.Priority == 0 {
			return x.specOf(r, dst), nil
		}
	}
	return RouteSpec{}, fmt.Errorf("route to %s%s: %w", dst, where(ns), ErrNotFound)
}

func (x *nsHandles) specOf(r netlink.Route, dst netip.Prefix) RouteSpec {
	s := RouteSpec{Dst: dst, Type: r.Type, Protocol: int(r.Protocol), Scope: int(r.Scope)}
	s.Gw, _ = netip.AddrFromSlice(r.Gw)
	s.Gw = s.Gw.Unmap()
	s.Src, _ = netip.AddrFromSlice(r.Src)
	s.Src = s.Src.Unmap()
	if r.LinkIndex > 0 {
		if l, err := x.nl.LinkByIndex(r.LinkIndex); err == nil {
			s.Dev = l.Attrs().Name
		}
	}
	return s
}

// ReplaceRoute adds the route, replacing one to the same destination.
func (h *NetlinkHost) ReplaceRoute(ns string, s RouteSpec) error {
	x, err := h.handles(ns)
	if err != nil {
		return err
	}
	r, err := x.route(s)
	if err != nil {
		return err
	}
	return mapErr(x.nl.RouteReplace(r))
}

// DelRoute deletes the route if it is still ours (same type and protocol).
func (h *NetlinkHost) DelRoute(ns string, s RouteSpec) error {
	x, err := h.handles(ns)
	if err != nil {
		return err
	}
	r, err := x.route(s)
	if err != nil {
		return err
	}
	return mapErr(x.nl.RouteDel(r))
}

func (x *nsHandles) route(s RouteSpec) (*netlink.Route, error) {
	r := &netlink.Route{
		Dst: ipNet(s.Dst), Table: unix.RT_TABLE_MAIN, Type: s.Type,
		Protocol: netlink.RouteProtocol(s.Protocol), Scope: netlink.Scope(s.Scope),
	}
	if s.Gw.IsValid() {
		r.Gw = net.IP(s.Gw.AsSlice())
	}
	if s.Src.IsValid() {
		r.Src = net.IP(s.Src.AsSlice())
	}
	if s.Dev != "" {
		l, err := x.nl.LinkByName(s.Dev)
		if err != nil {
			return nil, fmt.Errorf("link %s: %w", s.Dev, mapErr(err))
		}
		r.LinkIndex = l.Attrs().Index
	}
	return r, nil
}

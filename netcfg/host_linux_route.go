//go:build linux

package netcfg

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Routes lists the main-table routes of one family of a namespace, with
// the metric (priority) the kernel reports: one dump of the table.
func (h *NetlinkHost) Routes(ns string, ipv6 bool) ([]RouteSpec, error) {
	x, err := h.handles(ns)
	if err != nil {
		return nil, err
	}
	names, err := x.linkNames(ns)
	if err != nil {
		return nil, err
	}
	fam := netlink.FAMILY_V4
	if ipv6 {
		fam = netlink.FAMILY_V6
	}
	var out []RouteSpec
	err = listAll("routes"+where(ns), func() error {
		out = out[:0]
		return x.nl.RouteListFilteredIter(fam, &netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE,
			func(r netlink.Route) bool {
				out = append(out, specOf(r, fam, names))
				return true
			})
	})
	return out, err
}

// specOf turns a route of family fam as netlink reports it into a
// RouteSpec (a default route comes without Dst).
func specOf(r netlink.Route, fam int, names map[int]string) RouteSpec {
	var dst netip.Prefix
	if r.Dst != nil {
		ip, _ := netip.AddrFromSlice(r.Dst.IP)
		ones, _ := r.Dst.Mask.Size()
		dst = netip.PrefixFrom(ip.Unmap(), ones)
	} else if fam == netlink.FAMILY_V4 {
		dst = netip.PrefixFrom(netip.IPv4Unspecified(), 0)
	} else {
		dst = netip.PrefixFrom(netip.IPv6Unspecified(), 0)
	}
	s := RouteSpec{Dst: dst, Type: r.Type, Protocol: int(r.Protocol), Scope: int(r.Scope), Metric: r.Priority, Dev: names[r.LinkIndex]}
	s.Gw, _ = netip.AddrFromSlice(r.Gw)
	s.Gw = s.Gw.Unmap()
	s.Src, _ = netip.AddrFromSlice(r.Src)
	s.Src = s.Src.Unmap()
	return s
}

// AddRoute adds the route; a route with the same destination and metric
// makes it fail with ErrExists (NLM_F_EXCL): nothing is replaced.
func (h *NetlinkHost) AddRoute(ns string, s RouteSpec) error {
	return h.routeDo(ns, s, (*netlink.Handle).RouteAdd)
}

// ReplaceRoute adds the route, replacing the one with the same
// destination and metric.
func (h *NetlinkHost) ReplaceRoute(ns string, s RouteSpec) error {
	return h.routeDo(ns, s, (*netlink.Handle).RouteReplace)
}

// DelRoute deletes the route with the spec's destination, metric, type
// and protocol (the kernel also matches the gateway, device and source
// when they are given).
func (h *NetlinkHost) DelRoute(ns string, s RouteSpec) error {
	return h.routeDo(ns, s, (*netlink.Handle).RouteDel)
}

// routeDo runs one route request for s in namespace ns.
func (h *NetlinkHost) routeDo(ns string, s RouteSpec, do func(*netlink.Handle, *netlink.Route) error) error {
	x, err := h.handles(ns)
	if err != nil {
		return err
	}
	r, err := x.route(s)
	if err != nil {
		return err
	}
	return mapErr(do(x.nl, r))
}

func (x *nsHandles) route(s RouteSpec) (*netlink.Route, error) {
	r := &netlink.Route{
		Dst: ipNet(s.Dst), Table: unix.RT_TABLE_MAIN, Type: s.Type, Priority: s.Metric,
		Protocol: netlink.RouteProtocol(s.Protocol), Scope: netlink.Scope(s.Scope),
	}
	if s.Gw.IsValid() {
		r.Gw = net.IP(s.Gw.AsSlice())
	}
	if s.Src.IsValid() {
		r.Src = net.IP(s.Src.AsSlice())
	}
	if s.Dev != "" && s.Type == RouteUnicast {
		l, err := x.nl.LinkByName(s.Dev)
		if err != nil {
			return nil, fmt.Errorf("link %s: %w", s.Dev, mapErr(err))
		}
		r.LinkIndex = l.Attrs().Index
	}
	return r, nil
}

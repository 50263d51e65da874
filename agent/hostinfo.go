package agent

import (
	"errors"
	"io/fs"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"tunnel-agent/agent/config"
	"tunnel-agent/netcfg"
)

// The host side of config.HostInfo: addresses and default routes
// read through netlink, journals read from the state directory.

// Addrs lists every address in the agent's namespace with its interface.
func (hostLinks) Addrs() ([]config.HostAddr, error) {
	links, err := netlink.LinkList()
	if err != nil {
		return nil, err
	}
	names := map[int]string{}
	for _, l := range links {
		names[l.Attrs().Index] = l.Attrs().Name
	}
	addrs, err := netlink.AddrList(nil, netlink.FAMILY_ALL)
	if err != nil {
		return nil, err
	}
	var out []config.HostAddr
	for _, a := range addrs {
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok || a.IPNet == nil {
			continue
		}
		ones, _ := a.Mask.Size()
		out = append(out, config.HostAddr{Link: names[a.LinkIndex], Prefix: netip.PrefixFrom(ip.Unmap(), ones)})
	}
	return out, nil
}

// DefaultRoutes lists the main table's default routes.
func (hostLinks) DefaultRoutes() ([]config.HostRoute, error) {
	var out []config.HostRoute
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		rs, err := netlink.RouteListFiltered(fam, &netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
		if err != nil {
			return nil, err
		}
		for _, r := range rs {
			if r.Dst != nil {
				if ones, _ := r.Dst.Mask.Size(); ones != 0 {
					continue
				}
			}
			hr := config.HostRoute{Dst: netip.PrefixFrom(netip.IPv4Unspecified(), 0)}
			if fam == netlink.FAMILY_V6 {
				hr.Dst = netip.PrefixFrom(netip.IPv6Unspecified(), 0)
			}
			if gw, ok := netip.AddrFromSlice(r.Gw); ok {
				hr.Gw = gw.Unmap()
			}
			if l, err := netlink.LinkByIndex(r.LinkIndex); err == nil {
				hr.Dev = l.Attrs().Name
			}
			out = append(out, hr)
		}
	}
	return out, nil
}

// OtherSites reads every journal in the state directory but site's own
// (a missing directory holds none) and returns what each claims. A
// state directory this user may not read (a `check` without root) is
// skipped with a note: `up` runs as root and checks again.
func (h hostLinks) OtherSites(site string) ([]config.SiteClaims, error) {
	if h.stateDir == "" {
		return nil, nil
	}
	if err := h.stateDir.check(); err != nil {
		return nil, err
	}
	files, err := h.stateDir.otherJournals(site)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, nil
	case errors.Is(err, fs.ErrPermission):
		if h.log != nil {
			h.log.Warn("cannot read the state directory; the sites running on this host are not checked against this one (`up` checks them)",
				"dir", h.stateDir, "err", err)
		}
		return nil, nil
	case err != nil:
		return nil, err
	}
	here, err := netcfg.SelfNetNS()
	if err != nil {
		return nil, err
	}
	var out []config.SiteClaims
	for _, f := range files {
		j, err := netcfg.LoadJournal(f.path)
		switch {
		case j == nil && err == nil:
			continue // removed meanwhile
		case err != nil:
			out = append(out, config.SiteClaims{Site: f.site, Journal: f.path, Err: err})
		default:
			out = append(out, journalClaims(f.path, j, j.NetNS != nil && !j.NetNS.Same(here)))
		}
	}
	return out, nil
}

// journalClaims lists what a journal's entries claim; unchanged entries
// count (the other site relies on them). Of a journal made in another
// network namespace (elsewhere), only the named namespaces count: its
// interfaces and routes are not in this one.
func journalClaims(path string, j *netcfg.Journal, elsewhere bool) config.SiteClaims {
	c := config.SiteClaims{Site: j.Site, Journal: path}
	for _, e := range j.Entries {
		for _, ns := range []string{e.NS, e.PeerNS} {
			if ns != "" {
				c.Namespaces = append(c.Namespaces, ns)
			}
		}
		if e.NS != "" || elsewhere {
			continue
		}
		if e.Link != "" {
			c.Links = append(c.Links, e.Link)
		}
		if e.Kind == netcfg.KindVeth && e.PeerNS == "" && e.Peer != "" {
			c.Links = append(c.Links, e.Peer)
		}
		if e.Kind == netcfg.KindAddr {
			c.Addrs = append(c.Addrs, config.HostAddr{Link: e.Link, Prefix: e.Prefix})
		}
		if e.Kind == netcfg.KindRoute && e.Route != nil {
			c.Routes = append(c.Routes, e.Route.Dst.Masked())
		}
	}
	return c
}

package agent

import (
	"errors"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"tunnel-agent/netcfg"
)

// The host side of HostInfo (config.go): addresses and default routes
// read through netlink, journals read from the state directory.

// Addrs lists every address in the agent's namespace with its interface.
func (hostLinks) Addrs() ([]HostAddr, error) {
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
	var out []HostAddr
	for _, a := range addrs {
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok || a.IPNet == nil {
			continue
		}
		ones, _ := a.Mask.Size()
		out = append(out, HostAddr{Link: names[a.LinkIndex], Prefix: netip.PrefixFrom(ip.Unmap(), ones)})
	}
	return out, nil
}

// DefaultRoutes lists the main table's default routes.
func (hostLinks) DefaultRoutes() ([]HostRoute, error) {
	var out []HostRoute
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
			hr := HostRoute{Dst: netip.PrefixFrom(netip.IPv4Unspecified(), 0)}
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

// Journals reads every <site>.json in the state directory (a missing
// directory holds none). A state directory this user may not read (a
// `check` without root) is skipped with a note: `up` runs as root and
// checks again.
func (h hostLinks) Journals() ([]SiteJournal, error) {
	if h.stateDir == "" {
		return nil, nil
	}
	if err := checkStateDir(h.stateDir); err != nil {
		return nil, err
	}
	ents, err := os.ReadDir(h.stateDir)
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
	var out []SiteJournal
	for _, e := range ents {
		name := e.Name()
		if strings.HasPrefix(name, ".") || !strings.HasSuffix(name, ".json") {
			continue
		}
		p := filepath.Join(h.stateDir, name)
		j, err := netcfg.LoadJournal(p)
		if j == nil && err == nil {
			continue // removed meanwhile
		}
		elsewhere := j != nil && j.NetNS != nil && !j.NetNS.Same(here)
		out = append(out, SiteJournal{Path: p, Journal: j, Err: err, Elsewhere: elsewhere})
	}
	return out, nil
}

package topo

import (
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// With Options.IPv6 the namespaces keep IPv6 on (and the gateways forward
// it), and the links get IPv6 addresses next to their IPv4 ones: the
// client's LAN fd00:111::/64, site B's fd00:11::/64 (made by the agent from
// its configuration), and without NAT the WAN link 2001:2::/64, from the
// IPv6 benchmarking range (RFC 5180) as 198.18.0.0/15 is for IPv4. The
// NAT of the NAT topology is IPv4 only, so there the WAN stays IPv4.
var (
	ClientAddr6       = netip.MustParsePrefix("fd00:111::2/64")
	GatewayALANAddr6  = netip.MustParsePrefix("fd00:111::1/64")
	GatewayADirect6   = netip.MustParsePrefix("2001:2::3/64")
	GatewayBWANAddr6  = netip.MustParsePrefix("2001:2::2/64")
	SiteBGatewayAddr6 = netip.MustParsePrefix("fd00:11::1/64")
	SiteBHostAddr6    = netip.MustParsePrefix("fd00:11::100/64")
)

// ipv6Sysctls are the per-namespace IPv6 settings: off by default, on
// (and forwarding on the gateways) with Options.IPv6.
func ipv6Sysctls(on, router bool) []sysctl {
	if !on {
		return []sysctl{
			{"net/ipv6/conf/all/disable_ipv6", "1", true},
			{"net/ipv6/conf/default/disable_ipv6", "1", true},
		}
	}
	kv := []sysctl{
		{"net/ipv6/conf/all/disable_ipv6", "0", false},
		{"net/ipv6/conf/default/disable_ipv6", "0", false},
		// No router solicitations or autoconfigured addresses: only the
		// addresses below, so that dumps and captures stay predictable.
		{"net/ipv6/conf/default/accept_ra", "0", false},
		{"net/ipv6/conf/default/autoconf", "0", false},
		// No duplicate address detection: link-local addresses are final
		// as soon as a link is up, so a dump taken right after Build does
		// not miss them.
		{"net/ipv6/conf/all/accept_dad", "0", false},
		{"net/ipv6/conf/default/accept_dad", "0", false},
	}
	if router {
		kv = append(kv, sysctl{"net/ipv6/conf/all/forwarding", "1", false})
	}
	return kv
}

// fillIPv6 sets the IPv6 fields of the topology.
func (t *Topology) fillIPv6(o Options) {
	if !o.IPv6 {
		return
	}
	t.IPv6 = true
	t.ClientAddr6, t.GatewayALAN6 = ClientAddr6, GatewayALANAddr6
	t.SiteALAN6 = ClientAddr6.Masked()
	t.SiteBGateway6, t.SiteBHost6, t.SiteBLAN6 = SiteBGatewayAddr6, SiteBHostAddr6, SiteBHostAddr6.Masked()
	if !o.NAT {
		t.GatewayAWAN6, t.GatewayBWAN6 = GatewayADirect6, GatewayBWANAddr6
	}
}

// buildIPv6 adds the IPv6 addresses and the client's IPv6 default route.
func (t *Topology) buildIPv6() error {
	if !t.IPv6 {
		return nil
	}
	type addr struct {
		ns, link string
		p        netip.Prefix
	}
	addrs := []addr{{t.Client, ClientLink, t.ClientAddr6}, {t.GatewayA, GatewayALANLink, t.GatewayALAN6}}
	if t.GatewayAWAN6.IsValid() {
		addrs = append(addrs, addr{t.GatewayA, GatewayAWANLink, t.GatewayAWAN6}, addr{t.GatewayB, GatewayBWANLink, t.GatewayBWAN6})
	}
	for _, a := range addrs {
		if err := addAddr6(t.nss[a.ns], a.link, a.p); err != nil {
			return err
		}
	}
	s := t.nss[t.Client]
	r := &netlink.Route{Dst: &net.IPNet{IP: net.IPv6zero, Mask: net.CIDRMask(0, 128)}, Gw: t.GatewayALAN6.Addr().AsSlice()}
	if err := s.nl.RouteAdd(r); err != nil {
		return fmt.Errorf("IPv6 default route via %s in %s: %w", t.GatewayALAN6.Addr(), s.name, err)
	}
	return t.waitIPv6Settled(t.Namespaces()...)
}

// addAddr6 adds an IPv6 address without duplicate address detection, so
// that it is usable at once.
func addAddr6(s *nsState, link string, p netip.Prefix) error {
	l, err := s.nl.LinkByName(link)
	if err != nil {
		return fmt.Errorf("link %s/%s: %w", s.name, link, err)
	}
	a := &netlink.Addr{IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), 128)}, Flags: unix.IFA_F_NODAD}
	if err := s.nl.AddrAdd(l, a); err != nil {
		return fmt.Errorf("add address %s to %s/%s: %w", p, s.name, link, err)
	}
	return nil
}

// ipv6SettleTimeout bounds waitIPv6Settled.
const ipv6SettleTimeout = 5 * time.Second

// waitIPv6Settled waits until the kernel has finished bringing up IPv6 in
// the named namespaces: every link that is up has a link-local address,
// and every IPv6 address is no longer tentative and has its local route.
// The kernel does this work asynchronously after a link comes up (even
// without DAD), and a host dump taken before it ends would miss routes
// that appear later.
func (t *Topology) waitIPv6Settled(names ...string) error {
	deadline := time.Now().Add(ipv6SettleTimeout)
	for _, name := range names {
		for !ipv6Settled(t.nss[name].nl) {
			if time.Now().After(deadline) {
				return fmt.Errorf("IPv6 in %s not settled after %v", name, ipv6SettleTimeout)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	return nil
}

// ipv6Settled checks the namespace of nl once; see waitIPv6Settled.
func ipv6Settled(nl *netlink.Handle) bool {
	links, err := nl.LinkList()
	if err != nil {
		return false
	}
	local, err := nl.RouteListFiltered(netlink.FAMILY_V6, &netlink.Route{Table: unix.RT_TABLE_LOCAL}, netlink.RT_FILTER_TABLE)
	if err != nil {
		return false
	}
	routes := map[string]bool{}
	for _, r := range local {
		if r.Dst != nil {
			routes[r.Dst.IP.String()] = true
		}
	}
	for _, l := range links {
		if !linkSettled(nl, l, routes) {
			return false
		}
	}
	return true
}

// linkSettled checks one link: see waitIPv6Settled.
func linkSettled(nl *netlink.Handle, l netlink.Link, routes map[string]bool) bool {
	if l.Attrs().Flags&net.FlagUp == 0 || l.Attrs().OperState != netlink.OperUp && l.Type() != "device" {
		return true // down, or no carrier yet: nothing is configured
	}
	addrs, err := nl.AddrList(l, netlink.FAMILY_V6)
	if err != nil {
		return false
	}
	linkLocal := l.Attrs().Flags&net.FlagLoopback != 0
	for _, a := range addrs {
		if a.Flags&unix.IFA_F_TENTATIVE != 0 || !routes[a.IP.String()] {
			return false
		}
		linkLocal = linkLocal || a.IP.IsLinkLocalUnicast()
	}
	return linkLocal
}

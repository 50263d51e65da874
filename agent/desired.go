package agent

import (
	"net/netip"

	"tunnel-agent/agent/config"
	"tunnel-agent/netcfg"
)

// Desired maps a site configuration onto the host state netcfg applies:
// the tutorial's namespace, veth pair, addresses, MTUs and offloads, the
// namespace's default route, the LAN interface's MTU and offloads, and
// the blackhole routes for the remote prefixes.
func Desired(c *config.Config) netcfg.Desired {
	var d netcfg.Desired
	lanDone := false
	for _, ns := range c.Namespaces {
		d.Namespaces = append(d.Namespaces, ns.Name)
		d.Veths = append(d.Veths, netcfg.Veth{Name: ns.Veth.Host, Peer: ns.Veth.Peer, PeerNS: ns.Name})
		peerAddrs, hostAddrs := ns.Addrs()
		host := netcfg.Link{Name: ns.Veth.Host, MTU: ns.Veth.MTU, Features: features(ns.Veth.Offloads),
			Addrs: hostAddrs, Up: true}
		if ns.Veth.Host == c.LAN.Interface {
			host = mergeLAN(host, c.LAN)
			lanDone = true
		}
		peer := netcfg.Link{NS: ns.Name, Name: ns.Veth.Peer, MTU: ns.Veth.MTU, Features: features(ns.Veth.Offloads),
			Addrs: peerAddrs, Up: true}
		d.Links = append(d.Links, host, peer, netcfg.Link{NS: ns.Name, Name: "lo", Up: true})
		for _, gw := range []netip.Addr{ns.Gateway, ns.Gateway6} {
			if gw.IsValid() {
				d.Routes = append(d.Routes, netcfg.Route{NS: ns.Name, Dst: defaultRoute(gw), Gw: gw})
			}
		}
	}
	if !lanDone && (c.LAN.MTU > 0 || len(c.LAN.Offloads) > 0) {
		d.Links = append(d.Links, netcfg.Link{Name: c.LAN.Interface, MTU: c.LAN.MTU, Features: features(c.LAN.Offloads)})
	}
	for _, p := range c.Tunnel.Blackhole {
		d.Routes = append(d.Routes, netcfg.Route{Dst: p, Blackhole: true})
	}
	return d
}

// mergeLAN folds lan.mtu and lan.offloads into the veth end that is also
// the LAN interface (validation has rejected conflicting MTUs).
func mergeLAN(l netcfg.Link, lan config.LAN) netcfg.Link {
	if lan.MTU > 0 {
		l.MTU = lan.MTU
	}
	l.Features = append(l.Features, features(lan.Offloads)...)
	return l
}

func features(o config.Offloads) []netcfg.Feature {
	var out []netcfg.Feature
	for _, f := range o {
		out = append(out, netcfg.Feature{Name: f.Name, On: f.On})
	}
	return out
}

// defaultRoute is 0.0.0.0/0 or ::/0, in the gateway's family.
func defaultRoute(gw netip.Addr) netip.Prefix {
	if gw.Is4() {
		return netip.PrefixFrom(netip.IPv4Unspecified(), 0)
	}
	return netip.PrefixFrom(netip.IPv6Unspecified(), 0)
}

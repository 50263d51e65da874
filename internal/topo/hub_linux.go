package topo

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
)

// A hub topology: one hub (the VPS) and Sites sites, each a gateway with
// a LAN host, for hub-and-spoke tests and benchmarks. Namespaces are
// Prefix+"-hub", and per site i (1-based) Prefix+"-g<i>" (gateway) and
// Prefix+"-h<i>" (LAN host):
//
//	site i host  eth0 10.1.i.2/24 -- lan0 10.1.i.1/24  gateway i
//	                                 wan0 198.19.i.2/24 -- s<i> 198.19.i.1/24  hub (lo: 198.18.0.1/32)
//	                          (IPv6 sites: wan0 2001:2:0:i::2/64 -- s<i> 2001:2:0:i::1/64)
//
// Every site reaches the hub at HubAddr, or at its own link's hub end
// (HubSite.HubEnd), through its default route via 198.19.i.1. The first
// IPv6Sites sites also have IPv6 on their WAN link (from the IPv6
// benchmarking range) and an IPv6 default route via the hub's end
// (HubSite.HubEnd6), so that a hub listening on [::] serves IPv4 and IPv6
// sites at once; the LANs stay IPv4. The hub's LAN (HubLANNS, 10.99.0.0/24) is created by the
// hub's agent from its configuration, like site B's namespace in the
// two-site topology, and removed by Close if the agent left it. IPv6 is
// disabled, the links' checksum offloads are off, the LAN links have MTU
// LANMTU.

// HubOptions says what BuildHub creates.
type HubOptions struct {
	Prefix string // as Options.Prefix
	Sites  int    // 1..250
	LANMTU int    // 0 = DefaultLANMTU
	// IPv6Sites is how many sites (the first ones) also get IPv6 on
	// their WAN link.
	IPv6Sites int
}

// Hub is a built hub topology; Close (of the embedded Topology) removes it.
type Hub struct {
	*Topology
	HubNS    string
	HubLANNS string     // made by the hub's agent
	HubAddr  netip.Addr // the hub's public address, 198.18.0.1
	// HubLANGateway and HubLANHost are the addresses for the hub's
	// namespace section (10.99.0.1/24 and 10.99.0.100/24).
	HubLANGateway, HubLANHost netip.Prefix
	Sites                     []HubSite
}

// HubSite is one site of a hub topology.
type HubSite struct {
	Gateway, Host string       // namespace names
	WAN           netip.Prefix // gateway wan0, 198.19.i.2/24
	LANGateway    netip.Prefix // gateway lan0, 10.1.i.1/24
	HostAddr      netip.Prefix // host eth0, 10.1.i.2/24
	HubEnd        netip.Prefix // the hub's end of the WAN link, 198.19.i.1/24
	// WAN6 and HubEnd6 are the IPv6 addresses of the WAN link's ends
	// (2001:2:0:i::2/64, ::1/64) of an IPv6 site; invalid otherwise.
	WAN6, HubEnd6 netip.Prefix
}

// BuildHub creates the hub topology; on error it removes what it made.
func BuildHub(o HubOptions) (_ *Hub, err error) {
	if err := validPrefix(o.Prefix); err != nil {
		return nil, err
	}
	if o.Sites < 1 || o.Sites > 250 || o.IPv6Sites < 0 || o.IPv6Sites > o.Sites {
		return nil, fmt.Errorf("topology: %d sites (%d over IPv6) out of range (1..250)", o.Sites, o.IPv6Sites)
	}
	if o.LANMTU == 0 {
		o.LANMTU = DefaultLANMTU
	}
	h := &Hub{
		Topology: &Topology{Prefix: o.Prefix, LANMTU: o.LANMTU, SiteBNS: o.Prefix + "-hl", nss: map[string]*nsState{}},
		HubNS:    o.Prefix + "-hub", HubLANNS: o.Prefix + "-hl", HubAddr: netip.MustParseAddr("198.18.0.1"),
		HubLANGateway: netip.MustParsePrefix("10.99.0.1/24"), HubLANHost: netip.MustParsePrefix("10.99.0.100/24"),
	}
	for i := 1; i <= o.Sites; i++ {
		s := HubSite{
			Gateway: fmt.Sprintf("%s-g%d", o.Prefix, i), Host: fmt.Sprintf("%s-h%d", o.Prefix, i),
			WAN:        netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 19, byte(i), 2}), 24),
			LANGateway: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 1, byte(i), 1}), 24),
			HostAddr:   netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 1, byte(i), 2}), 24),
			HubEnd:     netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 19, byte(i), 1}), 24),
		}
		if i <= o.IPv6Sites {
			s.WAN6 = netip.PrefixFrom(netip.AddrFrom16([16]byte{0x20, 0x01, 0, 2, 0, 0, 0, byte(i), 15: 2}), 64)
			s.HubEnd6 = netip.PrefixFrom(netip.AddrFrom16([16]byte{0x20, 0x01, 0, 2, 0, 0, 0, byte(i), 15: 1}), 64)
		}
		h.Sites = append(h.Sites, s)
	}
	defer func() {
		if err != nil {
			if cerr := h.Close(); cerr != nil {
				err = fmt.Errorf("%w (and cleaning up: %v)", err, cerr)
			}
		}
	}()
	if err := h.build(); err != nil {
		return nil, fmt.Errorf("hub topology %s: %w", o.Prefix, err)
	}
	return h, nil
}

func (h *Hub) build() error {
	if err := h.newRouterNS(h.HubNS, true, h.Sites[0].WAN6.IsValid()); err != nil {
		return err
	}
	hub := h.nss[h.HubNS]
	if err := addHostAddr(hub, "lo", h.HubAddr); err != nil {
		return err
	}
	var v6 []string
	for i, s := range h.Sites {
		if err := h.buildSite(hub, i+1, s); err != nil {
			return err
		}
		if s.WAN6.IsValid() {
			v6 = append(v6, s.Gateway)
		}
	}
	if len(v6) > 0 {
		return h.waitIPv6Settled(append(v6, h.HubNS)...)
	}
	return nil
}

// buildSite creates site i's gateway and host and links them.
func (h *Hub) buildSite(hub *nsState, i int, s HubSite) error {
	if err := h.newRouterNS(s.Gateway, true, s.WAN6.IsValid()); err != nil {
		return err
	}
	if err := h.newRouterNS(s.Host, false, false); err != nil {
		return err
	}
	gw, host := h.nss[s.Gateway], h.nss[s.Host]
	hubEnd := s.HubEnd
	hubLink := fmt.Sprintf("s%d", i)
	if err := addVeth(hub, hubLink, gw, GatewayAWANLink, WANMTU); err != nil {
		return err
	}
	if err := addVeth(gw, GatewayALANLink, host, ClientLink, h.LANMTU); err != nil {
		return err
	}
	for _, e := range []struct {
		ns   *nsState
		link string
		addr netip.Prefix
	}{{hub, hubLink, hubEnd}, {gw, GatewayAWANLink, s.WAN}, {gw, GatewayALANLink, s.LANGateway}, {host, ClientLink, s.HostAddr}} {
		if err := setupLink(e.ns, e.link, e.addr, false); err != nil {
			return err
		}
	}
	if err := addDefaultRoute(gw, hubEnd.Addr()); err != nil {
		return err
	}
	if err := addSiteIPv6(hub, hubLink, gw, s); err != nil {
		return err
	}
	return addDefaultRoute(host, s.LANGateway.Addr())
}

// addSiteIPv6 gives an IPv6 site's WAN link its addresses and the gateway
// an IPv6 default route via the hub's end.
func addSiteIPv6(hub *nsState, hubLink string, gw *nsState, s HubSite) error {
	if !s.WAN6.IsValid() {
		return nil
	}
	if err := addAddr6(hub, hubLink, s.HubEnd6); err != nil {
		return err
	}
	if err := addAddr6(gw, GatewayAWANLink, s.WAN6); err != nil {
		return err
	}
	r := &netlink.Route{Dst: &net.IPNet{IP: net.IPv6zero, Mask: net.CIDRMask(0, 128)}, Gw: s.HubEnd6.Addr().AsSlice()}
	if err := gw.nl.RouteAdd(r); err != nil {
		return fmt.Errorf("IPv6 default route in %s: %w", gw.name, err)
	}
	return nil
}

// newRouterNS creates a namespace with rp_filter off, IPv6 on only with
// ipv6 and, for a router, forwarding on.
func (h *Hub) newRouterNS(name string, router, ipv6 bool) error {
	if err := h.newNS(name); err != nil {
		return err
	}
	kv := append([]sysctl{
		{"net/ipv4/conf/all/rp_filter", "0", false},
		{"net/ipv4/conf/default/rp_filter", "0", false},
	}, ipv6Sysctls(ipv6, router)...)
	if router {
		kv = append(kv, sysctl{"net/ipv4/ip_forward", "1", false})
	}
	if err := writeSysctls(h.nss[name].h, kv); err != nil {
		return fmt.Errorf("sysctls in %s: %w", name, err)
	}
	return nil
}

// addHostAddr adds a /32 to a link.
func addHostAddr(s *nsState, link string, a netip.Addr) error {
	l, err := s.nl.LinkByName(link)
	if err != nil {
		return fmt.Errorf("link %s/%s: %w", s.name, link, err)
	}
	if err := s.nl.AddrAdd(l, &netlink.Addr{IPNet: &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(32, 32)}}); err != nil {
		return fmt.Errorf("add %s to %s/%s: %w", a, s.name, link, err)
	}
	return nil
}

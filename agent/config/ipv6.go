package config

import (
	"fmt"
	"net/netip"
	"strings"
)

// Dual-stack namespaces and hub relaying: the parts of the schema added
// for IPv6 and for hubs (docs/config.md, "namespaces" and "tunnel.relay").
//
// A namespace's address, host_address and gateway are of one family, as
// before; address6, host_address6 and gateway6 optionally add IPv6 to a
// namespace whose primary addresses are IPv4 (or a second IPv6 subnet).

// parseIfacePrefix6 reads an IPv6 interface address with its length.
func parseIfacePrefix6(s string) (netip.Prefix, error) {
	p, err := parseIfacePrefix(s)
	if err == nil && !p.Addr().Is6() {
		return netip.Prefix{}, fmt.Errorf("%s is not an IPv6 address (the field adds IPv6 to the namespace; IPv4 goes in the field without 6)", s)
	}
	return p, err
}

// parseGateway6 reads an IPv6 next hop.
func parseGateway6(s string) (netip.Addr, error) {
	a, err := parseGateway(s)
	if err == nil && (!a.Is6() || a.Is4In6()) {
		return netip.Addr{}, fmt.Errorf("%s is not an IPv6 address", s)
	}
	return a, err
}

// parseBool reads true or false (YAML 1.2's booleans).
func parseBool(s string) (bool, error) {
	switch strings.ToLower(s) {
	case "true":
		return true, nil
	case "false":
		return false, nil
	}
	return false, fmt.Errorf("invalid value %q: want true or false", s)
}

// namespace6 checks the IPv6 companions of a namespace's addresses: both
// ends or neither, one subnet, different addresses, a gateway inside it.
func (v validator) namespace6(path string, ns Namespace) {
	h, a := ns.HostAddress6, ns.Address6
	switch {
	case h.IsValid() != a.IsValid():
		v.ps.addf(path+".address6", nil, "give address6 and host_address6 together (the two ends of the veth), or neither")
	case !h.IsValid():
	case h.Masked() != a.Masked():
		v.ps.addf(path+".address6", nil, "%s is not in the same subnet as host_address6 %s (want both in %s)", a, h, h.Masked())
	case h.Addr() == a.Addr():
		v.ps.addf(path+".address6", nil, "%s is also host_address6; the two ends of the veth need different addresses", a.Addr())
	}
	gw := ns.Gateway6
	switch {
	case !gw.IsValid():
	case !a.IsValid():
		v.ps.addf(path+".gateway6", nil, "gateway6 needs address6 (the namespace has no IPv6 address to reach it from)")
	case !a.Masked().Contains(gw) && !gw.IsLinkLocalUnicast():
		v.ps.addf(path+".gateway6", nil, "%s is not inside address6's subnet %s; the namespace could not reach it", gw, a.Masked())
	case gw == a.Addr():
		v.ps.addf(path+".gateway6", nil, "%s is the namespace's own address; use host_address6 (%s)", gw, h.Addr())
	}
	if ns.Gateway.IsValid() && ns.Gateway6.IsValid() && ns.Gateway.Is6() {
		v.ps.addf(path+".gateway6", nil, "gateway is IPv6 already; a namespace has one IPv6 default route")
	}
	if ns.Veth.MTU != 0 && ns.Veth.MTU < minIPv6MTU && a.IsValid() {
		v.ps.addf(path+".veth.mtu", nil, "MTU %d is below %d, the IPv6 minimum; the kernel would drop address6", ns.Veth.MTU, minIPv6MTU)
	}
}

// Addrs returns the addresses of the namespace end of the veth,
// then those of the host end (primary first, IPv6 companion if any).
func (ns Namespace) Addrs() (peer, host []netip.Prefix) {
	peer, host = []netip.Prefix{ns.Address}, []netip.Prefix{ns.HostAddress}
	if ns.Address6.IsValid() {
		peer, host = append(peer, ns.Address6), append(host, ns.HostAddress6)
	}
	return peer, host
}

// subnetClash6 is subnetClash for address6: namespace i's IPv6 subnet
// must not overlap any earlier namespace's subnets of either field.
func (v validator) subnetClash6(i int) {
	a := v.cfg.Namespaces[i].Address6
	if !a.IsValid() {
		return
	}
	for j, other := range v.cfg.Namespaces[:i] {
		for _, o := range []netip.Prefix{other.Address, other.Address6} {
			if o.IsValid() && a.Masked().Overlaps(o.Masked()) {
				v.ps.addf(fmt.Sprintf("namespaces[%d].address6", i), nil,
					"subnet %s overlaps subnet %s of namespaces[%d] (%q)", a.Masked(), o.Masked(), j, other.Name)
				return
			}
		}
	}
}

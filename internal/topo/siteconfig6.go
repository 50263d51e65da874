package topo

import (
	"fmt"
	"net/netip"
)

// SiteAYAML6 and SiteBYAML6 are SiteAYAML and SiteBYAML for a topology
// built with Options.IPv6: both sites carry IPv4 and IPv6 inside the
// tunnel, site B's namespace gets address6/host_address6/gateway6, and
// with outer6 (only without NAT) the tunnel runs over the IPv6 WAN link,
// both agents listening on [::].
func (t *Topology) SiteAYAML6(site string, outer6 bool) string {
	listen, server := fmt.Sprintf("0.0.0.0:%d", SiteAPort), netip.AddrPortFrom(t.GatewayBWAN.Addr(), SiteBPort)
	if outer6 {
		listen, server = fmt.Sprintf("[::]:%d", SiteAPort), netip.AddrPortFrom(t.GatewayBWAN6.Addr(), SiteBPort)
	}
	return fmt.Sprintf(`# Site A, dual stack inside the tunnel.
site: %s
lan:
  interface: %s
  mtu: %d
tunnel:
  listen: "%s"
  peers:
    - name: server
      endpoint: "%s"
      prefixes: [%s/32, %s/128]
      keepalive: 2s
  blackhole: [%s, %s]
`, site, GatewayALANLink, t.LANMTU, listen, server, t.SiteBHost.Addr(), t.SiteBHost6.Addr(), t.SiteBLAN, t.SiteBLAN6)
}

// SiteBYAML6: see SiteAYAML6.
func (t *Topology) SiteBYAML6(site string, outer6 bool) string {
	listen := fmt.Sprintf("0.0.0.0:%d", SiteBPort)
	if outer6 {
		listen = fmt.Sprintf("[::]:%d", SiteBPort)
	}
	return fmt.Sprintf(`# Site B, dual stack inside the tunnel; the agent builds %[2]s.
site: %[1]s
lan:
  interface: %[3]s
namespaces:
  - name: %[2]s
    veth: {host: %[3]s, peer: %[4]s, mtu: %[5]d, offloads: {rx: off, tx: off}}
    host_address: %[6]s
    address: %[7]s
    gateway: %[8]s
    host_address6: %[9]s
    address6: %[10]s
    gateway6: %[11]s
tunnel:
  listen: "%[12]s"
  peers:
    - name: client  # its endpoint is learned
      prefixes: [%[13]s/32, %[14]s/128]
  blackhole: [192.168.111.0/30, %[14]s/128]
`, site, t.SiteBNS, SiteBGatewayLink, SiteBHostLink, t.LANMTU, t.SiteBGateway, t.SiteBHost,
		t.SiteBGateway.Addr(), t.SiteBGateway6, t.SiteBHost6, t.SiteBGateway6.Addr(), listen,
		t.ClientAddr.Addr(), t.ClientAddr6.Addr())
}

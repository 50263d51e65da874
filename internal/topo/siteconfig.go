package topo

import "fmt"

// SiteA, SiteB and Ports describe the tunnel-agent sites that run on the
// topology's two gateways: the tutorial's client (site A, behind the NAT)
// and server (site B, the VPS that builds ns1 itself).
const (
	SiteAPort = 60000
	SiteBPort = 50000
)

// SiteAYAML is the configuration of site A's agent, on GatewayA: the
// tutorial's client.yaml with the VPS's address moved into 198.18.0.0/15.
func (t *Topology) SiteAYAML(site string) string {
	return fmt.Sprintf(`# Site A: the tutorial's client side (the PC next to the Raspberry Pi), behind NAT.
site: %s
lan:
  interface: %s
  mtu: %d
tunnel:
  listen: 0.0.0.0:%d
  peers:
    - name: server
      endpoint: %s:%d
      prefixes: [%s/32]
      keepalive: 2s
  blackhole: [%s]
`, site, GatewayALANLink, t.LANMTU, SiteAPort, t.GatewayBWAN.Addr(), SiteBPort,
		t.SiteBHost.Addr(), t.SiteBLAN)
}

// SiteBYAML is the configuration of site B's agent, on GatewayB: the
// tutorial's server.yaml; the agent creates the namespace SiteBNS.
func (t *Topology) SiteBYAML(site string) string {
	return fmt.Sprintf(`# Site B: the tutorial's VPS; the agent builds %[2]s behind veth0/veth1.
site: %[1]s
lan:
  interface: %[3]s
namespaces:
  - name: %[2]s
    veth: {host: %[3]s, peer: %[4]s, mtu: %[5]d, offloads: {rx: off, tx: off}}
    host_address: %[6]s
    address: %[7]s
    gateway: %[8]s
tunnel:
  listen: 0.0.0.0:%[9]d
  peers:
    - name: client  # behind NAT: its endpoint is learned
      prefixes: [%[10]s/32]
  blackhole: [192.168.111.0/30]
`, site, t.SiteBNS, SiteBGatewayLink, SiteBHostLink, t.LANMTU, t.SiteBGateway, t.SiteBHost,
		t.SiteBGateway.Addr(), SiteBPort, t.ClientAddr.Addr())
}

// Package topo builds the two-site topology of the PacketCord "UDP tunnel"
// tutorial in named network namespaces, for `tunnel-agent demo`, the
// end-to-end tests and the benchmarks.
//
// With Options.NAT (the tutorial's topology; namespace names are
// Prefix+"-cli", "-gwa", "-nat", "-gwb"):
//
//	Client (Raspberry Pi)    GatewayA (site A, the PC)           NAT (home router)                  GatewayB (the VPS)
//	eth0 192.168.111.2/24 -- lan0 192.168.111.1/24
//	                         wan0 192.168.100.5/24 ------------- in0 192.168.100.1/24
//	                                                             out0 198.18.0.1/24 --------------- eth0 198.18.0.2/24
//	MTU LANMTU on eth0/lan0, 1500 on the WAN links; Client: default via 192.168.111.1; GatewayA: default
//	via 192.168.100.1; NAT: masquerade of 192.168.100.0/24 leaving out0 (nftables table ip topo_nat).
//
// Without Options.NAT, GatewayA's wan0 is 198.18.0.3/24 and is the peer of
// GatewayB's eth0 (198.18.0.2/24) on one link; there is no NAT namespace
// and GatewayA has no default route (so that nothing but the tunnel can
// carry site-to-site traffic).
//
// Site B's host (the tutorial's ns1: veth0 11.11.11.1/24 on GatewayB, veth1
// 11.11.11.100/24 in ns1) is created by GatewayB's agent, not by Build; the
// topology only reserves a name for that namespace (Topology.SiteBNS) and
// exposes the addresses for the callers' configuration files.
//
// In every namespace Build creates: lo is up, reverse-path filtering is off
// (net.ipv4.conf.{all,default,<link>}.rp_filter=0), IPv6 is disabled
// unless Options.IPv6 (this keeps captures free of neighbour discovery;
// with it, see ipv6_linux.go for the IPv6 addresses), and GatewayA, NAT and
// GatewayB forward IPv4 (and IPv6 with Options.IPv6). The rx/tx checksum offloads
// of every veth end are off unless Options.Offloads is set, as the tutorial
// does with `ethtool --offload ... rx off tx off`.
//
// Nothing is created in the caller's own network namespace: every veth pair
// is created inside one new namespace with its peer placed directly in the
// other, and all per-namespace work (sysctls, ethtool, nftables, sockets)
// runs through internal/nsutil on a locked thread. Build prints nothing.
package topo

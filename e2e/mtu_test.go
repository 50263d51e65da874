package e2e

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"tunnel-agent/internal/probe"
	"tunnel-agent/internal/topo"
)

// TestPathMTUDiscovery gives both LAN hosts MTU 1500: a 1500-byte DF
// packet cannot cross a 1500-byte WAN with 28 bytes of encapsulation, so
// the gateway answers "fragmentation needed" with next-hop MTU 1472, and
// TCP between the two hosts completes by path-MTU discovery.
func TestPathMTUDiscovery(t *testing.T) {
	s := newTwoSite(t, topo.Options{NAT: true, LANMTU: 1500})
	s.start(t)
	ns1 := s.siteBHost(t)
	hostB, hostA := s.SiteBHost.Addr(), s.ClientAddr.Addr()
	mustPingEventually(t, "client -> VPS host", s.client(), hostB)

	r, err := probe.PingWith(s.client(), hostB, probe.PingOptions{Count: 1, Size: 1500, DF: true, Timeout: 2 * time.Second})
	if err != nil {
		t.Fatalf("DF ping: %v", err)
	}
	mtu, ok := r.FragNeeded()
	if !ok || mtu != 1500-28 {
		t.Fatalf("1500-byte DF ping: fragmentation needed %v with MTU %d, want MTU %d; errors %v", ok, mtu, 1500-28, r.Errors)
	}
	if drops(t, s, "client", "too_big") == 0 {
		t.Errorf("too_big not counted at the client's gateway")
	}
	tr, err := probe.TCPTransfer(s.client(), ns1, netip.AddrPortFrom(hostB, 5201), 10<<20, 60*time.Second)
	mustTransfer(t, "client (MTU 1500) -> VPS host (MTU 1500)", tr, err)
	tr, err = probe.TCPTransfer(ns1, s.client(), netip.AddrPortFrom(hostA, 5202), 10<<20, 60*time.Second)
	mustTransfer(t, "VPS host (MTU 1500) -> client (MTU 1500)", tr, err)
	s.stopAndCompare(t)
}

// TestFarLANSmallerMTU is issue 12's report: a 1500-MTU host on site A,
// the far LAN at 1420. `ping -M do -s 1444` (1472 bytes: fits the tunnel,
// not the far LAN) gets "fragmentation needed" with MTU 1420 from the far
// gateway's LAN address, through the tunnel (site A routes only the far
// host to the peer, so it admits the error as one about its own packet);
// `ping -M dont -s 1472` (1500 bytes) is fragmented by the far gateway and
// answered; an IPv6 ping of 1472 bytes gets "packet too big" (1420). Both
// gateways count what they did, and nothing fails to inject.
func TestFarLANSmallerMTU(t *testing.T) {
	s := newTwoSite6(t, topo.Options{NAT: true, LANMTU: 1500}, false)
	writeFile(t, s.dir, "server.yaml", strings.Replace(s.SiteBYAML6("server", false), "mtu: 1500,", "mtu: 1420,", 1))
	s.start(t)
	hostB, hostB6 := s.SiteBHost.Addr(), s.SiteBHost6.Addr()
	mustPingEventually(t, "client -> VPS host", s.client(), hostB)

	// First without DF: once the client has learned the path MTU of 1420
	// it would fragment the requests itself.
	r, err := probe.PingWith(s.client(), hostB, probe.PingOptions{Count: 5, Interval: 50 * time.Millisecond, Size: 1500, Timeout: 2 * time.Second})
	mustPing(t, "ping -M dont -s 1472", r, err)
	r, err = probe.PingWith(s.client(), hostB, probe.PingOptions{Count: 1, Size: 1472, DF: true, Timeout: 2 * time.Second})
	if err != nil {
		t.Fatalf("ping -M do -s 1444: %v", err)
	}
	if mtu, ok := r.FragNeeded(); !ok || mtu != 1420 || r.Errors[0].From != s.SiteBGateway.Addr() {
		t.Fatalf("ping -M do -s 1444: fragmentation needed %v, MTU %d, errors %v; want MTU 1420 from %v", ok, mtu, r.Errors, s.SiteBGateway.Addr())
	}

	mustPing6Eventually(t, "client -> VPS host (IPv6)", s.client(), hostB6)
	r6, err := probe.Ping6(s.client(), hostB6, 1, 0, 2*time.Second, 1472)
	if err != nil {
		t.Fatalf("ping6 -s 1424: %v", err)
	}
	if len(r6.Errors) != 1 || r6.Errors[0].Type != 2 || r6.Errors[0].MTU != 1420 || r6.Errors[0].From != s.SiteBGateway6.Addr() {
		t.Fatalf("1472-byte ping6: errors %v, want one packet too big (MTU 1420) from %v", r6.Errors, s.SiteBGateway6.Addr())
	}

	st := s.status(t, "server")
	if st.Dataplane.Drops["too_big_lan"] < 2 || st.Dataplane.Fragmented < 5 || st.Dataplane.Drops["inject_error"] != 0 {
		t.Errorf("server: too_big_lan %d, fragmented %d, inject_error %d; want >= 2, >= 5, 0",
			st.Dataplane.Drops["too_big_lan"], st.Dataplane.Fragmented, st.Dataplane.Drops["inject_error"])
	}
	if n := drops(t, s, "client", "src_not_allowed"); n != 0 {
		t.Errorf("client refused %d packets from the server (its ICMP errors?)", n)
	}
	s.stopAndCompare(t)
}

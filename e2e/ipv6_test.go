package e2e

import (
	"net/netip"
	"testing"
	"time"

	"github.com/vishvananda/netns"

	"tunnel-agent/internal/probe"
	"tunnel-agent/internal/topo"
)

// newTwoSite6 is the two-site topology with IPv6 on and dual-stack site
// files (IPv4 and IPv6 inside the tunnel); outer6 runs the tunnel itself
// over IPv6 (only without NAT).
func newTwoSite6(t *testing.T, o topo.Options, outer6 bool) *twoSite {
	t.Helper()
	o.IPv6 = true
	s := newTwoSite(t, o)
	s.cfgA = writeFile(t, s.dir, "client.yaml", s.SiteAYAML6("client", outer6))
	s.cfgB = writeFile(t, s.dir, "server.yaml", s.SiteBYAML6("server", outer6))
	return s
}

// mustPing6Eventually retries an IPv6 ping for up to 10 s.
func mustPing6Eventually(t *testing.T, what string, ns netns.NsHandle, dst netip.Addr) {
	t.Helper()
	var r probe.PingResult
	var err error
	if !eventually(10*time.Second, func() bool {
		r, err = probe.Ping6(ns, dst, 1, 0, 500*time.Millisecond, 0)
		return err == nil && r.Received == 1
	}) {
		t.Fatalf("%s: no IPv6 reply within 10s (err %v, %+v)", what, err, r)
	}
}

// dualStackTraffic pings and transfers over both families, both ways.
func dualStackTraffic(t *testing.T, s *twoSite) {
	t.Helper()
	ns1 := s.siteBHost(t)
	mustPing6Eventually(t, "client -> VPS host (IPv6)", s.client(), s.SiteBHost6.Addr())
	r, err := probe.Ping6(s.client(), s.SiteBHost6.Addr(), 4, 50*time.Millisecond, 2*time.Second, 0)
	mustPing(t, "client -> VPS host (IPv6)", r, err)
	r, err = probe.Ping6(ns1, s.ClientAddr6.Addr(), 4, 50*time.Millisecond, 2*time.Second, 0)
	mustPing(t, "VPS host -> client (IPv6)", r, err)
	tr, err := probe.TCPTransfer(s.client(), ns1, netip.AddrPortFrom(s.SiteBHost6.Addr(), 5201), 10<<20, 60*time.Second)
	mustTransfer(t, "client -> VPS host (IPv6)", tr, err)
	tr, err = probe.TCPTransfer(ns1, s.client(), netip.AddrPortFrom(s.ClientAddr6.Addr(), 5202), 10<<20, 60*time.Second)
	mustTransfer(t, "VPS host -> client (IPv6)", tr, err)

	mustPingEventually(t, "client -> VPS host (IPv4)", s.client(), s.SiteBHost.Addr())
	tr, err = probe.TCPTransfer(s.client(), ns1, netip.AddrPortFrom(s.SiteBHost.Addr(), 5203), 10<<20, 60*time.Second)
	mustTransfer(t, "client -> VPS host (IPv4)", tr, err)
}

// TestIPv6InsideTunnel: IPv6 and IPv4 between the sites through the
// tutorial's IPv4 tunnel behind NAT; the revert restores both families.
func TestIPv6InsideTunnel(t *testing.T) {
	s := newTwoSite6(t, topo.Options{NAT: true}, false)
	s.start(t)
	dualStackTraffic(t, s)
	if got := s.status(t, "server").Dataplane.Peers[0].CurrentEndpoint; got.Addr() != s.NATOutside.Addr() {
		t.Errorf("server learned endpoint %v, want the NAT's address %v", got, s.NATOutside.Addr())
	}
	s.stopAndCompare(t)
}

// TestIPv6OutsideTunnel: the tunnel runs over IPv6 (both agents listen on
// [::]) and carries IPv4 and IPv6 (the mixed case).
func TestIPv6OutsideTunnel(t *testing.T) {
	s := newTwoSite6(t, topo.Options{}, true)
	s.start(t)
	dualStackTraffic(t, s)
	st := s.status(t, "server")
	if got := st.Dataplane.Peers[0].CurrentEndpoint; got.Addr() != s.GatewayAWAN6.Addr() {
		t.Errorf("server learned endpoint %v, want the client's IPv6 address %v", got, s.GatewayAWAN6.Addr())
	}
	s.stopAndCompare(t)
}

// TestIPv6PacketTooBig gives both LAN hosts MTU 1500: a 1500-byte IPv6
// packet cannot cross a 1500-byte IPv4 WAN with 28 bytes of encapsulation,
// so the gateway answers packet too big with MTU 1472 (IPv6 is never
// fragmented on the way), and TCP between the hosts completes.
func TestIPv6PacketTooBig(t *testing.T) {
	s := newTwoSite6(t, topo.Options{NAT: true, LANMTU: 1500}, false)
	s.start(t)
	ns1 := s.siteBHost(t)
	hostB, hostA := s.SiteBHost6.Addr(), s.ClientAddr6.Addr()
	mustPing6Eventually(t, "client -> VPS host", s.client(), hostB)
	r, err := probe.Ping6(s.client(), hostB, 1, 0, 2*time.Second, 1500)
	if err != nil {
		t.Fatalf("ping6: %v", err)
	}
	if len(r.Errors) != 1 || r.Errors[0].Type != 2 || r.Errors[0].MTU != 1500-28 || r.Errors[0].From != s.GatewayALAN6.Addr() {
		t.Fatalf("1500-byte ping6: errors %v, want one packet too big (MTU %d) from %v", r.Errors, 1500-28, s.GatewayALAN6.Addr())
	}
	if drops(t, s, "client", "too_big") == 0 {
		t.Errorf("too_big not counted at the client's gateway")
	}
	tr, err := probe.TCPTransfer(s.client(), ns1, netip.AddrPortFrom(hostB, 5201), 10<<20, 60*time.Second)
	mustTransfer(t, "client (MTU 1500) -> VPS host (MTU 1500), IPv6", tr, err)
	tr, err = probe.TCPTransfer(ns1, s.client(), netip.AddrPortFrom(hostA, 5202), 10<<20, 60*time.Second)
	mustTransfer(t, "VPS host (MTU 1500) -> client (MTU 1500), IPv6", tr, err)
	s.stopAndCompare(t)
}

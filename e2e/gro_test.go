package e2e

import (
	"net/netip"
	"testing"
	"time"

	"tunnel-agent/internal/probe"
	"tunnel-agent/internal/topo"
)

// TestTwoSitesUDPGRO: bulk TCP both ways between the tutorial's sites,
// with the veths' checksum offloads on. Each gateway sends UDP GSO
// super-datagrams, the WAN veths and the NAT router pass them whole, and
// the other gateway's tunnel socket receives them as UDP_GRO messages:
// status shows coalesced messages on both sides and no datagram dropped
// for its size. (With tx checksum offload off, the sending kernel cuts the
// super-datagrams in software before the veth, and nothing is coalesced.)
func TestTwoSitesUDPGRO(t *testing.T) {
	s := newTwoSite(t, topo.Options{NAT: true, Offloads: true})
	writeFile(t, s.dir, "client.yaml", s.SiteAYAML("client"))
	writeFile(t, s.dir, "server.yaml", s.SiteBYAML("server"))
	s.start(t)
	ns1 := s.siteBHost(t)
	hostB, hostA := s.SiteBHost.Addr(), s.ClientAddr.Addr()
	mustPingEventually(t, "client -> VPS host (first contact)", s.client(), hostB)
	tr, err := probe.TCPTransfer(s.client(), ns1, netip.AddrPortFrom(hostB, 5201), 20<<20, 120*time.Second)
	mustTransfer(t, "client -> VPS host", tr, err)
	tr, err = probe.TCPTransfer(ns1, s.client(), netip.AddrPortFrom(hostA, 5202), 20<<20, 120*time.Second)
	mustTransfer(t, "VPS host -> client", tr, err)
	for _, site := range []string{"client", "server"} {
		ts := s.status(t, site).Transport
		if ts == nil || !ts.GRO {
			t.Fatalf("%s: transport status %+v, want UDP GRO on", site, ts)
		}
		t.Logf("%s: %d GRO messages carried %d datagrams", site, ts.GROMessages, ts.GROSegments)
		if ts.GROMessages == 0 || ts.GROSegments <= ts.GROMessages || ts.Truncated != 0 {
			t.Errorf("%s: transport status %+v, want coalesced messages and nothing truncated", site, *ts)
		}
	}
	s.stopAndCompare(t)
}

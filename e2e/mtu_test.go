package e2e

import (
	"net/netip"
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

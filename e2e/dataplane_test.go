package e2e

import (
	"net/netip"
	"testing"
	"time"

	"github.com/vishvananda/netns"

	"tunnel-agent/internal/probe"
	"tunnel-agent/internal/topo"
)

// mustPing pings dst from ns and fails unless every request is answered.
func mustPing(t *testing.T, what string, r probe.PingResult, err error) {
	t.Helper()
	if err != nil || r.Received != r.Sent || r.Sent == 0 {
		t.Fatalf("%s: %d/%d replies, err %v", what, r.Received, r.Sent, err)
	}
}

func mustTransfer(t *testing.T, what string, r probe.TransferResult, err error) {
	t.Helper()
	if err != nil || !r.OK() {
		t.Fatalf("%s: %d of %d bytes, sha256 equal %v, err %v", what, r.Bytes, r.Sent, r.SentSHA256 == r.ReceivedSHA256, err)
	}
	t.Logf("%s: %d bytes in %s (%.0f Mbit/s), SHA-256 verified", what, r.Bytes, r.Duration.Round(time.Millisecond), r.Throughput/1e6)
}

// TestTwoSitesThroughNAT runs the tutorial's two sites: the client behind
// NAT, the VPS learning its endpoint. Subtests share the agents and run in
// order; the last one stops both agents and compares the host dumps.
func TestTwoSitesThroughNAT(t *testing.T) {
	s := newTwoSite(t, topo.Options{NAT: true})
	s.start(t)
	ns1 := s.siteBHost(t)
	hostB := s.SiteBHost.Addr()

	t.Run("ping client first, then the VPS host", func(t *testing.T) {
		pingBothWaysThroughNAT(t, s, ns1, 4, 100*time.Millisecond)
	})
	t.Run("TCP 50 MB each way", func(t *testing.T) { tcpBothWays(t, s, ns1, 50<<20) })
	t.Run("10000 UDP datagrams", func(t *testing.T) {
		r, err := probe.UDPBurstWith(s.client(), ns1, netip.AddrPortFrom(hostB, 5300),
			probe.UDPOptions{Count: 10000, Payload: 512, Rate: 5000, Timeout: 20 * time.Second})
		if err != nil || r.Received != 10000 {
			t.Fatalf("received %d of %d sent (10000 wanted), err %v", r.Received, r.Sent, err)
		}
	})
	t.Run("attacks are dropped and counted", func(t *testing.T) { testAttacks(t, s, ns1) })
	t.Run("NAT mapping changes", func(t *testing.T) { testNATRebinding(t, s, ns1) })
	t.Run("SIGINT restores both hosts", func(t *testing.T) { s.stopAndCompare(t) })
}

// mustPingEventually retries a ping for up to 10 s.
func mustPingEventually(t *testing.T, what string, ns netns.NsHandle, dst netip.Addr) {
	t.Helper()
	var r probe.PingResult
	var err error
	if !eventually(10*time.Second, func() bool {
		r, err = probe.Ping(ns, dst, 1, 0, 500*time.Millisecond, 84)
		return err == nil && r.Received == 1
	}) {
		t.Fatalf("%s: no reply within 10s (err %v)", what, err)
	}
}

// pingBothWaysThroughNAT pings from the client to the VPS host (first
// retried until it gets through: the first echo teaches the VPS the
// client's NAT mapping and resolves neighbours on every hop), counted
// pings both ways, and checks that the server learned the NAT's address.
func pingBothWaysThroughNAT(t *testing.T, s *twoSite, ns1 netns.NsHandle, count int, interval time.Duration) {
	t.Helper()
	hostB, hostA := s.SiteBHost.Addr(), s.ClientAddr.Addr()
	mustPingEventually(t, "client -> VPS host (first contact)", s.client(), hostB)
	r, err := probe.Ping(s.client(), hostB, count, interval, 2*time.Second, 84)
	mustPing(t, "client -> VPS host", r, err)
	r, err = probe.Ping(ns1, hostA, count, interval, 2*time.Second, 84)
	mustPing(t, "VPS host -> client", r, err)
	if got := s.status(t, "server").Dataplane.Peers[0].CurrentEndpoint; got.Addr() != s.NATOutside.Addr() {
		t.Errorf("server learned endpoint %v, want the NAT's address %v", got, s.NATOutside.Addr())
	}
}

// tcpBothWays moves size bytes over TCP from the client to the VPS host
// and back, each checked by SHA-256 (probe.TCPTransfer).
func tcpBothWays(t *testing.T, s *twoSite, ns1 netns.NsHandle, size int64) {
	t.Helper()
	hostB, hostA := s.SiteBHost.Addr(), s.ClientAddr.Addr()
	r, err := probe.TCPTransfer(s.client(), ns1, netip.AddrPortFrom(hostB, 5201), size, 120*time.Second)
	mustTransfer(t, "client -> VPS host", r, err)
	r, err = probe.TCPTransfer(ns1, s.client(), netip.AddrPortFrom(hostA, 5202), size, 120*time.Second)
	mustTransfer(t, "VPS host -> client", r, err)
}

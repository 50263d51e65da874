package e2e

import (
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netns"

	"tunnel-agent/internal/probe"
	"tunnel-agent/internal/topo"
)

// siteAKeepalive is the keepalive interval of topo's site A (the client).
const siteAKeepalive = 2 * time.Second

// TestRestartsBehindNAT: the tutorial's two sites, the client behind the
// NAT router, and no user traffic at all: the VPS side (which has no
// endpoint for the client) reaches the client's host through the tunnel
// within two keepalive intervals from the start, after the server agent
// restarted, and after the client agent restarted, because the client's
// keepalives name it. Both ends see each other alive meanwhile.
func TestRestartsBehindNAT(t *testing.T) {
	s := newTwoSite(t, topo.Options{NAT: true})
	s.start(t)
	hostA := s.ClientAddr.Addr()
	pingWithin(t, "VPS host -> client, nothing sent before", s.siteBHost(t), hostA, 2*siteAKeepalive)
	checkLiveness(t, s)

	if code := s.agentB.stop(t, syscall.SIGINT); code != 0 {
		t.Fatalf("server agent exit code %d:\n%s", code, s.agentB.out.String())
	}
	s.agentB = startAgent(t, s.GatewayB, s.args("up", "server")...)
	pingWithin(t, "VPS host -> client after the server restarted", s.siteBHost(t), hostA, 2*siteAKeepalive)

	if code := s.agentA.stop(t, syscall.SIGINT); code != 0 {
		t.Fatalf("client agent exit code %d:\n%s", code, s.agentA.out.String())
	}
	s.agentA = startAgent(t, s.GatewayA, s.args("up", "client")...)
	pingWithin(t, "VPS host -> client after the client restarted", s.siteBHost(t), hostA, 2*siteAKeepalive)
	checkLiveness(t, s)
	mustPingEventually(t, "client -> VPS host", s.client(), s.SiteBHost.Addr())
	if n := drops(t, s, "server", "not_from_peer"); n != 0 {
		t.Errorf("server dropped %d datagrams as not_from_peer", n)
	}
	s.stopAndCompare(t)
}

// pingWithin pings dst from ns until one echo is answered; it fails if
// none is by d from now (the last try may end one ping timeout later).
func pingWithin(t *testing.T, what string, ns netns.NsHandle, dst netip.Addr, d time.Duration) {
	t.Helper()
	start := time.Now()
	for {
		r, err := probe.Ping(ns, dst, 1, 0, 500*time.Millisecond, 84)
		if err == nil && r.Received == 1 {
			t.Logf("%s: answered %s after the agent was ready", what, time.Since(start).Round(time.Millisecond))
			return
		}
		if time.Since(start) > d {
			t.Fatalf("%s: no reply within %s (last: %d/%d, err %v)", what, d, r.Received, r.Sent, err)
		}
	}
}

// checkLiveness: with no traffic, each side hears the other's keepalives
// within two intervals: the client the server's replies, the server the
// client's requests (and it answers them).
func checkLiveness(t *testing.T, s *twoSite) {
	t.Helper()
	ok := eventually(2*siteAKeepalive, func() bool {
		c, v := s.status(t, "client").Dataplane.Peers[0], s.status(t, "server").Dataplane.Peers[0]
		return c.KeepalivesReceived > 0 && !c.LastReceived.IsZero() && time.Since(c.LastReceived) < 2*siteAKeepalive &&
			v.KeepalivesReceived > 0 && v.KeepalivesAnswered > 0 && time.Since(v.LastReceived) < 2*siteAKeepalive
	})
	if !ok {
		t.Fatalf("no keepalives both ways: client %+v, server %+v",
			s.status(t, "client").Dataplane.Peers[0], s.status(t, "server").Dataplane.Peers[0])
	}
}

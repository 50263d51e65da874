package e2e

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"tunnel-agent/internal/probe"
	"tunnel-agent/internal/topo"
)

// TestTwoSitesCaptureModes runs the tutorial's two sites with each
// `lan.capture` on both gateways: pings, TCP and UDP cross the tunnel,
// status reports the capture counters, and SIGINT restores both hosts.
// The ping round trips are logged for comparison (the ring hands a lone
// packet over only when its 1 ms retire timer fires; timing is not
// asserted).
func TestTwoSitesCaptureModes(t *testing.T) {
	for _, mode := range []string{"socket", "ring"} {
		t.Run(mode, func(t *testing.T) { testTwoSitesCapture(t, mode) })
	}
}

func testTwoSitesCapture(t *testing.T, mode string) {
	s := newTwoSite(t, topo.Options{NAT: true})
	withMode := func(yaml string) string { return strings.Replace(yaml, "lan:\n", "lan:\n  capture: "+mode+"\n", 1) }
	writeFile(t, s.dir, "client.yaml", withMode(s.SiteAYAML("client")))
	writeFile(t, s.dir, "server.yaml", withMode(s.SiteBYAML("server")))
	s.start(t)
	ns1 := s.siteBHost(t)
	hostB, hostA := s.SiteBHost.Addr(), s.ClientAddr.Addr()

	mustPingEventually(t, "client -> VPS host (first contact)", s.client(), hostB)
	r, err := probe.Ping(s.client(), hostB, 20, 10*time.Millisecond, 2*time.Second, 84)
	mustPing(t, "client -> VPS host", r, err)
	t.Logf("ping through %s captures: min %v avg %v p99 %v max %v", mode, r.Min, r.Avg, r.P99, r.Max)
	tr, err := probe.TCPTransfer(s.client(), ns1, netip.AddrPortFrom(hostB, 5201), 20<<20, 120*time.Second)
	mustTransfer(t, "client -> VPS host", tr, err)
	tr, err = probe.TCPTransfer(ns1, s.client(), netip.AddrPortFrom(hostA, 5202), 20<<20, 120*time.Second)
	mustTransfer(t, "VPS host -> client", tr, err)
	u, err := probe.UDPBurstWith(s.client(), ns1, netip.AddrPortFrom(hostB, 5300),
		probe.UDPOptions{Count: 5000, Payload: 512, Rate: 5000, Timeout: 20 * time.Second})
	if err != nil {
		t.Fatalf("UDP burst: %v", err)
	}
	if missing := u.Sent - u.Received; missing != 0 {
		// The ring holds RingBlocks retire periods of moderate-rate
		// traffic (each timer tick hands over a block, however little it
		// holds): an agent stalled longer than that on a loaded machine
		// loses packets, which it must then count as kernel drops.
		drops := s.status(t, "client").CaptureKernelDrops
		if mode != "ring" || uint64(missing) > drops {
			t.Fatalf("received %d of %d UDP datagrams sent; client capture kernel drops %d", u.Received, u.Sent, drops)
		}
		t.Logf("ring: %d of %d datagrams lost, all counted as kernel drops (%d)", missing, u.Sent, drops)
	}
	for _, site := range []string{"client", "server"} {
		st := s.status(t, site)
		if p := st.Dataplane.Peers[0]; p.TxPackets == 0 || st.CaptureTruncated != 0 {
			t.Errorf("%s: tx %d packets, capture truncated %d", site, p.TxPackets, st.CaptureTruncated)
		}
		t.Logf("%s: capture kernel drops %d, gso drops %d", site, st.CaptureKernelDrops, st.CaptureGSODropped)
	}
	s.stopAndCompare(t)
}

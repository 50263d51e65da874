package e2e

import (
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"tunnel-agent/internal/probe"
)

// TestWireGuardLiveOperations is TestLiveOperations in wireguard mode:
// metrics move with traffic, a reload adds a peer and changes the
// unchanged peer's keepalive while a TCP transfer to it runs (SHA-256
// intact), the capture is re-bound on a re-created LAN interface, and a
// reload on both sides rotates the server's private key; SIGINT then
// restores both hosts.
func TestWireGuardLiveOperations(t *testing.T) {
	s, _ := newWGTwoSite(t)
	const metricsAddr = "127.0.0.1:9111"
	base, err := os.ReadFile(s.cfgB)
	if err != nil {
		t.Fatal(err)
	}
	withMetrics := string(base) + "metrics: {listen: " + metricsAddr + "}\n"
	if err := os.WriteFile(s.cfgB, []byte(withMetrics), 0o600); err != nil {
		t.Fatal(err)
	}
	s.start(t)
	ns1 := s.siteBHost(t)
	hostB, hostA := s.SiteBHost.Addr(), s.ClientAddr.Addr()
	mustPingEventually(t, "client -> VPS host (first handshake)", s.client(), hostB)

	t.Run("metrics move with traffic", func(t *testing.T) {
		m0, m1 := s.pingMovesPeerPackets(t, metricsAddr, hostB)
		if k := `tunnel_agent_wireguard_peer_bytes_total{direction="rx",peer="client"}`; m1[k] < m0[k]+5*(84+32) {
			t.Errorf("%s went from %v to %v", k, m0[k], m1[k])
		}
		if hs := m1[`tunnel_agent_wireguard_peer_last_handshake_timestamp_seconds{peer="client"}`]; hs < float64(time.Now().Add(-time.Minute).Unix()) {
			t.Errorf("last handshake time missing or old: %v", hs)
		}
		for _, k := range []string{`tunnel_agent_wireguard_not_wireguard_total`, `tunnel_agent_capture_unreadable_total`,
			`tunnel_agent_dropped_packets_total{reason="too_big_lan"}`} {
			if _, ok := m1[k]; !ok {
				t.Errorf("metric %s missing", k)
			}
		}
	})
	t.Run("reload adds a peer; a TCP transfer to the unchanged peer is not disturbed", func(t *testing.T) {
		tr := startTransfer(t, s.client(), ns1, netip.AddrPortFrom(hostB, 5201), 90*time.Second)
		north := newKey(t)
		added := strings.Replace(withMetrics, "  blackhole: [192.168.111.0/30]\n", `      keepalive: 5s
    - name: north
      public_key: `+north.PublicKey().String()+`
      endpoint: 198.18.0.99:51820
      prefixes: [10.77.0.0/24]
  blackhole: [192.168.111.0/30, 10.77.0.0/24]
`, 1)
		if err := os.WriteFile(s.cfgB, []byte(added), 0o600); err != nil {
			t.Fatal(err)
		}
		tr.running(t, "before the reload")
		out, code := runAgent(t, s.GatewayB, s.args("reload", "server")...)
		if code != 0 {
			t.Fatalf("reload: exit %d:\n%s", code, out)
		}
		tr.receives(t, "after the reload", 1<<20)
		tr.finish(t, "client -> VPS host across the reload")
		st := s.status(t, "server")
		if len(st.WireGuard.Peers) != 2 || st.WireGuard.Peers[1].Name != "north" || st.WireGuard.Peers[0].Keepalive != 5*time.Second {
			t.Errorf("after the reload the device has %+v", st.WireGuard.Peers)
		}
		withMetrics = added
	})
	t.Run("LAN veth deleted: re-created, capture re-bound, traffic flows", func(t *testing.T) {
		deleteVPSLAN(t, s, ns1)
	})
	t.Run("reload rotates the server's private key", func(t *testing.T) {
		nk := newKey(t)
		writeKeyFile(t, s.dir, "server.key", nk)
		out, code := runAgent(t, s.GatewayB, s.args("reload", "server")...)
		if code != 0 {
			t.Fatalf("reload server: exit %d:\n%s", code, out)
		}
		if st := s.status(t, "server"); st.WireGuard.PublicKey != nk.PublicKey().String() {
			t.Fatalf("server reports public key %s, want %s", st.WireGuard.PublicKey, nk.PublicKey())
		}
		cfgA, err := os.ReadFile(s.cfgA)
		if err != nil {
			t.Fatal(err)
		}
		old := serverPublicKeyInFile(t, string(cfgA))
		if err := os.WriteFile(s.cfgA, []byte(strings.Replace(string(cfgA), old, nk.PublicKey().String(), 1)), 0o600); err != nil {
			t.Fatal(err)
		}
		if out, code := runAgent(t, s.GatewayA, s.args("reload", "client")...); code != 0 {
			t.Fatalf("reload client: exit %d:\n%s", code, out)
		}
		mustPingEventually(t, "client -> VPS host with the new key", s.client(), hostB)
		r, err := probe.Ping(ns1, hostA, 4, 50*time.Millisecond, 2*time.Second, 84)
		mustPing(t, "VPS host -> client with the new key", r, err)
	})
	t.Run("SIGINT restores both hosts", func(t *testing.T) { s.stopAndCompare(t) })
}

// serverPublicKeyInFile returns the public_key value of a one-peer site
// file.
func serverPublicKeyInFile(t *testing.T, file string) string {
	t.Helper()
	for _, line := range strings.Split(file, "\n") {
		if k, ok := strings.CutPrefix(strings.TrimSpace(line), "public_key: "); ok {
			return k
		}
	}
	t.Fatalf("no public_key in\n%s", file)
	return ""
}

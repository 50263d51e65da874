package e2e

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"tunnel-agent/internal/nstest"
	"tunnel-agent/internal/probe"
	"tunnel-agent/internal/topo"
)

const (
	wgHubSites     = 6
	wgHubIPv6Sites = 2 // sites 1-2 reach the hub over IPv6
)

// TestWireGuardHubAndSpokes: a wireguard-mode hub relays between 6
// wireguard-mode sites (2 over IPv6, 4 over IPv4): each packet is
// decrypted from one spoke, checked against that spoke's prefixes,
// encrypted to the other. Every site reaches the hub's LAN and every
// other site through the hub; nothing relayed touches the hub's LAN;
// stopping the hub restores its namespace.
func TestWireGuardHubAndSpokes(t *testing.T) {
	nstest.RequireRoot(t)
	start := time.Now()
	h, dir, before := buildHub(t, "tawghub", wgHubSites, wgHubIPv6Sites)
	state := func(name string) string { return filepath.Join(dir, name+"-state") }
	hubKey := newKey(t)
	keys := make([]wgtypes.Key, wgHubSites)
	for i := range keys {
		keys[i] = newKey(t)
	}
	hubCfg := writeFile(t, dir, "hub.yaml", hubWireGuardYAML(h, writeKeyFile(t, dir, "hub.key", hubKey), keys))
	hub := startAgent(t, h.HubNS, "up", "-c", hubCfg, "--state-dir", state("hub"))
	spokes := make([]*agentProc, wgHubSites)
	for i, s := range h.Sites {
		name := fmt.Sprintf("site%d", i+1)
		cfg := writeFile(t, dir, name+".yaml", topo.WireGuardYAML(spokeYAML(h, i, 60000),
			writeKeyFile(t, dir, name+".key", keys[i]), hubKey.PublicKey().String()))
		spokes[i] = startAgent(t, s.Gateway, "up", "-c", cfg, "--state-dir", state(name))
	}
	pingThroughHub(t, h, start)
	st := statusOf(t, h.HubNS, hubCfg, state("hub"))
	if st.Dataplane.Drops["dst_not_allowed"] != 0 {
		t.Errorf("hub: dst_not_allowed %d", st.Dataplane.Drops["dst_not_allowed"])
	}
	for i, p := range st.Dataplane.Peers {
		// Each site pinged the hub's LAN (rx) and was pinged by the others
		// through the hub (tx to it: their requests and its replies).
		if p.RxPackets == 0 || p.TxPackets < uint64(wgHubSites-1) {
			t.Errorf("hub's counters for %s: rx %d tx %d", p.Name, p.RxPackets, p.TxPackets)
		}
		if st.WireGuard.Peers[i].LastHandshake.IsZero() {
			t.Errorf("hub: no handshake with %s", p.Name)
		}
	}
	// A TCP transfer between two spokes (IPv6 and IPv4 outside) through
	// the hub, in full-size segments (LAN MTU 1420: over site1's IPv6 path
	// that is exactly its inner MTU, which wireguard-go's padding must not
	// exceed); what the relay ring refuses when full (tunnel_busy) TCP
	// sends again.
	s1, s3 := h.Sites[0], h.Sites[2]
	r, err := probe.TCPTransfer(h.Handle(s1.Host), h.Handle(s3.Host), netip.AddrPortFrom(s3.HostAddr.Addr(), 5201), 20<<20, 120*time.Second)
	mustTransfer(t, "site1 -> site3 through the hub", r, err)
	st = statusOf(t, h.HubNS, hubCfg, state("hub"))
	t.Logf("hub after the transfer: site1 rx %d, site3 tx %d, tunnel_busy %d", st.Dataplane.Peers[0].RxPackets,
		st.Dataplane.Peers[2].TxPackets, st.Dataplane.Drops["tunnel_busy"])
	logUsage(t, "hub", hub.cmd.Process.Pid)
	stopHub(t, h, hub, spokes, before)
}

// hubWireGuardYAML is hubYAML in wireguard mode: keyFile is the hub's
// private key, keys[i] site i's.
func hubWireGuardYAML(h *topo.Hub, keyFile string, keys []wgtypes.Key) string {
	plain := hubYAML(h)
	out := strings.Replace(plain, "\ntunnel:\n", fmt.Sprintf("\ntunnel:\n  mode: wireguard\n  private_key_file: %s\n", keyFile), 1)
	for i, k := range keys {
		out = strings.Replace(out, fmt.Sprintf("- {name: site%d, ", i+1), fmt.Sprintf("- {name: site%d, public_key: %s, ", i+1, k.PublicKey()), 1)
	}
	return out
}

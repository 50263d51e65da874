package agent

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"tunnel-agent/agent/config"
	"tunnel-agent/netcfg"
)

func TestRestartOnlyChanges(t *testing.T) {
	old := &config.Config{Site: "a", LAN: config.LAN{Interface: "eth1"}, Tunnel: config.Tunnel{Listen: netip.MustParseAddrPort("0.0.0.0:1")}}
	same := *old
	same.Tunnel.Peers = []config.Peer{{Name: "x"}}
	if err := restartOnly(old, &same); err != nil {
		t.Errorf("peers may change on reload: %v", err)
	}
	for name, mut := range map[string]func(c *config.Config){
		"site":        func(c *config.Config) { c.Site = "b" },
		"lan":         func(c *config.Config) { c.LAN.Interface = "eth2" },
		"listen":      func(c *config.Config) { c.Tunnel.Listen = netip.MustParseAddrPort("0.0.0.0:2") },
		"lan.capture": func(c *config.Config) { c.LAN.Capture = config.CaptureRing },
	} {
		c := *old
		mut(&c)
		if err := restartOnly(old, &c); err == nil || (name == "lan.capture" && !strings.Contains(err.Error(), name)) {
			t.Errorf("%s change on reload: %v, want an error", name, err)
		}
	}
}

func TestPeerDiff(t *testing.T) {
	mk := func(names ...string) *config.Config {
		c := &config.Config{}
		for _, n := range names {
			c.Tunnel.Peers = append(c.Tunnel.Peers, config.Peer{Name: n})
		}
		return c
	}
	added, removed := peerDiff(mk("a", "b"), mk("b", "c"))
	if strings.Join(added, ",") != "c" || strings.Join(removed, ",") != "a" {
		t.Errorf("added %v removed %v", added, removed)
	}
}

func TestRepairMetric(t *testing.T) {
	m := newMetrics()
	ev := netcfg.WatchEvent{Item: "set MTU of veth0 to 1420", Action: netcfg.Repaired}
	m.repair(ev)
	m.repair(ev)
	if got := testutil.ToFloat64(m.repairs.WithLabelValues(ev.Item, "repaired")); got != 2 {
		t.Errorf("repairs = %v, want 2", got)
	}
}

package agent

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"tunnel-agent/netcfg"
)

// validYAML is a minimal valid site.
const validYAML = `site: s
lan: {interface: eth0}
tunnel:
  listen: 0.0.0.0:50000
  peers:
    - name: p
      prefixes: [10.1.0.0/24]
`

func TestMetricsListenParsed(t *testing.T) {
	cfg, err := ParseConfig("site.yaml", []byte(validYAML+"metrics: {listen: 127.0.0.1:9110}\n"), cfgHost)
	if err != nil {
		t.Fatal(err)
	}
	if want := netip.MustParseAddrPort("127.0.0.1:9110"); cfg.Metrics.Listen != want {
		t.Errorf("metrics.listen = %v, want %v", cfg.Metrics.Listen, want)
	}
	_, err = ParseConfig("site.yaml", []byte(validYAML+"metrics: {listen: localhost}\n"), cfgHost)
	if err == nil || !strings.Contains(err.Error(), "metrics.listen") {
		t.Errorf("bad metrics.listen: %v", err)
	}
	cfg, err = ParseConfig("site.yaml", []byte(validYAML), cfgHost)
	if err != nil || cfg.Metrics.Listen.IsValid() {
		t.Errorf("metrics must be off by default: %v %v", cfg.Metrics.Listen, err)
	}
}

func TestRestartOnlyChanges(t *testing.T) {
	old := &Config{Site: "a", LAN: LAN{Interface: "eth1"}, Tunnel: Tunnel{Listen: netip.MustParseAddrPort("0.0.0.0:1")}}
	same := *old
	same.Tunnel.Peers = []Peer{{Name: "x"}}
	if err := restartOnly(old, &same); err != nil {
		t.Errorf("peers may change on reload: %v", err)
	}
	for name, mut := range map[string]func(c *Config){
		"site":   func(c *Config) { c.Site = "b" },
		"lan":    func(c *Config) { c.LAN.Interface = "eth2" },
		"listen": func(c *Config) { c.Tunnel.Listen = netip.MustParseAddrPort("0.0.0.0:2") },
	} {
		c := *old
		mut(&c)
		if err := restartOnly(old, &c); err == nil {
			t.Errorf("%s change accepted on reload", name)
		}
	}
}

func TestPeerDiff(t *testing.T) {
	mk := func(names ...string) *Config {
		c := &Config{}
		for _, n := range names {
			c.Tunnel.Peers = append(c.Tunnel.Peers, Peer{Name: n})
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

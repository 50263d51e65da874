package config

import (
	"net/netip"
	"strings"
	"testing"
)

func TestMetricsListenParsed(t *testing.T) {
	cfg, err := Parse("site.yaml", []byte(cfgMinimal+"metrics: {listen: 127.0.0.1:9110}\n"), cfgHost)
	if err != nil {
		t.Fatal(err)
	}
	if want := netip.MustParseAddrPort("127.0.0.1:9110"); cfg.Metrics.Listen != want {
		t.Errorf("metrics.listen = %v, want %v", cfg.Metrics.Listen, want)
	}
	_, err = Parse("site.yaml", []byte(cfgMinimal+"metrics: {listen: localhost}\n"), cfgHost)
	if err == nil || !strings.Contains(err.Error(), "metrics.listen") {
		t.Errorf("bad metrics.listen: %v", err)
	}
	cfg, err = Parse("site.yaml", []byte(cfgMinimal), cfgHost)
	if err != nil || cfg.Metrics.Listen.IsValid() {
		t.Errorf("metrics must be off by default: %v %v", cfg.Metrics.Listen, err)
	}
}

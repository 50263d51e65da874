package config

import (
	"net/netip"

	"gopkg.in/yaml.v3"
)

// Metrics configures the Prometheus endpoint of a running agent.
type Metrics struct {
	// Listen is the TCP address of the HTTP endpoint serving /metrics;
	// the zero value (the default) serves none.
	Listen netip.AddrPort
}

// fileMetrics is the `metrics` section of the file.
type fileMetrics struct {
	Listen yaml.Node `yaml:"listen"`
}

func (c converter) metrics(path string, f *fileMetrics) Metrics {
	return Metrics{Listen: parseField(c, path+".listen", &f.Listen, false, parseAddrPort)}
}

package config

import (
	"strings"
	"testing"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

const ebpfSiteYAML = `site: s
lan:
  interface: eth0
tunnel:
  dataplane: ebpf
  listen: 0.0.0.0:50000
  peers:
    - name: p
      endpoint: 198.18.0.9:50000
      prefixes: [10.1.0.0/24]
`

func TestDataplaneParsed(t *testing.T) {
	for _, tc := range []struct {
		line string
		want DataplaneKind
	}{
		{"  dataplane: ebpf\n", DataplaneEBPF},
		{"  dataplane: userspace\n", DataplaneUserspace},
		{"", DataplaneUserspace},
	} {
		cfg, err := Parse("site.yaml", []byte(strings.Replace(ebpfSiteYAML, "  dataplane: ebpf\n", tc.line, 1)), cfgHost)
		if err != nil {
			t.Fatalf("%q: %v", tc.line, err)
		}
		if cfg.Tunnel.Dataplane != tc.want {
			t.Errorf("%q: dataplane %v, want %v", tc.line, cfg.Tunnel.Dataplane, tc.want)
		}
	}
}

func TestDataplaneErrors(t *testing.T) {
	peer, _ := wgtypes.GeneratePrivateKey()
	tests := []struct{ name, yaml, field, msg string }{
		{"unknown", strings.Replace(ebpfSiteYAML, "dataplane: ebpf", "dataplane: xdp", 1), "tunnel.dataplane", "want userspace or ebpf"},
		{"wireguard", strings.Replace(wgSiteYAML(peer.PublicKey().String(), ""), "  mode: wireguard\n", "  mode: wireguard\n  dataplane: ebpf\n", 1), "tunnel.dataplane", "plain mode only"},
		{"capture", strings.Replace(ebpfSiteYAML, "  interface: eth0\n", "  interface: eth0\n  capture: ring\n", 1), "lan.capture", "a tc program captures"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { wantFieldError(t, tc.yaml, tc.field, tc.msg) })
	}
}

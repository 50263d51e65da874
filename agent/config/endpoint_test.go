package config

import (
	"strings"
	"testing"
)

func TestEndpointNameParsed(t *testing.T) {
	yaml := strings.Replace(cfgMinimal, "    - name: p\n", "    - name: p\n      endpoint: vpn.example.net:50000\n", 1)
	cfg, err := Parse("site.yaml", []byte(yaml), cfgHost)
	if err != nil {
		t.Fatal(err)
	}
	if p := cfg.Tunnel.Peers[0]; p.EndpointName != "vpn.example.net:50000" || p.Endpoint.IsValid() {
		t.Errorf("peer = %+v", p)
	}
	for _, bad := range []string{"vpn.example.net", "vpn.example.net:0", "vpn..net:1", "1.2.3:80", "-x.net:5"} {
		y := strings.Replace(cfgMinimal, "    - name: p\n", "    - name: p\n      endpoint: "+bad+"\n", 1)
		if _, err := Parse("site.yaml", []byte(y), cfgHost); err == nil || !strings.Contains(err.Error(), "endpoint") {
			t.Errorf("endpoint %q: %v", bad, err)
		}
	}
}

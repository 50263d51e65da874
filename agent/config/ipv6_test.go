package config

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
)

// cfgNS6 is cfgNSBase with the namespace made dual-stack.
var cfgNS6 = strings.Replace(cfgNSBase, "    gateway: 11.11.11.1\n",
	"    gateway: 11.11.11.1\n    host_address6: fd00:11::1/64\n    address6: fd00:11::100/64\n    gateway6: fd00:11::1\n", 1)

func TestDualStackNamespace(t *testing.T) {
	cfg := mustParseConfig(t, strings.Replace(cfgNS6, "  listen: 0.0.0.0:50000\n", "  listen: \"[::]:50000\"\n  relay: true\n", 1))
	ns := cfg.Namespaces[0]
	if ns.HostAddress6 != cfgPrefix("fd00:11::1/64") || ns.Address6 != cfgPrefix("fd00:11::100/64") ||
		ns.Gateway6 != netip.MustParseAddr("fd00:11::1") || !cfg.Tunnel.Relay {
		t.Fatalf("parsed %+v relay %v", ns, cfg.Tunnel.Relay)
	}
	if h, p := ns.Addrs(); !slices.Equal(h, cfgPrefixes("11.11.11.100/24", "fd00:11::100/64")) ||
		!slices.Equal(p, cfgPrefixes("11.11.11.1/24", "fd00:11::1/64")) {
		t.Errorf("Addrs() = %v, %v", h, p)
	}
}

func TestDualStackNamespaceErrors(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []wantFieldErr
	}{
		{"address6 alone", strings.Replace(cfgNS6, "    host_address6: fd00:11::1/64\n", "", 1),
			[]wantFieldErr{{9, "namespaces[0].address6", "together"}}},
		{"IPv4 in address6", strings.Replace(cfgNS6, "address6: fd00:11::100/64", "address6: 11.11.11.7/24", 1),
			[]wantFieldErr{{10, "namespaces[0].address6", "not an IPv6 address"}, {10, "namespaces[0].address6", "together"},
				{11, "namespaces[0].gateway6", "needs address6"}}},
		{"different subnets", strings.Replace(cfgNS6, "fd00:11::100/64", "fd00:12::100/64", 1),
			[]wantFieldErr{{10, "namespaces[0].address6", "not in the same subnet"}, {11, "namespaces[0].gateway6", "not inside"}}},
		{"gateway6 is address6", strings.Replace(cfgNS6, "gateway6: fd00:11::1", "gateway6: fd00:11::100", 1),
			[]wantFieldErr{{11, "namespaces[0].gateway6", "own address"}}},
		{"IPv4 gateway6", strings.Replace(cfgNS6, "gateway6: fd00:11::1", "gateway6: 11.11.11.1", 1),
			[]wantFieldErr{{11, "namespaces[0].gateway6", "not an IPv6 address"}}},
		{"link-local gateway6", strings.Replace(cfgNS6, "gateway6: fd00:11::1", "gateway6: fe80::1", 1), nil},
		{"overlapping address6", strings.Replace(cfgNS6, "tunnel:", `  - name: ns2
    veth: {host: veth2, peer: veth3}
    host_address: 11.11.12.1/24
    address: 11.11.12.100/24
    host_address6: fd00:11::2:1/112
    address6: fd00:11::2:100/112
tunnel:`, 1), []wantFieldErr{{17, "namespaces[1].address6", "overlaps subnet fd00:11::/64 of namespaces[0]"}}},
		{"bad relay", strings.Replace(cfgNS6, "  listen: 0.0.0.0:50000\n", "  listen: 0.0.0.0:50000\n  relay: maybe\n", 1),
			[]wantFieldErr{{14, "tunnel.relay", "true or false"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkConfigErrors(t, loadConfigString(t, tt.yaml, cfgLinks{}), tt.want)
		})
	}
}

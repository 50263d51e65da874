package agent

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"tunnel-agent/netcfg"
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
	d := Desired(cfg)
	var routes []string
	for _, r := range d.Routes {
		if r.NS == "ns1" {
			routes = append(routes, r.Dst.String()+" via "+r.Gw.String())
		}
	}
	if !slices.Equal(routes, []string{"0.0.0.0/0 via 11.11.11.1", "::/0 via fd00:11::1"}) {
		t.Errorf("namespace routes %v", routes)
	}
	want := map[string][]netip.Prefix{
		"veth0": cfgPrefixes("11.11.11.1/24", "fd00:11::1/64"),
		"veth1": cfgPrefixes("11.11.11.100/24", "fd00:11::100/64"),
	}
	for _, l := range d.Links {
		if w, ok := want[l.Name]; ok && !slices.Equal(l.Addrs, w) {
			t.Errorf("%s addresses %v, want %v", l.Name, l.Addrs, w)
		}
	}
	if got := localPrefixes(cfg, nil); !slices.Equal(got, cfgPrefixes("11.11.11.0/24", "fd00:11::/64")) {
		t.Errorf("default local prefixes %v", got)
	}
	var _ netcfg.Desired = d
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

func TestICMPSource6(t *testing.T) {
	for _, c := range []struct {
		addrs []string
		want  string
	}{
		{[]string{"192.168.1.1/24"}, "invalid IP"},
		{[]string{"192.168.1.1/24", "fe80::1/64"}, "fe80::1"},
		{[]string{"fe80::1/64", "2001:db8::1/64"}, "2001:db8::1"},
	} {
		if got := icmpSource6(cfgPrefixes(c.addrs...)).String(); got != c.want {
			t.Errorf("%v: %s, want %s", c.addrs, got, c.want)
		}
	}
}

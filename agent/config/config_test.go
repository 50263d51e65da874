package config

import (
	"errors"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// cfgLinks has the links named in it.
type cfgLinks map[string]bool

func (h cfgLinks) LinkExists(name string) bool { return h[name] }

// The host of cfgLinks has no addresses, default routes or other sites.
func (h cfgLinks) Addrs() ([]HostAddr, error)              { return nil, nil }
func (h cfgLinks) DefaultRoutes() ([]HostRoute, error)     { return nil, nil }
func (h cfgLinks) OtherSites(string) ([]SiteClaims, error) { return nil, nil }

var cfgHost = cfgLinks{"eth0": true, "enp6s0": true}

func cfgPrefix(s string) netip.Prefix     { return netip.MustParsePrefix(s) }
func cfgAddrPort(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }
func cfgPrefixes(s ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(s))
	for i, x := range s {
		out[i] = cfgPrefix(x)
	}
	return out
}

func TestLoadExampleConfigs(t *testing.T) {
	rxtxOff := Offloads{{Name: "rx", On: false}, {Name: "tx", On: false}}
	tests := []struct {
		file string
		want Config
	}{{
		file: "../../configs/server.yaml",
		want: Config{
			Site: "server",
			LAN:  LAN{Interface: "veth0", MTU: 1420, Offloads: rxtxOff},
			Namespaces: []Namespace{{
				Name:        "ns1",
				Veth:        Veth{Host: "veth0", Peer: "veth1", MTU: 1420, Offloads: rxtxOff},
				HostAddress: cfgPrefix("11.11.11.1/24"),
				Address:     cfgPrefix("11.11.11.100/24"),
				Gateway:     netip.MustParseAddr("11.11.11.1"),
			}},
			Tunnel: Tunnel{
				Listen:       cfgAddrPort("0.0.0.0:50000"),
				Peers:        []Peer{{Name: "client", Prefixes: cfgPrefixes("192.168.111.2/32"), Keepalive: 25 * time.Second}},
				Blackhole:    cfgPrefixes("192.168.111.0/30"),
				BlackholeSet: true,
			},
		},
	}, {
		file: "../../configs/client.yaml",
		want: Config{
			Site: "client",
			LAN:  LAN{Interface: "enp6s0", MTU: 1420},
			Tunnel: Tunnel{
				Listen: cfgAddrPort("0.0.0.0:60000"),
				Peers: []Peer{{Name: "server", Endpoint: cfgAddrPort("38.242.203.214:50000"),
					Prefixes: cfgPrefixes("11.11.11.100/32"), Keepalive: DefaultKeepalive}},
				Blackhole:    cfgPrefixes("11.11.11.0/24"),
				BlackholeSet: true,
			},
		},
	}, {
		file: "testdata/ipv6.yaml",
		want: Config{
			Site: "dual.stack-1",
			LAN: LAN{Interface: "veth6", Offloads: Offloads{
				{Name: "rx-checksum"}, {Name: "tx"}, {Name: "tx-udp_tnl-segmentation", On: true}}},
			Namespaces: []Namespace{{
				Name:        "ns6",
				Veth:        Veth{Host: "veth6", Peer: "veth6p", MTU: 1400},
				HostAddress: cfgPrefix("2001:db8:11::1/64"),
				Address:     cfgPrefix("2001:db8:11::100/64"),
				Gateway:     netip.MustParseAddr("2001:db8:11::1"),
			}},
			Tunnel: Tunnel{
				Listen:        cfgAddrPort("[::]:50000"),
				LocalPrefixes: cfgPrefixes("2001:db8:11::/64"),
				Peers: []Peer{
					{Name: "east", Endpoint: cfgAddrPort("[2001:db8::7]:60000"), Prefixes: cfgPrefixes("2001:db8:22::/64", "10.22.0.0/16")},
					{Name: "west", Endpoint: cfgAddrPort("198.51.100.9:60000"), Prefixes: cfgPrefixes("2001:db8:33::/48"), Keepalive: 90 * time.Second},
					{Name: "roaming", Prefixes: cfgPrefixes("2001:db8:44::5/128"), Keepalive: DefaultKeepalive},
				},
				Blackhole: cfgPrefixes("2001:db8:22::/64", "10.22.0.0/16", "2001:db8:33::/48", "2001:db8:44::5/128"),
			},
		},
	}}
	for _, tt := range tests {
		t.Run(filepath.Base(tt.file), func(t *testing.T) {
			got, err := Load(tt.file, cfgHost)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if !reflect.DeepEqual(*got, tt.want) {
				t.Errorf("Load(%s):\n got %+v\nwant %+v", tt.file, *got, tt.want)
			}
		})
	}
}

// cfgMinimal is the smallest valid file; cases below change one thing.
const cfgMinimal = `site: s
lan: {interface: eth0}
tunnel:
  listen: 0.0.0.0:50000
  peers:
    - name: p
      prefixes: [10.0.0.0/24]
`

func TestMinimalConfig(t *testing.T) {
	cfg := mustParseConfig(t, cfgMinimal)
	want := Tunnel{
		Listen:    cfgAddrPort("0.0.0.0:50000"),
		Peers:     []Peer{{Name: "p", Prefixes: cfgPrefixes("10.0.0.0/24"), Keepalive: DefaultKeepalive}},
		Blackhole: cfgPrefixes("10.0.0.0/24"),
	}
	if !reflect.DeepEqual(cfg.Tunnel, want) {
		t.Errorf("tunnel:\n got %+v\nwant %+v", cfg.Tunnel, want)
	}
}

// wantFieldErr is one expected FieldError: its line, field, and a part of its
// message.
type wantFieldErr struct {
	line  int
	field string
	msg   string
}

func TestConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []wantFieldErr
	}{
		{"missing site", strings.Replace(cfgMinimal, "site: s\n", "", 1),
			[]wantFieldErr{{1, "site", "required field is missing"}}},
		{"null site", strings.Replace(cfgMinimal, "site: s", "site:", 1),
			[]wantFieldErr{{1, "site", "missing value"}}},
		{"missing lan.interface", strings.Replace(cfgMinimal, "{interface: eth0}", "{mtu: 1420}", 1),
			[]wantFieldErr{{2, "lan.interface", "required"}}},
		{"missing listen", strings.Replace(cfgMinimal, "  listen: 0.0.0.0:50000\n", "", 1),
			[]wantFieldErr{{4, "tunnel.listen", "required"}}},
		{"no peers", strings.Replace(cfgMinimal, "peers:", "peers: []\n  old:", 1),
			[]wantFieldErr{{5, "tunnel.peers", "at least one peer"}, {6, "tunnel.old", "unknown field"}}},
		{"missing peer name", strings.Replace(cfgMinimal, "- name: p\n      prefixes", "- prefixes", 1),
			[]wantFieldErr{{6, "tunnel.peers[0].name", "required"}}},
		{"missing peer prefixes", strings.Replace(cfgMinimal, "\n      prefixes: [10.0.0.0/24]", "", 1),
			[]wantFieldErr{{6, "tunnel.peers[0].prefixes", "at least one prefix"}}},
		{"empty peer prefixes", strings.Replace(cfgMinimal, "[10.0.0.0/24]", "[]", 1),
			[]wantFieldErr{{7, "tunnel.peers[0].prefixes", "at least one prefix"}}},
		{"prefixes not a list", strings.Replace(cfgMinimal, "[10.0.0.0/24]", "10.0.0.0/24", 1),
			[]wantFieldErr{{7, "tunnel.peers[0].prefixes", "expected a list"}}},
		{"bad site", strings.Replace(cfgMinimal, "site: s", "site: my/site", 1),
			[]wantFieldErr{{1, "site", `invalid name "my/site"`}}},
		{"site dotdot", strings.Replace(cfgMinimal, "site: s", "site: ..", 1),
			[]wantFieldErr{{1, "site", "invalid name"}}},
		{"site too long", strings.Replace(cfgMinimal, "site: s", "site: "+strings.Repeat("x", 65), 1),
			[]wantFieldErr{{1, "site", "invalid name"}}},
		{"bad peer name", strings.Replace(cfgMinimal, "name: p", "name: p q", 1),
			[]wantFieldErr{{6, "tunnel.peers[0].name", "invalid name"}}},
		{"interface too long", strings.Replace(cfgMinimal, "eth0", "abcdefghijklmnop", 1),
			[]wantFieldErr{{2, "lan.interface", "invalid interface name"}}},
		{"interface slash", strings.Replace(cfgMinimal, "eth0", "eth/0", 1),
			[]wantFieldErr{{2, "lan.interface", "invalid interface name"}}},
		{"interface space", strings.Replace(cfgMinimal, "eth0", `"eth 0"`, 1),
			[]wantFieldErr{{2, "lan.interface", "invalid interface name"}}},
		{"interface not on host", strings.Replace(cfgMinimal, "eth0", "eth9", 1),
			[]wantFieldErr{{2, "lan.interface", `"eth9" does not exist on this host`}}},
		{"bad CIDR", strings.Replace(cfgMinimal, "[10.0.0.0/24]", "[10.0.0.0/24, 10.0.0.300/24]", 1),
			[]wantFieldErr{{7, "tunnel.peers[0].prefixes[1]", `invalid CIDR "10.0.0.300/24"`}}},
		{"host bits", strings.Replace(cfgMinimal, "10.0.0.0/24", "10.0.0.1/24", 1),
			[]wantFieldErr{{7, "tunnel.peers[0].prefixes[0]", "did you mean 10.0.0.0/24?"}}},
		{"prefix length", strings.Replace(cfgMinimal, "10.0.0.0/24", "10.0.0.0/33", 1),
			[]wantFieldErr{{7, "tunnel.peers[0].prefixes[0]", "invalid CIDR"}}},
		{"bad listen", strings.Replace(cfgMinimal, "0.0.0.0:50000", "0.0.0.0", 1),
			[]wantFieldErr{{4, "tunnel.listen", "want ADDRESS:PORT"}}},
		{"listen port 0", strings.Replace(cfgMinimal, "0.0.0.0:50000", "0.0.0.0:0", 1),
			[]wantFieldErr{{4, "tunnel.listen", "port 0"}}},
		{"listen port too big", strings.Replace(cfgMinimal, "0.0.0.0:50000", "0.0.0.0:65536", 1),
			[]wantFieldErr{{4, "tunnel.listen", "invalid address"}}},
		{"endpoint port 0", cfgWithPeerLine("endpoint: 203.0.113.7:0"),
			[]wantFieldErr{{8, "tunnel.peers[0].endpoint", "port 0"}}},
		{"endpoint unspecified", cfgWithPeerLine("endpoint: 0.0.0.0:50000"),
			[]wantFieldErr{{8, "tunnel.peers[0].endpoint", "not a peer address"}}},
		{"endpoint v6 unspecified", cfgWithPeerLine(`endpoint: "[::]:50000"`),
			[]wantFieldErr{{8, "tunnel.peers[0].endpoint", "not a peer address"}}},
		{"endpoint v6 from v4 listen", cfgWithPeerLine(`endpoint: "[2001:db8::1]:50000"`),
			[]wantFieldErr{{8, "tunnel.peers[0].endpoint", "is IPv6 but tunnel.listen"}}},
		{"endpoint in blackhole", cfgWithPeerLine("endpoint: 10.0.0.9:50000"),
			[]wantFieldErr{{7, "tunnel.peers[0].prefixes[0]", "would drop the tunnel's own datagrams"}}},
		{"keepalive without unit", cfgWithPeerLine("keepalive: 25"),
			[]wantFieldErr{{8, "tunnel.peers[0].keepalive", "want a Go duration"}}},
		{"keepalive negative", cfgWithPeerLine("keepalive: -1s"),
			[]wantFieldErr{{8, "tunnel.peers[0].keepalive", "negative"}}},
		{"mtu too small", strings.Replace(cfgMinimal, "{interface: eth0}", "{interface: eth0, mtu: 67}", 1),
			[]wantFieldErr{{2, "lan.mtu", "out of range"}}},
		{"mtu too big", strings.Replace(cfgMinimal, "{interface: eth0}", "{interface: eth0, mtu: 65536}", 1),
			[]wantFieldErr{{2, "lan.mtu", "out of range"}}},
		{"mtu not a number", strings.Replace(cfgMinimal, "{interface: eth0}", "{interface: eth0, mtu: big}", 1),
			[]wantFieldErr{{2, "lan.mtu", `invalid MTU "big"`}}},
		{"mtu a list", strings.Replace(cfgMinimal, "{interface: eth0}", "{interface: eth0, mtu: [1]}", 1),
			[]wantFieldErr{{2, "lan.mtu", "expected a single value, got a list"}}},
		{"offload bad value", strings.Replace(cfgMinimal, "{interface: eth0}", "{interface: eth0, offloads: {rx: yes}}", 1),
			[]wantFieldErr{{2, "lan.offloads.rx", `want on, off, true or false, got "yes"`}}},
		{"offload bad name", strings.Replace(cfgMinimal, "{interface: eth0}", "{interface: eth0, offloads: {RX: off}}", 1),
			[]wantFieldErr{{2, "lan.offloads.RX", `invalid feature name "RX"`}}},
		{"offloads not a mapping", strings.Replace(cfgMinimal, "{interface: eth0}", "{interface: eth0, offloads: [rx]}", 1),
			[]wantFieldErr{{2, "lan.offloads", "expected a mapping"}}},
		{"duplicate prefix in one peer", strings.Replace(cfgMinimal, "[10.0.0.0/24]", "[10.0.0.0/24, 10.0.0.0/24]", 1),
			[]wantFieldErr{{7, "tunnel.peers[0].prefixes[1]", "given twice"}}},
		{"same prefix two peers", cfgWithPeer("q", "10.0.0.0/24"),
			[]wantFieldErr{{9, "tunnel.peers[1].prefixes[0]", `also a prefix of peer "p"`}}},
		{"prefix inside another peer's", cfgWithPeer("q", "10.0.0.128/25"),
			[]wantFieldErr{{9, "tunnel.peers[1].prefixes[0]", `overlaps 10.0.0.0/24 of peer "p"`}}},
		{"prefix containing another peer's", cfgWithPeer("q", "10.0.0.0/8"),
			[]wantFieldErr{{9, "tunnel.peers[1].prefixes[0]", `overlaps 10.0.0.0/24 of peer "p"`}}},
		{"duplicate peer name", cfgWithPeer("p", "10.1.0.0/24"),
			[]wantFieldErr{{8, "tunnel.peers[1].name", `peer "p" is already defined at tunnel.peers[0].name`}}},
		{"blackhole overlaps no peer", cfgMinimal + "  blackhole: [10.0.0.0/16, 172.16.0.0/12]\n",
			[]wantFieldErr{{8, "tunnel.blackhole[1]", "overlaps no peer prefix"}}},
		{"blackhole host bits", cfgMinimal + "  blackhole: [10.0.0.1/16]\n",
			[]wantFieldErr{{8, "tunnel.blackhole[0]", "did you mean 10.0.0.0/16?"}}},
		{"local prefix host bits", cfgMinimal + "  local_prefixes: [192.168.1.1/24]\n",
			[]wantFieldErr{{8, "tunnel.local_prefixes[0]", "did you mean 192.168.1.0/24?"}}},
		{"local prefix is remote", cfgMinimal + "  local_prefixes: [10.0.0.0/8]\n",
			[]wantFieldErr{{8, "tunnel.local_prefixes[0]", `tunneled to peer "p"`}}},
		{"unknown top-level field", cfgMinimal + "colour: red\n",
			[]wantFieldErr{{8, "colour", `unknown field "colour" (known fields: site, lan, namespaces, tunnel, metrics)`}}},
		{"unknown peer field", cfgWithPeerLine("endpont: 1.2.3.4:5"),
			[]wantFieldErr{{8, "tunnel.peers[0].endpont", `unknown field "endpont"`}}},
		{"lan not a mapping", strings.Replace(cfgMinimal, "{interface: eth0}", "eth0", 1),
			[]wantFieldErr{{2, "lan", `expected a mapping, got "eth0"`}}},
		{"peers not a list", strings.Replace(cfgMinimal, "peers:\n    - name: p\n      prefixes: [10.0.0.0/24]", "peers: p", 1),
			[]wantFieldErr{{5, "tunnel.peers", `expected a list, got "p"`}}},
		{"empty peer item", strings.Replace(cfgMinimal, "  peers:\n", "  peers:\n    -\n", 1),
			[]wantFieldErr{{6, "tunnel.peers[0]", "empty list item"}}},
		{"duplicate key", strings.Replace(cfgMinimal, "name: p", "name: p\n      name: q", 1),
			[]wantFieldErr{{7, "tunnel.peers[0].name", `duplicate key "name" (first given at line 6)`}}},
		{"syntax error", "site: s\nlan:\n  interface: eth0\n   mtu: 1\n",
			[]wantFieldErr{{4, "", "invalid YAML"}}},
		{"tab", "site: s\nlan:\n\tinterface: eth0\n",
			[]wantFieldErr{{3, "", "invalid YAML"}}},
		{"unquoted IPv6 endpoint", cfgWithPeerLine("endpoint: [2001:db8::1]:50000"),
			[]wantFieldErr{{8, "", `quote an IPv6 ADDRESS:PORT`}}},
		{"unquoted IPv6 listen", strings.Replace(cfgMinimal, "0.0.0.0:50000", "[::]:50000", 1),
			[]wantFieldErr{{4, "", `quote an IPv6 ADDRESS:PORT`}}},
		{"empty file", "# nothing\n", []wantFieldErr{{0, "", "the file is empty"}}},
		{"two documents", strings.Replace(cfgMinimal, "site: s", "site: s/", 1) + "---\nsite: t\n",
			[]wantFieldErr{{1, "site", "invalid name"}, {8, "", "only one YAML document"}}},
		{"not a mapping", "- a\n", []wantFieldErr{{1, "", "expected a mapping, got a list"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkConfigErrors(t, loadConfigString(t, tt.yaml, cfgHost), tt.want)
		})
	}
}

// cfgWithPeerLine adds line (8) to the peer of cfgMinimal.
func cfgWithPeerLine(line string) string { return cfgMinimal + "      " + line + "\n" }

// cfgWithPeer adds a second peer (name at line 8, prefix at line 9).
func cfgWithPeer(name, prefix string) string {
	return cfgMinimal + "    - name: " + name + "\n      prefixes: [" + prefix + "]\n"
}

// cfgNSBase is cfgMinimal with a namespace (lines 3-8) that creates the LAN
// interface.
const cfgNSBase = `site: s
lan: {interface: veth0}
namespaces:
  - name: ns1
    veth: {host: veth0, peer: veth1}
    host_address: 11.11.11.1/24
    address: 11.11.11.100/24
    gateway: 11.11.11.1
tunnel:
  listen: 0.0.0.0:50000
  peers:
    - name: p
      prefixes: [10.0.0.0/24]
`

// cfgNS2 is a second namespace, inserted at lines 9-13 of cfgNSBase.
const cfgNS2 = `  - name: ns2
    veth: {host: veth2, peer: veth3}
    host_address: 11.11.12.1/24
    address: 11.11.12.100/24
`

func TestNamespaceErrors(t *testing.T) {
	second := strings.Replace(cfgNSBase, "tunnel:", cfgNS2+"tunnel:", 1)
	tests := []struct {
		name string
		yaml string
		want []wantFieldErr
	}{
		{"missing name", strings.Replace(cfgNSBase, "- name: ns1\n    veth", "- veth", 1),
			[]wantFieldErr{{4, "namespaces[0].name", "required"}}},
		{"bad name", strings.Replace(cfgNSBase, "name: ns1", "name: ns/1", 1),
			[]wantFieldErr{{4, "namespaces[0].name", "invalid name"}}},
		{"missing veth host and peer", strings.Replace(cfgNSBase, "{host: veth0, peer: veth1}", "{mtu: 1420}", 1),
			[]wantFieldErr{{5, "namespaces[0].veth.host", "required"}, {5, "namespaces[0].veth.peer", "required"}}},
		{"missing veth", strings.Replace(cfgNSBase, "    veth: {host: veth0, peer: veth1}\n", "", 1),
			[]wantFieldErr{{4, "namespaces[0].veth.host", "required"}, {4, "namespaces[0].veth.peer", "required"}}},
		{"missing addresses", strings.Replace(cfgNSBase, "    host_address: 11.11.11.1/24\n    address: 11.11.11.100/24\n", "", 1),
			[]wantFieldErr{{4, "namespaces[0].host_address", "required"}, {4, "namespaces[0].address", "required"}}},
		{"veth host is peer", strings.Replace(cfgNSBase, "peer: veth1", "peer: veth0", 1),
			[]wantFieldErr{{5, "namespaces[0].veth.peer", "different names"}}},
		{"veth peer lo", strings.Replace(cfgNSBase, "peer: veth1", "peer: lo", 1),
			[]wantFieldErr{{5, "namespaces[0].veth.peer", "loopback"}}},
		{"address without length", strings.Replace(cfgNSBase, "address: 11.11.11.100/24", "address: 11.11.11.100", 1),
			[]wantFieldErr{{7, "namespaces[0].address", "want ADDRESS/LENGTH"}}},
		{"addresses in different subnets", strings.Replace(cfgNSBase, "11.11.11.100/24", "11.11.12.100/24", 1),
			[]wantFieldErr{{7, "namespaces[0].address", "not in the same subnet"},
				{8, "namespaces[0].gateway", "not inside address's subnet"}}},
		{"addresses of different families", strings.Replace(cfgNSBase, "11.11.11.100/24", "2001:db8::100/64", 1),
			[]wantFieldErr{{7, "namespaces[0].address", "different IP families"},
				{8, "namespaces[0].gateway", "not inside address's subnet"}}},
		{"same address twice", strings.Replace(cfgNSBase, "11.11.11.100/24", "11.11.11.1/24", 1),
			[]wantFieldErr{{7, "namespaces[0].address", "also host_address"}, {8, "namespaces[0].gateway", "own address"}}},
		{"gateway outside", strings.Replace(cfgNSBase, "gateway: 11.11.11.1", "gateway: 11.11.12.1", 1),
			[]wantFieldErr{{8, "namespaces[0].gateway", "not inside address's subnet 11.11.11.0/24"}}},
		{"gateway is address", strings.Replace(cfgNSBase, "gateway: 11.11.11.1", "gateway: 11.11.11.100", 1),
			[]wantFieldErr{{8, "namespaces[0].gateway", "own address"}}},
		{"bad gateway", strings.Replace(cfgNSBase, "gateway: 11.11.11.1", "gateway: 11.11.11.1/24", 1),
			[]wantFieldErr{{8, "namespaces[0].gateway", "invalid IP address"}}},
		{"two namespaces", second, nil},
		{"duplicate namespace name", strings.Replace(second, "name: ns2", "name: ns1", 1),
			[]wantFieldErr{{9, "namespaces[1].name", `namespace "ns1" is already defined at namespaces[0].name`}}},
		{"veth host used twice", strings.Replace(second, "host: veth2", "host: veth0", 1),
			[]wantFieldErr{{10, "namespaces[1].veth.host", `"veth0" is already created by namespaces[0].veth.host`}}},
		{"overlapping subnets", strings.Replace(strings.Replace(second, "11.11.12.1/24", "11.11.11.2/24", 1), "11.11.12.100/24", "11.11.11.200/24", 1),
			[]wantFieldErr{{12, "namespaces[1].address", "overlaps subnet 11.11.11.0/24 of namespaces[0]"}}},
		{"ipv6 mtu", strings.Replace(strings.Replace(strings.Replace(cfgNSBase, "11.11.11.100/24", "2001:db8::100/64", 1),
			"11.11.11.1/24", "2001:db8::1/64", 1), "peer: veth1}", "peer: veth1, mtu: 1200}", 1),
			[]wantFieldErr{{5, "namespaces[0].veth.mtu", "IPv6 minimum"}, {8, "namespaces[0].gateway", "not inside"}}},
		{"lan mtu differs from veth mtu", strings.Replace(strings.Replace(cfgNSBase, "{interface: veth0}", "{interface: veth0, mtu: 1400}", 1),
			"peer: veth1}", "peer: veth1, mtu: 1420}", 1),
			[]wantFieldErr{{2, "lan.mtu", "differs from 1420 set by namespaces[0].veth.mtu"}}},
		{"lan offloads differ from veth", strings.Replace(strings.Replace(cfgNSBase, "{interface: veth0}", "{interface: veth0, offloads: {rx: on}}", 1),
			"peer: veth1}", "peer: veth1, offloads: {rx: off}}", 1),
			[]wantFieldErr{{2, "lan.offloads.rx", "differs from off"}}},
		{"lan created by another veth", strings.Replace(second, "{interface: veth0}", "{interface: veth2}", 1), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkConfigErrors(t, loadConfigString(t, tt.yaml, cfgLinks{}), tt.want)
		})
	}
}

func TestManyErrorsAtOnce(t *testing.T) {
	_, err := Load("testdata/many-errors.yaml", cfgHost)
	checkConfigErrors(t, err, []wantFieldErr{
		{1, "site", `invalid name ".."`},
		{4, "lan.mtu", "out of range"},
		{5, "lan.speed", `unknown field "speed"`},
		{10, "tunnel.peers[0].prefixes[1]", `invalid CIDR "10.0.1.300/24"`},
		{12, "tunnel.peers[1].endpoint", "want ADDRESS:PORT"},
		{13, "tunnel.peers[1].prefixes[0]", `overlaps 10.0.0.0/24 of peer "a"`},
		{14, "tunnel.peers[1].keepalive", "negative"},
		{15, "tunnel.blackhole[1]", "given twice"},
	})
	want := `testdata/many-errors.yaml:10:31: tunnel.peers[0].prefixes[1]: invalid CIDR "10.0.1.300/24": `
	if !strings.Contains(err.Error(), "\n"+want) {
		t.Errorf("Error() lacks line %q:\n%v", want, err)
	}
}

func TestUnknownFieldPosition(t *testing.T) {
	_, err := Parse("site.yaml", []byte(cfgWithPeerLine("prefix: [10.1.0.0/16]")), cfgHost)
	const want = `site.yaml:8:7: tunnel.peers[0].prefix: unknown field "prefix" (known fields: name, endpoint, prefixes, prefixes_file, keepalive, public_key, preshared_key_file)`
	if err == nil || err.Error() != want {
		t.Errorf("error:\n got %v\nwant %s", err, want)
	}
}

func TestMissingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nope.yaml")
	_, err := Load(path, nil)
	var ce *Error
	if !errors.As(err, &ce) || len(ce.Errors) != 1 || ce.Errors[0].Line != 0 || ce.Errors[0].File != path {
		t.Fatalf("Load(missing) = %#v, want one *Error at line 0", err)
	}
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("errors.Is(%v, fs.ErrNotExist) = false", err)
	}
	if want := path + ": cannot read the config file: no such file or directory"; err.Error() != want {
		t.Errorf("Error() = %q, want %q", err.Error(), want)
	}
}

func TestNilHostSkipsLinkCheck(t *testing.T) {
	yaml := strings.Replace(cfgMinimal, "eth0", "eth9", 1)
	if _, err := Parse("x.yaml", []byte(yaml), nil); err != nil {
		t.Errorf("nil host: %v", err)
	}
}

func TestDefaults(t *testing.T) {
	yaml := cfgMinimal + "      keepalive: 0\n" +
		"    - name: q\n      endpoint: 192.0.2.1:5\n      prefixes: [10.1.0.0/24, 10.2.0.0/24]\n"
	cfg := mustParseConfig(t, yaml)
	if got := cfg.Tunnel.Peers[0].Keepalive; got != 0 {
		t.Errorf("explicit keepalive 0 = %v, want 0", got)
	}
	if got := cfg.Tunnel.Peers[1].Keepalive; got != 25*time.Second {
		t.Errorf("default keepalive = %v, want 25s", got)
	}
	if want := cfgPrefixes("10.0.0.0/24", "10.1.0.0/24", "10.2.0.0/24"); !reflect.DeepEqual(cfg.Tunnel.Blackhole, want) || cfg.Tunnel.BlackholeSet {
		t.Errorf("default blackhole = %v (set %v), want %v (not set)", cfg.Tunnel.Blackhole, cfg.Tunnel.BlackholeSet, want)
	}
	cfg = mustParseConfig(t, cfgMinimal+"  blackhole: []\n")
	if len(cfg.Tunnel.Blackhole) != 0 || !cfg.Tunnel.BlackholeSet {
		t.Errorf("blackhole: [] = %v (set %v), want none (set)", cfg.Tunnel.Blackhole, cfg.Tunnel.BlackholeSet)
	}
}

func TestOffloadsYAML(t *testing.T) {
	var o Offloads
	src := "{tso: on, rx: OFF, gro: true, rx-checksum: false}"
	if err := yaml.Unmarshal([]byte(src), &o); err != nil {
		t.Fatal(err)
	}
	want := Offloads{{"tso", true}, {"rx", false}, {"gro", true}, {"rx-checksum", false}}
	if !reflect.DeepEqual(o, want) {
		t.Errorf("Unmarshal(%s) = %v, want %v", src, o, want)
	}
	out, err := yaml.Marshal(o)
	if err != nil || string(out) != "{tso: on, rx: off, gro: on, rx-checksum: off}\n" {
		t.Errorf("Marshal = %q, %v", out, err)
	}
	err = yaml.Unmarshal([]byte("{rx: maybe, rx: on}"), &o)
	var te *yaml.TypeError
	if !errors.As(err, &te) || len(te.Errors) != 2 || !strings.HasPrefix(te.Errors[0], "line 1: ") {
		t.Errorf("Unmarshal(bad) = %v, want a *yaml.TypeError with 2 lines", err)
	}
}

func TestLocate(t *testing.T) {
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(cfgMinimal), &doc); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		path      string
		line, col int
	}{
		{"", 1, 1},
		{"site", 1, 7},
		{"lan.interface", 2, 18},
		{"tunnel.peers[0].prefixes[0]", 7, 18},
		{"tunnel.peers[0].missing", 6, 7},
		{"tunnel.peers[3].name", 6, 5},
		{"tunnel.peers[x]", 6, 5},
	}
	for _, tt := range tests {
		n := locate(&doc, tt.path)
		if n == nil || n.Line != tt.line || n.Column != tt.col {
			t.Errorf("locate(%q) = %v, want %d:%d", tt.path, n, tt.line, tt.col)
		}
	}
	if n := locate(nil, "site"); n != nil {
		t.Errorf("locate(nil) = %v, want nil", n)
	}
}

func TestFieldErrorFormat(t *testing.T) {
	tests := []struct {
		fe   FieldError
		want string
	}{
		{FieldError{File: "a.yaml", Line: 3, Column: 5, Field: "site", Msg: "bad"}, "a.yaml:3:5: site: bad"},
		{FieldError{File: "a.yaml", Line: 3, Msg: "bad"}, "a.yaml:3: bad"},
		{FieldError{File: "a.yaml", Msg: "bad"}, "a.yaml: bad"},
		{FieldError{Field: "site", Msg: "bad"}, "<config>: site: bad"},
	}
	for _, tt := range tests {
		if got := tt.fe.Error(); got != tt.want {
			t.Errorf("Error() = %q, want %q", got, tt.want)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, name := range []string{"../../configs/server.yaml", "../../configs/client.yaml", "testdata/ipv6.yaml", "testdata/many-errors.yaml"} {
		data, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(cfgMinimal))
	f.Add([]byte("a: &a [*a]\n"))
	f.Add([]byte("tunnel: {peers: [~, *x]}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse("f.yaml", data, cfgHost)
		var ce *Error
		if err != nil && !errors.As(err, &ce) {
			t.Fatalf("error is %T, want *Error: %v", err, err)
		}
		if (cfg == nil) == (err == nil) {
			t.Fatalf("Parse = %v, %v: want exactly one of them", cfg, err)
		}
	})
}

// loadConfigString writes yaml to a file and loads it.
func loadConfigString(t *testing.T, yaml string, host HostInfo) error {
	t.Helper()
	path := filepath.Join(t.TempDir(), "site.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Load(path, host)
	return err
}

func mustParseConfig(t *testing.T, yaml string) *Config {
	t.Helper()
	cfg, err := Parse("site.yaml", []byte(yaml), cfgHost)
	if err != nil {
		t.Fatalf("Parse:\n%v\nfile:\n%s", err, yaml)
	}
	return cfg
}

// checkConfigErrors checks that err is a *Error holding exactly the
// wanted errors, in order (nil want: err must be nil).
func checkConfigErrors(t *testing.T, err error, want []wantFieldErr) {
	t.Helper()
	if len(want) == 0 {
		if err != nil {
			t.Fatalf("unexpected error:\n%v", err)
		}
		return
	}
	var ce *Error
	if !errors.As(err, &ce) {
		t.Fatalf("error = %v (%T), want a *Error", err, err)
	}
	if len(ce.Errors) != len(want) {
		t.Fatalf("got %d errors, want %d:\n%v", len(ce.Errors), len(want), err)
	}
	for i, w := range want {
		got := ce.Errors[i]
		if got.Line != w.line || got.Field != w.field || !strings.Contains(got.Msg, w.msg) {
			t.Errorf("error %d = %q\nwant line %d, field %q, message containing %q", i, got.Error(), w.line, w.field, w.msg)
		}
	}
}

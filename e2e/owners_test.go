package e2e

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/vishvananda/netlink"
)

// TestTwoSitesOverlappingClaimsRefused: with site one running, a second
// site that names its namespace and veth, or only its blackhole, is
// refused by `check` and `up` with exit 2, naming site one and its
// journal, and the host is left exactly as site one made it. Stopping
// site one then restores the host.
func TestTwoSitesOverlappingClaimsRefused(t *testing.T) {
	s, nsOne, nsTwo, state := newSharedHost(t)
	cfgOne := writeFile(t, s.dir, "one.yaml", siteYAML("one", nsOne, "va", 1, 50001))
	before := s.state(t)
	one := startAgent(t, s.host.Name, "up", "-c", cfgOne, "--state-dir", state)
	withOne := s.state(t)

	journal := filepath.Join(state, "one.json")
	cases := []struct{ name, yaml, field string }{
		{"same namespace and veth", siteYAML("two", nsOne, "va", 1, 50002), "namespaces[0].name"},
		{"same blackhole", strings.Replace(siteYAML("two", nsTwo, "vb", 2, 50002), "172.16.2.0/24", "172.16.1.0/24", 1),
			"tunnel.peers[0].prefixes[0]"},
	}
	for _, tc := range cases {
		cfgTwo := writeFile(t, s.dir, "two.yaml", tc.yaml)
		for _, cmd := range []string{"check", "up"} {
			out, code := runAgent(t, s.host.Name, cmd, "-c", cfgTwo, "--state-dir", state)
			if code != 2 || !strings.Contains(out, tc.field) ||
				!strings.Contains(out, `is also claimed by site "one" (journal `+journal+`)`) {
				t.Errorf("%s: %s of the second site: exit %d, want 2 naming %s and site one's journal:\n%s", tc.name, cmd, code, tc.field, out)
			}
			assertSameState(t, tc.name+": after the refused "+cmd, withOne, s.state(t))
		}
	}
	if code := one.stop(t, syscall.SIGINT); code != 0 {
		t.Fatalf("site one exit %d:\n%s", code, one.out.String())
	}
	assertSameState(t, "after stopping site one", before, s.state(t))
}

// TestTwoSitesStopInEitherOrder: two compatible sites share a host;
// whichever stops first leaves the other's configuration in place, and
// when both have stopped the host is as before.
func TestTwoSitesStopInEitherOrder(t *testing.T) {
	s, nsOne, nsTwo, state := newSharedHost(t)
	cfg := map[string]string{
		"one": writeFile(t, s.dir, "one.yaml", siteYAML("one", nsOne, "va", 1, 50001)),
		"two": writeFile(t, s.dir, "two.yaml", siteYAML("two", nsTwo, "vb", 2, 50002)),
	}
	marks := map[string][]string{
		"one": {"link va0 type=veth mtu=1420 flags=up", "dst=172.16.1.0/24"},
		"two": {"link vb0 type=veth mtu=1420 flags=up", "dst=172.16.2.0/24"},
	}
	before := s.state(t)
	for _, order := range [][2]string{{"one", "two"}, {"two", "one"}} {
		first, second := order[0], order[1]
		a := startAgent(t, s.host.Name, "up", "-c", cfg[first], "--state-dir", state)
		b := startAgent(t, s.host.Name, "up", "-c", cfg[second], "--state-dir", state)
		if code := a.stop(t, syscall.SIGINT); code != 0 {
			t.Fatalf("site %s exit %d:\n%s", first, code, a.out.String())
		}
		after := s.state(t)
		wantLines(t, second+" after "+first+" stopped", after, marks[second]...)
		for _, l := range marks[first] {
			if strings.Contains(after, l) {
				t.Errorf("%s stopped but %q remains:\n%s", first, l, after)
			}
		}
		if code := b.stop(t, syscall.SIGINT); code != 0 {
			t.Fatalf("site %s exit %d:\n%s", second, code, b.out.String())
		}
		assertSameState(t, first+" then "+second+" stopped", before, s.state(t))
	}
}

// TestHostObjectsRefused: a namespace subnet that is the host's WAN
// subnet, a peer prefix on the LAN interface's network (default local
// prefixes), and a blackhole over the host's default gateway are refused
// by `check` and `up` with exit 2, naming the host object, and nothing
// changes.
func TestHostObjectsRefused(t *testing.T) {
	s := newVPSSite(t)
	// The "VPS" gets a WAN interface with 198.18.0.2/24 and a default
	// route via 198.18.0.1 (a veth pair inside the test namespace).
	wan := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "wan0"}, PeerName: "wan1"}
	if err := s.host.NL.LinkAdd(wan); err != nil {
		t.Fatalf("add wan0: %v", err)
	}
	l, err := s.host.NL.LinkByName("wan0")
	if err == nil {
		err = s.host.NL.AddrAdd(l, &netlink.Addr{IPNet: &net.IPNet{IP: net.IPv4(198, 18, 0, 2), Mask: net.CIDRMask(24, 32)}})
	}
	if err == nil {
		err = s.host.NL.LinkSetUp(l)
	}
	if err == nil {
		err = s.host.NL.RouteAdd(&netlink.Route{LinkIndex: l.Attrs().Index, Gw: net.IPv4(198, 18, 0, 1)})
	}
	if err != nil {
		t.Fatalf("set up wan0: %v", err)
	}
	before := s.state(t)
	server, err := os.ReadFile(s.config(t, ""))
	if err != nil {
		t.Fatal(err)
	}
	wanSubnet := strings.NewReplacer("11.11.11.1/24", "198.18.0.1/24", "11.11.11.100/24", "198.18.0.100/24",
		"gateway: 11.11.11.1", "gateway: 198.18.0.1").Replace(string(server))
	lanPrefix := `site: lanclash
lan: {interface: wan0}
tunnel:
  listen: 127.0.0.1:50003
  peers:
    - name: p
      prefixes: [198.18.0.64/26]
`
	gateway := `site: gwclash
lan: {interface: wan0}
tunnel:
  listen: 127.0.0.1:50004
  local_prefixes: [10.99.0.0/24]
  peers:
    - name: p
      prefixes: [198.18.0.0/16]
`
	cases := []struct{ name, yaml, want string }{
		{"WAN subnet", wanSubnet, "subnet 198.18.0.0/24 overlaps 198.18.0.2/24, already on the host's interface wan0"},
		{"LAN prefix", lanPrefix, "a local prefix (the network of 198.18.0.2/24 on lan.interface wan0)"},
		{"default gateway", gateway, "contains the gateway of the host's default route (default via 198.18.0.1 dev wan0)"},
	}
	for _, tc := range cases {
		file := writeFile(t, s.dir, "clash.yaml", tc.yaml)
		for _, cmd := range []string{"check", "up"} {
			out, code := runAgent(t, s.host.Name, s.args(cmd, file)...)
			if code != 2 || !strings.Contains(out, tc.want) {
				t.Errorf("%s: %s exit %d, want 2 and %q:\n%s", tc.name, cmd, code, tc.want, out)
			}
			assertSameState(t, tc.name+": after "+cmd, before, s.state(t))
		}
	}
}

package config

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// fakeHostInfo is a host with addresses, default routes and other sites.
type fakeHostInfo struct {
	cfgLinks
	addrs  []HostAddr
	routes []HostRoute
	sites  []SiteClaims
}

func (h fakeHostInfo) Addrs() ([]HostAddr, error)          { return h.addrs, nil }
func (h fakeHostInfo) DefaultRoutes() ([]HostRoute, error) { return h.routes, nil }
func (h fakeHostInfo) OtherSites(site string) ([]SiteClaims, error) {
	return slices.DeleteFunc(slices.Clone(h.sites), func(s SiteClaims) bool { return s.Site == site }), nil
}

func hostAddr(link, p string) HostAddr { return HostAddr{Link: link, Prefix: netip.MustParsePrefix(p)} }

// nsBaseClaims is what the journal of site, running cfgNSBase, claims
// (the agent's tests derive it from the journal itself).
func nsBaseClaims(dir, site string) SiteClaims {
	return SiteClaims{Site: site, Journal: filepath.Join(dir, site+".json"), Namespaces: []string{"ns1"},
		Links: []string{"veth0"}, Addrs: []HostAddr{hostAddr("veth0", "11.11.11.1/24")}, Routes: cfgPrefixes("10.0.0.0/24")}
}

func withSite(yaml, site string) string {
	return strings.Replace(yaml, "site: s\n", "site: "+site+"\n", 1)
}

// TestOtherSitesClaims: a second site naming the namespace, veth,
// subnet or blackhole of a site whose journal is in the state directory
// is refused at each field, naming the other site and its journal.
func TestOtherSitesClaims(t *testing.T) {
	dir := t.TempDir()
	one := nsBaseClaims(dir, "one")
	host := fakeHostInfo{cfgLinks: cfgHost, sites: []SiteClaims{one},
		addrs: []HostAddr{hostAddr("veth0", "11.11.11.1/24"), hostAddr("eth0", "198.18.0.2/24")}}
	claimed := `is also claimed by site "one" (journal ` + one.Journal + `)`
	err := loadConfigString(t, withSite(cfgNSBase, "two"), host)
	checkConfigErrors(t, err, []wantFieldErr{
		{4, "namespaces[0].name", `namespace "ns1" ` + claimed},
		{5, "namespaces[0].veth.host", `interface "veth0" ` + claimed},
		{6, "namespaces[0].host_address", `subnet 11.11.11.0/24 overlaps 11.11.11.1/24 on veth0 of site "one"`},
		{13, "tunnel.peers[0].prefixes[0]", "blackhole route 10.0.0.0/24 " + claimed},
	})

	// The same file is site one itself (a leftover it reverts first, or
	// a reload of the running site): no clash with itself.
	checkConfigErrors(t, loadConfigString(t, withSite(cfgNSBase, "one"), host), nil)

	// A compatible second site: its own namespace, veth, subnet, prefix.
	compatible := withSite(strings.NewReplacer("ns1", "ns2", "veth0", "veth2", "veth1", "veth3",
		"11.11.11.", "11.11.12.", "10.0.0.0/24", "10.0.1.0/24").Replace(cfgNSBase), "two")
	checkConfigErrors(t, loadConfigString(t, compatible, host), nil)
}

// TestOtherSiteInAnotherNetNS: a site whose changes were made in another
// network namespace clashes only through the named namespaces, which
// every namespace sees; its interfaces and routes are elsewhere.
func TestOtherSiteInAnotherNetNS(t *testing.T) {
	one := SiteClaims{Site: "one", Journal: filepath.Join(t.TempDir(), "one.json"), Namespaces: []string{"ns1"}} // made in another namespace
	host := fakeHostInfo{cfgLinks: cfgHost, sites: []SiteClaims{one}}
	checkConfigErrors(t, loadConfigString(t, withSite(cfgNSBase, "two"), host), []wantFieldErr{
		{4, "namespaces[0].name", `namespace "ns1" is also claimed by site "one"`},
	})
	other := withSite(strings.NewReplacer("ns1", "ns2").Replace(cfgNSBase), "two")
	checkConfigErrors(t, loadConfigString(t, other, host), nil)
}

// TestOtherSitesLinkSettings: two sites setting the MTU of one LAN
// interface clash (the first to stop restores it under the second).
func TestOtherSitesLinkSettings(t *testing.T) {
	dir := t.TempDir()
	withMTU := strings.Replace(cfgMinimal, "lan: {interface: eth0}", "lan: {interface: eth0, mtu: 1420}", 1)
	one := SiteClaims{Site: "one", Journal: filepath.Join(dir, "one.json"), Links: []string{"eth0"}, Routes: cfgPrefixes("10.0.0.0/24")}
	host := fakeHostInfo{cfgLinks: cfgHost, sites: []SiteClaims{one}}
	two := withSite(strings.Replace(withMTU, "10.0.0.0/24", "10.0.1.0/24", 1), "two")
	checkConfigErrors(t, loadConfigString(t, two, host), []wantFieldErr{
		{2, "lan.mtu", `the settings of interface "eth0" is also claimed by site "one"`},
	})
	// Capturing on the same interface without changing it is no clash.
	plain := withSite(strings.Replace(cfgMinimal, "10.0.0.0/24", "10.0.1.0/24", 1), "two")
	checkConfigErrors(t, loadConfigString(t, plain, host), nil)
}

// TestOtherSiteJournalUnreadable: what a damaged journal claims is
// unknown, so the site is refused until it is dealt with.
func TestOtherSiteJournalUnreadable(t *testing.T) {
	path := filepath.Join(t.TempDir(), "one.json")
	host := fakeHostInfo{cfgLinks: cfgHost, sites: []SiteClaims{{Site: "one", Journal: path, Err: errors.New("parse journal: unexpected end of JSON input")}}}
	checkConfigErrors(t, loadConfigString(t, cfgMinimal, host), []wantFieldErr{
		{1, "site", "cannot read " + path + ", the journal of another site"},
	})
}

// TestHostSubnets: a namespace subnet already on the host (the WAN's own)
// is refused; the file's own veth holding it (a leftover, a reload) is
// not another owner.
func TestHostSubnets(t *testing.T) {
	wan := strings.NewReplacer("11.11.11.1/24", "198.18.0.1/24", "11.11.11.100/24", "198.18.0.100/24",
		"gateway: 11.11.11.1", "gateway: 198.18.0.1").Replace(cfgNSBase)
	host := fakeHostInfo{cfgLinks: cfgHost, addrs: []HostAddr{hostAddr("eth0", "198.18.0.2/24"), hostAddr("eth0", "fe80::1/64")}}
	checkConfigErrors(t, loadConfigString(t, wan, host), []wantFieldErr{
		{6, "namespaces[0].host_address", "subnet 198.18.0.0/24 overlaps 198.18.0.2/24, already on the host's interface eth0"},
	})
	own := fakeHostInfo{cfgLinks: cfgHost, addrs: []HostAddr{hostAddr("veth0", "11.11.11.1/24")}}
	checkConfigErrors(t, loadConfigString(t, cfgNSBase, own), nil)
}

// TestDefaultLocalPrefixes: with local_prefixes left out, a peer prefix
// may overlap neither the networks of the LAN interface's addresses (read
// from the host) nor a namespace's subnet.
func TestDefaultLocalPrefixes(t *testing.T) {
	host := fakeHostInfo{cfgLinks: cfgHost, addrs: []HostAddr{hostAddr("eth0", "10.0.0.5/24"), hostAddr("eth0", "fe80::5/64")}}
	checkConfigErrors(t, loadConfigString(t, cfgMinimal, host), []wantFieldErr{
		{7, "tunnel.peers[0].prefixes[0]", "overlaps 10.0.0.0/24, a local prefix (the network of 10.0.0.5/24 on lan.interface eth0)"},
	})
	ns := strings.Replace(cfgNSBase, "10.0.0.0/24", "11.11.11.0/25", 1)
	checkConfigErrors(t, loadConfigString(t, ns, fakeHostInfo{cfgLinks: cfgHost}), []wantFieldErr{
		{13, "tunnel.peers[0].prefixes[0]", "a local prefix (the subnet of namespaces[0].address)"},
	})
	// With local_prefixes given, the LAN's subnet is still the host's:
	// the blackhole route would replace its route.
	explicit := strings.Replace(cfgMinimal, "  peers:", "  local_prefixes: [192.168.0.0/24]\n  peers:", 1)
	checkConfigErrors(t, loadConfigString(t, explicit, host), []wantFieldErr{
		{8, "tunnel.peers[0].prefixes[0]", "lies in the subnet of 10.0.0.5/24 on the host's interface eth0"},
	})
}

// TestBlackholeOverHostRoutes: a blackhole may not take the host's
// default route, its gateway, or a subnet on its interfaces.
func TestBlackholeOverHostRoutes(t *testing.T) {
	host := fakeHostInfo{cfgLinks: cfgLinks{"eth0": true, "lan0": true},
		addrs: []HostAddr{hostAddr("eth0", "198.18.0.2/24")},
		routes: []HostRoute{{Dst: netip.MustParsePrefix("0.0.0.0/0"), Gw: netip.MustParseAddr("198.18.0.1"), Dev: "eth0"},
			{Dst: netip.MustParsePrefix("::/0"), Gw: netip.MustParseAddr("fe80::1"), Dev: "eth0"}}}
	file := func(prefix string) string {
		return strings.NewReplacer("interface: eth0", "interface: lan0", "10.0.0.0/24", prefix).Replace(cfgMinimal)
	}
	tests := []struct{ prefix, msg string }{
		{"0.0.0.0/0", "0.0.0.0/0 would replace the host's default route (default via 198.18.0.1 dev eth0): its blackhole route would cut the host off"},
		{`"::/0"`, "would replace the host's default route (default via fe80::1 dev eth0)"},
		{"198.18.0.0/16", "contains the gateway of the host's default route (default via 198.18.0.1 dev eth0)"},
		{"198.18.0.128/25", "lies in the subnet of 198.18.0.2/24 on the host's interface eth0"},
	}
	for _, tt := range tests {
		checkConfigErrors(t, loadConfigString(t, file(tt.prefix), host), []wantFieldErr{{7, "tunnel.peers[0].prefixes[0]", tt.msg}})
	}
	given := strings.Replace(file("198.18.1.0/24"), "  peers:", "  blackhole: [198.18.0.0/16]\n  peers:", 1)
	checkConfigErrors(t, loadConfigString(t, given, host), []wantFieldErr{
		{5, "tunnel.blackhole[0]", "contains the gateway of the host's default route"},
	})
	checkConfigErrors(t, loadConfigString(t, file("10.9.0.0/16"), host), nil)
}

// TestCheckClaims: the re-check `up` makes under the state directory's
// lock places its findings in the file.
func TestCheckClaims(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "two.yaml")
	yaml := withSite(cfgNSBase, "two")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := mustParseConfig(t, yaml)
	if err := CheckClaims(cfg, path, fakeHostInfo{cfgLinks: cfgHost}); err != nil {
		t.Fatalf("no other site: %v", err)
	}
	host := fakeHostInfo{cfgLinks: cfgHost, sites: []SiteClaims{nsBaseClaims(dir, "one")}}
	var ce *Error
	if err := CheckClaims(cfg, path, host); !errors.As(err, &ce) || ce.Errors[0].Line != 4 || ce.Errors[0].File != path {
		t.Fatalf("CheckClaims = %v, want a *Error at %s:4", err, path)
	}
}

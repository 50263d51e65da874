package agent

import (
	"net/netip"
	"path/filepath"
	"reflect"
	"slices"
	"testing"

	"tunnel-agent/agent/config"
	"tunnel-agent/dataplane/afpacket"
	"tunnel-agent/netcfg"
)

// Tests of the mapping of a site onto the host configuration (Desired),
// the dataplane's options, and of the claims read back from a journal.

var (
	pfx  = netip.MustParsePrefix
	addr = netip.MustParseAddr
)

// nsSite is the tutorial's VPS side: ns1 behind veth0/veth1, blackhole
// 10.0.0.0/24.
func nsSite() *config.Config {
	return &config.Config{Site: "one", LAN: config.LAN{Interface: "veth0"},
		Namespaces: []config.Namespace{{Name: "ns1", Veth: config.Veth{Host: "veth0", Peer: "veth1"},
			HostAddress: pfx("11.11.11.1/24"), Address: pfx("11.11.11.100/24"), Gateway: addr("11.11.11.1")}},
		Tunnel: config.Tunnel{Blackhole: []netip.Prefix{pfx("10.0.0.0/24")}}}
}

func TestDesiredDualStack(t *testing.T) {
	cfg := nsSite()
	ns := &cfg.Namespaces[0]
	ns.HostAddress6, ns.Address6, ns.Gateway6 = pfx("fd00:11::1/64"), pfx("fd00:11::100/64"), addr("fd00:11::1")
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
		"veth0": {pfx("11.11.11.1/24"), pfx("fd00:11::1/64")},
		"veth1": {pfx("11.11.11.100/24"), pfx("fd00:11::100/64")},
	}
	for _, l := range d.Links {
		if w, ok := want[l.Name]; ok && !slices.Equal(l.Addrs, w) {
			t.Errorf("%s addresses %v, want %v", l.Name, l.Addrs, w)
		}
	}
	if got := localPrefixes(cfg, nil); !slices.Equal(got, []netip.Prefix{pfx("11.11.11.0/24"), pfx("fd00:11::/64")}) {
		t.Errorf("default local prefixes %v", got)
	}
}

func TestICMPSource6(t *testing.T) {
	for _, c := range []struct {
		addrs []netip.Prefix
		want  string
	}{
		{[]netip.Prefix{pfx("192.168.1.1/24")}, "invalid IP"},
		{[]netip.Prefix{pfx("192.168.1.1/24"), pfx("fe80::1/64")}, "fe80::1"},
		{[]netip.Prefix{pfx("fe80::1/64"), pfx("2001:db8::1/64")}, "2001:db8::1"},
	} {
		if got := icmpSource6(c.addrs).String(); got != c.want {
			t.Errorf("%v: %s, want %s", c.addrs, got, c.want)
		}
	}
}

func TestCaptureOptions(t *testing.T) {
	for mode, ring := range map[config.CaptureMode]bool{config.CaptureSocket: false, config.CaptureRing: true} {
		if got := captureOptions(&config.Config{LAN: config.LAN{Capture: mode}}); got != (afpacket.Options{Ring: ring}) {
			t.Errorf("lan.capture %q: options %+v", mode, got)
		}
	}
}

// TestJournalClaims: what another site's journal claims, as the config
// package checks a file against it: its namespaces, interfaces, addresses
// and routes (of a journal made elsewhere, only its namespaces).
func TestJournalClaims(t *testing.T) {
	journal := func(cfg *config.Config) (string, *netcfg.Journal) {
		path := filepath.Join(t.TempDir(), cfg.Site+".json")
		j := netcfg.NewJournal(path, cfg.Site)
		for _, e := range netcfg.Entries(Desired(cfg)) {
			e.State = netcfg.Done
			j.Entries = append(j.Entries, e)
		}
		return path, j
	}
	path, j := journal(nsSite())
	want := config.SiteClaims{Site: "one", Journal: path, Namespaces: []string{"ns1"}, Links: []string{"veth0"},
		Addrs: []config.HostAddr{{Link: "veth0", Prefix: pfx("11.11.11.1/24")}}, Routes: []netip.Prefix{pfx("10.0.0.0/24")}}
	got := journalClaims(path, j, false)
	got.Namespaces, got.Links = slices.Compact(got.Namespaces), slices.Compact(got.Links)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("claims\n%+v\nwant\n%+v", got, want)
	}
	if got := journalClaims(path, j, true); !reflect.DeepEqual(slices.Compact(got.Namespaces), []string{"ns1"}) ||
		got.Links != nil || got.Addrs != nil || got.Routes != nil {
		t.Errorf("claims of a journal made elsewhere: %+v; want its namespaces only", got)
	}
	lan := &config.Config{Site: "two", LAN: config.LAN{Interface: "eth0", MTU: 1420}}
	path, j = journal(lan)
	if got := journalClaims(path, j, false); !reflect.DeepEqual(got, config.SiteClaims{Site: "two", Journal: path, Links: []string{"eth0"}}) {
		t.Errorf("claims of a LAN MTU: %+v", got)
	}
}

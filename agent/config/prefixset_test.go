package config

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestPrefixChecksMatchPairwise: the trie-based overlap checks report
// exactly what comparing every pair reports (the definitions in
// docs/config.md), on random peers, local prefixes, blackholes and
// endpoints drawn from a small space so that they often overlap.
func TestPrefixChecksMatchPairwise(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 0))
	randPrefix := func() netip.Prefix {
		if rng.IntN(4) == 0 {
			bits := 44 + rng.IntN(8)
			a := netip.AddrFrom16([16]byte{0xfd, 0, 0, byte(rng.IntN(4)), byte(rng.IntN(4) << 4)})
			return netip.PrefixFrom(a, bits).Masked()
		}
		bits := 20 + rng.IntN(9)
		a := netip.AddrFrom4([4]byte{10, byte(rng.IntN(2)), byte(rng.IntN(16) << 4), 0})
		return netip.PrefixFrom(a, bits).Masked()
	}
	for round := range 300 {
		cfg := &Config{}
		for i := range 1 + rng.IntN(6) {
			p := Peer{Name: fmt.Sprint("p", i)}
			for range 1 + rng.IntN(4) {
				p.Prefixes = append(p.Prefixes, randPrefix())
			}
			if rng.IntN(2) == 0 {
				p.Endpoint = netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, byte(rng.IntN(256)), 1}), 5000)
			}
			cfg.Tunnel.Peers = append(cfg.Tunnel.Peers, p)
		}
		for range rng.IntN(3) {
			cfg.Tunnel.LocalPrefixes = append(cfg.Tunnel.LocalPrefixes, randPrefix())
		}
		cfg.Tunnel.BlackholeSet = rng.IntN(2) == 0
		if cfg.Tunnel.BlackholeSet {
			for range rng.IntN(4) {
				cfg.Tunnel.Blackhole = append(cfg.Tunnel.Blackhole, randPrefix())
			}
		}
		got := &problems{}
		v := validator{cfg: cfg, ps: got}
		v.prefixClashes()
		v.localPrefixes()
		v.blackhole()
		want := pairwiseChecks(cfg)
		if g, w := problemLines(got), strings.Join(want, "\n"); g != w {
			t.Fatalf("round %d, %+v:\ngot\n%s\nwant\n%s", round, cfg.Tunnel, g, w)
		}
	}
}

func problemLines(ps *problems) string {
	var out []string
	for _, p := range ps.list {
		out = append(out, p.path+": "+p.err.Error())
	}
	return strings.Join(out, "\n")
}

// pairwiseChecks is the reference: the checks as they read in the docs,
// comparing every pair (what the validator did before it used a trie).
func pairwiseChecks(cfg *Config) []string {
	var out []string
	t := cfg.Tunnel
	all := validator{cfg: cfg}.peerPrefixes()
	for j, b := range all {
		for _, a := range all[:j] {
			if msg := prefixClash(a, b, t.Peers[a.peer].Name); msg != "" {
				out = append(out, b.path+": "+msg)
				break
			}
		}
	}
	repeats := func(path string, list []netip.Prefix) {
		for i, p := range list {
			if j := slices.Index(list[:i], p); j >= 0 {
				out = append(out, fmt.Sprintf("%s[%d]: %s is given twice (also %s[%d])", path, i, p, path, j))
			}
		}
	}
	repeats("tunnel.local_prefixes", t.LocalPrefixes)
	for i, l := range t.LocalPrefixes {
		if k := slices.IndexFunc(all, func(pp peerPrefix) bool { return pp.p.Overlaps(l) }); k >= 0 {
			out = append(out, fmt.Sprintf("tunnel.local_prefixes[%d]: %s overlaps %s, tunneled to peer %q (%s); a destination is either local or remote",
				i, l, all[k].p, t.Peers[all[k].peer].Name, all[k].path))
		}
	}
	endpoints := func(path string, b netip.Prefix, note string) {
		for _, p := range t.Peers {
			if ep := p.Endpoint.Addr(); ep.IsValid() && b.Contains(ep) {
				out = append(out, fmt.Sprintf("%s: %s contains the endpoint %s of peer %q: its blackhole route would drop the tunnel's own datagrams%s",
					path, b, ep, p.Name, note))
			}
		}
	}
	peerErrors := slices.ContainsFunc(out, func(l string) bool { return strings.HasPrefix(l, "tunnel.peers[") })
	if t.BlackholeSet {
		repeats("tunnel.blackhole", t.Blackhole)
		for i, b := range t.Blackhole {
			if !peerErrors && !slices.ContainsFunc(all, func(pp peerPrefix) bool { return pp.p.Overlaps(b) }) {
				out = append(out, fmt.Sprintf("tunnel.blackhole[%d]: %s overlaps no peer prefix: its packets would be dropped and never tunneled", i, b))
			}
		}
		for i, b := range t.Blackhole {
			endpoints(fmt.Sprintf("tunnel.blackhole[%d]", i), b, "")
		}
		return out
	}
	for _, pp := range all {
		endpoints(pp.path, pp.p, " (tunnel.blackhole defaults to every peer prefix; give it to choose)")
	}
	return out
}

// hubConfig is a hub's site file with n peers, one /24 each.
func hubConfig(n int) string {
	var b strings.Builder
	b.WriteString("site: hub\nlan: {interface: eth0}\ntunnel:\n  listen: 0.0.0.0:50000\n  peers:\n")
	for i := range n {
		fmt.Fprintf(&b, "    - {name: p%d, prefixes: [10.%d.%d.0/24]}\n", i, i/256, i%256)
	}
	return b.String()
}

// BenchmarkParseHubConfig: parsing and validating a hub's file of 10,000
// peers (what `check` does before it reads the host).
func BenchmarkParseHubConfig(b *testing.B) {
	data := []byte(hubConfig(10000))
	path := filepath.Join(b.TempDir(), "hub.yaml")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := Load(path, nil); err != nil {
			b.Fatal(err)
		}
	}
}

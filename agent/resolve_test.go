package agent

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"tunnel-agent/agent/config"
)

// fakeDNS answers from a map it can change; it counts lookups.
type fakeDNS struct {
	mu    sync.Mutex
	addrs map[string][]netip.Addr
	calls int
}

func (f *fakeDNS) lookup(_ context.Context, host string) ([]netip.Addr, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if a, ok := f.addrs[host]; ok {
		return a, nil
	}
	return nil, errors.New("no such host")
}

func (f *fakeDNS) set(host string, a ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.addrs[host] = nil
	for _, s := range a {
		f.addrs[host] = append(f.addrs[host], netip.MustParseAddr(s))
	}
}

func TestResolveEndpointsPicksListenFamily(t *testing.T) {
	dns := &fakeDNS{addrs: map[string][]netip.Addr{}}
	dns.set("vpn.test", "2001:db8::1", "192.0.2.7")
	cfg := &config.Config{Tunnel: config.Tunnel{Listen: netip.MustParseAddrPort("0.0.0.0:1"),
		Peers: []config.Peer{{Name: "p", EndpointName: "vpn.test:50000"}}}}
	if err := resolveEndpoints(cfg, dns.lookup); err != nil {
		t.Fatal(err)
	}
	if got := cfg.Tunnel.Peers[0].Endpoint; got != netip.MustParseAddrPort("192.0.2.7:50000") {
		t.Errorf("endpoint %v", got)
	}
	cfg.Tunnel.Peers[0].EndpointName = "gone.test:1"
	if err := resolveEndpoints(cfg, dns.lookup); err == nil || !strings.Contains(err.Error(), "tunnel.peers[0].endpoint") {
		t.Errorf("unresolvable name: %v", err)
	}
}

// TestReresolveWhenUnanswered: a named peer heard of recently is left
// alone; one silent for 3 keepalive intervals is re-resolved (once per 3
// intervals) and the dataplane moved to its new address.
func TestReresolveWhenUnanswered(t *testing.T) {
	dns := &fakeDNS{addrs: map[string][]netip.Addr{}}
	dns.set("vpn.test", "192.0.2.7")
	cfg := &config.Config{LAN: config.LAN{Interface: "lo"}, Tunnel: config.Tunnel{Listen: netip.MustParseAddrPort("0.0.0.0:1"),
		LocalPrefixes: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/24")},
		Peers: []config.Peer{{Name: "p", EndpointName: "vpn.test:50000", Keepalive: time.Second,
			Prefixes: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/24")}}}}}
	if err := resolveEndpoints(cfg, dns.lookup); err != nil {
		t.Fatal(err)
	}
	tun, _, o := plainForTest(t, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	l := &liveSite{o: o, cfg: cfg, tun: tun, lookup: dns.lookup, met: newMetrics()}
	start := time.Now()
	last := map[string]time.Time{}
	dns.set("vpn.test", "192.0.2.8")
	l.reresolveDue(last, start, start.Add(2*time.Second))
	if dns.calls != 1 {
		t.Fatalf("re-resolved before 3 intervals of silence (%d lookups)", dns.calls)
	}
	l.reresolveDue(last, start, start.Add(3*time.Second))
	if got := tun.Stats().Peers[0].ConfiguredEndpoint; got != netip.MustParseAddrPort("192.0.2.8:50000") {
		t.Errorf("endpoint after re-resolution %v", got)
	}
	l.reresolveDue(last, start, start.Add(4*time.Second))
	if dns.calls != 2 {
		t.Errorf("%d lookups; want one per 3 intervals", dns.calls)
	}
}

// TestResolvedEndpointInBlackhole: an endpoint name that resolves into a
// blackhole prefix is refused like a literal one (the tunnel's own
// datagrams would be dropped), and a re-resolution does not move there.
func TestResolvedEndpointInBlackhole(t *testing.T) {
	path := filepath.Join(t.TempDir(), "site.yaml")
	yaml := "site: s\nlan: {interface: eth0}\ntunnel:\n  listen: 0.0.0.0:1\n  peers:\n    - name: p\n" +
		"      endpoint: vpn.test:50000\n      prefixes: [10.1.0.0/24]\n  blackhole: [10.1.0.0/16]\n"
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	dns := &fakeDNS{addrs: map[string][]netip.Addr{}}
	dns.set("vpn.test", "10.1.200.1")
	if err := resolveEndpoints(cfg, dns.lookup); err != nil {
		t.Fatal(err)
	}
	var ce *config.Error
	if err := config.CheckResolved(cfg, path); !errors.As(err, &ce) || len(ce.Errors) != 1 || ce.Errors[0].Line != 9 ||
		ce.Errors[0].Field != "tunnel.blackhole[0]" ||
		!strings.Contains(ce.Errors[0].Msg, `10.1.0.0/16 contains the endpoint 10.1.200.1 (resolved from vpn.test:50000) of peer "p"`) {
		t.Errorf("CheckResolved = %v", err)
	}

	dns.set("vpn.test", "192.0.2.7")
	if err := resolveEndpoints(cfg, dns.lookup); err != nil {
		t.Fatal(err)
	}
	if err := config.CheckResolved(cfg, path); err != nil {
		t.Fatalf("endpoint outside the blackhole: %v", err)
	}
	var logged strings.Builder
	l := &liveSite{o: &options{log: slog.New(slog.NewTextHandler(&logged, nil))}, cfg: cfg, lookup: dns.lookup, met: newMetrics()}
	dns.set("vpn.test", "10.1.9.9")
	l.reresolve(cfg.Tunnel.Peers[0], cfg.Tunnel.Listen)
	if got := l.cfg.Tunnel.Peers[0].Endpoint; got != netip.MustParseAddrPort("192.0.2.7:50000") || !strings.Contains(logged.String(), "not switching") {
		t.Errorf("re-resolved into a blackhole: endpoint %v, log:\n%s", got, logged.String())
	}
}

package agent

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"time"
	"tunnel-agent/agent/config"
)

// lookupFunc resolves a host name to addresses.
type lookupFunc func(ctx context.Context, host string) ([]netip.Addr, error)

// resolveTimeout bounds one resolution.
const resolveTimeout = 5 * time.Second

// resolveEndpoints resolves every peer endpoint given as a name into
// Endpoint. A name that does not resolve is an error: `up` must not start
// a tunnel towards nowhere.
func resolveEndpoints(cfg *config.Config, lookup lookupFunc) error {
	for i := range cfg.Tunnel.Peers {
		p := &cfg.Tunnel.Peers[i]
		if p.EndpointName == "" {
			continue
		}
		ap, err := resolveEndpoint(p.EndpointName, cfg.Tunnel.Listen, lookup)
		if err != nil {
			return fmt.Errorf("tunnel.peers[%d].endpoint: %w", i, err)
		}
		p.Endpoint = ap
	}
	return nil
}

// resolveEndpoint resolves "host:port" to the first address the socket
// bound to listen can reach (IPv4 for an IPv4 listen address).
func resolveEndpoint(name string, listen netip.AddrPort, lookup lookupFunc) (netip.AddrPort, error) {
	host, port, err := net.SplitHostPort(name)
	if err != nil {
		return netip.AddrPort{}, err
	}
	n, _ := strconv.Atoi(port)
	ctx, cancel := context.WithTimeout(context.Background(), resolveTimeout)
	defer cancel()
	addrs, err := lookup(ctx, host)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("resolve %s: %w", host, err)
	}
	for _, a := range addrs {
		if a = a.Unmap(); reachableFrom(a, listen.Addr()) {
			return netip.AddrPortFrom(a, uint16(n)), nil
		}
	}
	return netip.AddrPort{}, fmt.Errorf("resolve %s: none of %v can be reached from tunnel.listen %s", host, addrs, listen)
}

func reachableFrom(a, listen netip.Addr) bool {
	switch {
	case listen.Is4():
		return a.Is4()
	case listen.IsUnspecified():
		return true
	}
	return a.Is6()
}

// reresolveLoop re-resolves the named endpoints of peers that went quiet
// until ctx is done. It checks once a second (reading counters only).
func (l *liveSite) reresolveLoop(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	last := map[string]time.Time{}
	start := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			l.reresolveDue(last, start, now)
		}
	}
}

// reresolveDue re-resolves the endpoint name of each peer with keepalives
// from which nothing (data or keepalive) was heard for 3 keepalive
// intervals, at most once per 3 intervals; when the name now points
// elsewhere the dataplane is moved there (the peer keeps its counters).
func (l *liveSite) reresolveDue(last map[string]time.Time, start, now time.Time) {
	l.mu.Lock()
	cfg, t := l.cfg, l.tun
	l.mu.Unlock()
	heard := map[string]time.Time{}
	for _, ps := range t.Stats().Peers {
		heard[ps.Name] = ps.LastReceived
	}
	for _, p := range cfg.Tunnel.Peers {
		if p.EndpointName == "" || p.Keepalive <= 0 {
			continue
		}
		ref := start
		for _, t := range []time.Time{heard[p.Name], last[p.Name]} {
			if t.After(ref) {
				ref = t
			}
		}
		if now.Sub(ref) < 3*p.Keepalive {
			continue
		}
		last[p.Name] = now
		l.reresolve(p, cfg.Tunnel.Listen)
	}
}

func (l *liveSite) reresolve(p config.Peer, listen netip.AddrPort) {
	ap, err := resolveEndpoint(p.EndpointName, listen, l.lookup)
	if err != nil {
		l.o.log.Warn("peer unanswered; re-resolving its endpoint failed", "peer", p.Name, "endpoint", p.EndpointName, "err", err)
		return
	}
	if ap == p.Endpoint {
		l.o.log.Debug("peer unanswered; its endpoint name still resolves to the same address", "peer", p.Name, "endpoint", ap)
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if b := blackholeOf(l.cfg, ap.Addr()); b.IsValid() {
		l.o.log.Error("peer unanswered and its endpoint name resolves elsewhere now, inside a blackhole prefix; not switching",
			"peer", p.Name, "name", p.EndpointName, "new", ap, "blackhole", b)
		return
	}
	cfg := *l.cfg
	cfg.Tunnel.Peers = slices.Clone(cfg.Tunnel.Peers)
	for i := range cfg.Tunnel.Peers {
		if cfg.Tunnel.Peers[i].Name == p.Name {
			cfg.Tunnel.Peers[i].Endpoint = ap
		}
	}
	lanAddrs, err := l.o.sys.linkAddrs(cfg.LAN.Interface)
	if err == nil {
		err = l.tun.Reconfigure(&cfg, engineConfig(&cfg, lanAddrs, l.o), nil)
	}
	if err != nil {
		l.o.log.Error("peer endpoint re-resolved, but the dataplane refused it", "peer", p.Name, "endpoint", ap, "err", err)
		return
	}
	l.cfg = &cfg
	l.o.log.Warn("peer unanswered and its endpoint name resolves elsewhere now; switched", "peer", p.Name,
		"name", p.EndpointName, "old", p.Endpoint, "new", ap)
}

// blackholeOf returns the blackhole prefix of cfg that contains a, if
// any: datagrams to a would be dropped by the host.
func blackholeOf(cfg *config.Config, a netip.Addr) netip.Prefix {
	a = a.Unmap().WithZone("")
	for _, b := range cfg.Tunnel.Blackhole {
		if b.Contains(a) {
			return b
		}
	}
	return netip.Prefix{}
}

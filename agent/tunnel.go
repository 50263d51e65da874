package agent

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"github.com/vishvananda/netlink"

	"tunnel-agent/agent/config"
	"tunnel-agent/dataplane"
)

// runTunnel opens the capture on the LAN interface, the raw injection
// socket and the UDP socket, serves the status socket, and runs the
// dataplane until ctx is done. It runs after the host is configured, so
// that a LAN interface the file creates exists. live (watch.go) keeps the
// host as configured, reloads on SIGHUP and serves metrics meanwhile.
func runTunnel(ctx context.Context, cfg *config.Config, o *options, live *liveSite) error {
	lanAddrs, err := interfaceAddrs(cfg.LAN.Interface)
	if err != nil {
		return err
	}
	dcfg := engineConfig(cfg, lanAddrs, o)
	if cfg.Tunnel.Mode == config.ModeWireGuard {
		defer live.started(ctx, nil, nil, nil)() // host repairs only; no live reload of wireguard-go yet
		return runWireGuard(ctx, cfg, dcfg, o, live.requestReload)
	}
	capture, err := dataplane.OpenCaptureWith(cfg.LAN.Interface, peerPrefixes(cfg), captureOptions(cfg))
	if err != nil {
		return fmt.Errorf("open capture on %s: %w", cfg.LAN.Interface, err)
	}
	injector, err := dataplane.OpenInjector()
	if err != nil {
		capture.Close()
		return fmt.Errorf("open raw injection socket: %w", err)
	}
	transport, err := dataplane.ListenUDP(cfg.Tunnel.Listen)
	if err != nil {
		capture.Close()
		injector.Close()
		return fmt.Errorf("listen on %s: %w", cfg.Tunnel.Listen, err)
	}
	eng, err := dataplane.New(dcfg, capture, transport, injector)
	if err != nil {
		capture.Close()
		injector.Close()
		transport.Close()
		return fmt.Errorf("start dataplane: %w", err)
	}
	st := &statusSource{site: cfg.Site, started: time.Now(), listen: transport.LocalAddr(), eng: eng, capture: capture,
		live: live, transport: transport}
	srv, err := serveStatus(o.stateDir.socket(cfg.Site), statusHandlers{st.snapshot, live.requestReload}, o.log)
	if err != nil {
		o.log.Warn("status socket unavailable; `tunnel-agent status` will not work", "err", err)
	} else {
		defer srv.Close()
	}
	o.log.Info("tunnel running", "site", cfg.Site, "lan", cfg.LAN.Interface, "listen", transport.LocalAddr(),
		"peers", len(cfg.Tunnel.Peers), "local_prefixes", dcfg.LocalPrefixes)
	defer live.started(ctx, eng, capture, transport)()
	return eng.Run(ctx)
}

// engineConfig maps the site onto the dataplane's options.
func engineConfig(cfg *config.Config, lanAddrs []netip.Prefix, o *options) dataplane.Config {
	d := dataplane.Config{LocalPrefixes: localPrefixes(cfg, lanAddrs), Logger: o.log, Relay: cfg.Tunnel.Relay,
		LANMTU: lanMTU(cfg.LAN.Interface), LANPrefixes: lanAddrs}
	for _, a := range lanAddrs {
		if a.Addr().Is4() {
			d.ICMPSource = a.Addr()
			break
		}
	}
	d.ICMPSource6 = icmpSource6(lanAddrs)
	for _, p := range cfg.Tunnel.Peers {
		pc := dataplane.PeerConfig{Name: p.Name, Endpoint: p.Endpoint, Prefixes: p.Prefixes, Keepalive: p.Keepalive}
		if p.Endpoint.IsValid() {
			if mtu, err := dataplane.PathMTU(p.Endpoint.Addr()); err == nil {
				pc.PathMTU = mtu
			} else {
				o.log.Warn("cannot read the path MTU towards the peer; assuming 1500", "peer", p.Name, "err", err)
			}
		}
		d.Peers = append(d.Peers, pc)
	}
	return d
}

// localPrefixes is tunnel.local_prefixes, or by default the networks of
// the LAN interface's addresses and of the namespaces the file creates.
func localPrefixes(cfg *config.Config, lanAddrs []netip.Prefix) []netip.Prefix {
	if len(cfg.Tunnel.LocalPrefixes) > 0 {
		return cfg.Tunnel.LocalPrefixes
	}
	seen := map[netip.Prefix]bool{}
	var out []netip.Prefix
	add := func(p netip.Prefix) {
		if m := p.Masked(); !seen[m] && !p.Addr().IsLinkLocalUnicast() {
			seen[m] = true
			out = append(out, m)
		}
	}
	for _, p := range lanAddrs {
		add(p)
	}
	for _, ns := range cfg.Namespaces {
		add(ns.Address)
		if ns.Address6.IsValid() {
			add(ns.Address6)
		}
	}
	return out
}

// icmpSource6 picks the source of the engine's ICMPv6 errors among the LAN
// interface's addresses: a global one if there is one (the errors may have
// to cross a router on the LAN), else a link-local one, else none.
func icmpSource6(lanAddrs []netip.Prefix) netip.Addr {
	var ll netip.Addr
	for _, p := range lanAddrs {
		a := p.Addr()
		switch {
		case !a.Is6() || a.Is4In6() || a.IsMulticast() || a.IsLoopback():
		case a.IsLinkLocalUnicast():
			if !ll.IsValid() {
				ll = a
			}
		default:
			return a
		}
	}
	return ll
}

// captureOptions maps lan.capture onto the dataplane's capture options
// (the ring with its default geometry).
func captureOptions(cfg *config.Config) dataplane.CaptureOptions {
	return dataplane.CaptureOptions{Ring: cfg.LAN.Capture == config.CaptureRing}
}

func peerPrefixes(cfg *config.Config) []netip.Prefix {
	var out []netip.Prefix
	for _, p := range cfg.Tunnel.Peers {
		out = append(out, p.Prefixes...)
	}
	return out
}

// interfaceAddrs reads the addresses of a link in the agent's namespace.
func interfaceAddrs(name string) ([]netip.Prefix, error) {
	l, err := netlink.LinkByName(name)
	if err != nil {
		return nil, fmt.Errorf("LAN interface %s: %w", name, err)
	}
	addrs, err := netlink.AddrList(l, netlink.FAMILY_ALL)
	if err != nil {
		return nil, fmt.Errorf("addresses of %s: %w", name, err)
	}
	var out []netip.Prefix
	for _, a := range addrs {
		ip, ok := netip.AddrFromSlice(a.IP)
		ones, _ := a.Mask.Size()
		if ok {
			out = append(out, netip.PrefixFrom(ip.Unmap(), ones))
		}
	}
	return out, nil
}

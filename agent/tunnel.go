package agent

import (
	"cmp"
	"context"
	"fmt"
	"net/netip"
	"time"

	"tunnel-agent/agent/config"
	"tunnel-agent/dataplane"
	"tunnel-agent/dataplane/afpacket"
)

// tunnel is the dataplane of a running site: it moves packets between
// the LAN interface and the peers. Plain mode (tunnel_plain.go: the engine
// over the capture, the UDP transport and raw injection) and wireguard
// mode (tunnel_wireguard.go: wireguard-go's device over the same capture
// and injection) implement it; both share the capture's re-binds
// (capture_binding.go). The live site (watch.go) drives a running tunnel;
// status and metrics read it.
type tunnel interface {
	// Run moves packets until ctx is done (then it returns nil) or the
	// dataplane fails; it closes the tunnel's I/O before it returns.
	Run(ctx context.Context) error
	// Stats are the dataplane's counters.
	Stats() dataplane.Stats
	// Reconfigure applies a changed site (site, mapped onto the
	// dataplane's options as cfg) to the running dataplane: peers,
	// prefixes, keepalives, endpoints, keys; and, unless capture is nil,
	// the prefixes the capture takes. An invalid cfg changes nothing.
	Reconfigure(site *config.Config, cfg dataplane.Config, capture []netip.Prefix) error
	// SetLANMTU hands the dataplane the LAN interface's current MTU.
	SetLANMTU(mtu int) error
	// RebindCapture re-opens the capture on the LAN interface, which was
	// re-created (its index changed), taking prefixes; the counters of
	// the old capture stay in the sums. An error opening it changes
	// nothing; dataplane.ErrStopped means the tunnel has stopped.
	RebindCapture(prefixes []netip.Prefix) error
	// status is the tunnel's part of the status: listen address,
	// dataplane, capture and transport counters, WireGuard state.
	status() Status
}

// runTunnel opens the tunnel of the site's mode, serves the status
// socket, and runs the dataplane until ctx is done. It runs after the
// host is configured, so that a LAN interface the file creates exists.
// live (watch.go) keeps the host as configured, reloads on SIGHUP and
// serves metrics meanwhile.
func runTunnel(ctx context.Context, cfg *config.Config, o *options, live *liveSite) error {
	lanAddrs, err := o.sys.linkAddrs(cfg.LAN.Interface)
	if err != nil {
		return err
	}
	dcfg := engineConfig(cfg, lanAddrs, o)
	t, err := openTunnel(cfg, dcfg, o)
	if err != nil {
		return err
	}
	defer serveSiteStatus(o, &statusSource{site: cfg.Site, started: time.Now(), tun: t, live: live}, live.requestReload)()
	o.log.Info("tunnel running", "mode", cmp.Or(string(cfg.Tunnel.Mode), "plain"), "site", cfg.Site, "lan", cfg.LAN.Interface,
		"listen", t.status().Listen, "peers", len(cfg.Tunnel.Peers), "local_prefixes", dcfg.LocalPrefixes)
	defer live.started(ctx, t)()
	return t.Run(ctx)
}

// openTunnel opens the dataplane of the site's mode.
func openTunnel(cfg *config.Config, dcfg dataplane.Config, o *options) (tunnel, error) {
	if cfg.Tunnel.Mode == config.ModeWireGuard {
		return openWireGuard(cfg, dcfg, o.sys, o.log)
	}
	return openPlain(cfg, dcfg, o.sys, o.log)
}

// openLAN opens the capture on the LAN interface, taking the peers'
// prefixes, and the raw injection socket: the LAN side of every mode.
func openLAN(cfg *config.Config, io plainIO) (lanCapture, dataplane.Injector, error) {
	capture, err := io.openCapture(cfg.LAN.Interface, peerPrefixes(cfg), captureOptions(cfg))
	if err != nil {
		return nil, nil, fmt.Errorf("open capture on %s: %w", cfg.LAN.Interface, err)
	}
	injector, err := io.openInjector()
	if err != nil {
		capture.Close()
		return nil, nil, fmt.Errorf("open raw injection socket: %w", err)
	}
	return capture, injector, nil
}

// serveSiteStatus serves the status socket of the running site until the
// returned function is called. A socket that cannot be served is logged:
// the tunnel runs on without it.
func serveSiteStatus(o *options, st *statusSource, reload func(context.Context) ReloadVerdict) (stop func()) {
	srv, err := serveStatus(o.stateDir.socket(st.site), statusHandlers{st.snapshot, reload}, o.log)
	if err != nil {
		o.log.Warn("status socket unavailable; `tunnel-agent status` will not work", "err", err)
		return func() {}
	}
	return srv.Close
}

// engineConfig maps the site onto the dataplane's options.
func engineConfig(cfg *config.Config, lanAddrs []netip.Prefix, o *options) dataplane.Config {
	d := dataplane.Config{LocalPrefixes: localPrefixes(cfg, lanAddrs), Logger: o.log, Relay: cfg.Tunnel.Relay,
		LANMTU: o.sys.linkMTU(cfg.LAN.Interface), LANPrefixes: lanAddrs}
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
			if mtu, err := o.sys.pathMTU(p.Endpoint.Addr()); err == nil {
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
func captureOptions(cfg *config.Config) afpacket.Options {
	return afpacket.Options{Ring: cfg.LAN.Capture == config.CaptureRing}
}

func peerPrefixes(cfg *config.Config) []netip.Prefix {
	var out []netip.Prefix
	for _, p := range cfg.Tunnel.Peers {
		out = append(out, p.Prefixes...)
	}
	return out
}

package agent

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"time"

	"github.com/vishvananda/netlink"

	"tunnel-agent/dataplane"
	"tunnel-agent/dataplane/afpacket"
	"tunnel-agent/dataplane/rawip"
	"tunnel-agent/dataplane/udp"
)

// runTunnel opens the capture on the LAN interface, the raw injection
// socket and the UDP socket, serves the status socket, and runs the
// dataplane until ctx is done. It runs after the host is configured, so
// that a LAN interface the file creates exists. live (watch.go) keeps the
// host as configured, reloads on SIGHUP and serves metrics meanwhile.
func runTunnel(ctx context.Context, cfg *Config, o *options, live *liveSite) error {
	lanAddrs, err := interfaceAddrs(cfg.LAN.Interface)
	if err != nil {
		return err
	}
	dcfg := engineConfig(cfg, lanAddrs, o)
	if cfg.Tunnel.Mode == ModeWireGuard {
		defer live.started(ctx, nil, nil, nil)() // host repairs only; no live reload of wireguard-go yet
		return runWireGuard(ctx, cfg, dcfg, o, live.requestReload)
	}
	capture, err := afpacket.Open(cfg.LAN.Interface, peerPrefixes(cfg), captureOptions(cfg))
	if err != nil {
		return fmt.Errorf("open capture on %s: %w", cfg.LAN.Interface, err)
	}
	injector, err := rawip.Open()
	if err != nil {
		capture.Close()
		return fmt.Errorf("open raw injection socket: %w", err)
	}
	transport, err := udp.Listen(cfg.Tunnel.Listen, udpOptions())
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
	srv, err := serveStatus(statusPath(o.stateDir, cfg.Site), statusHandlers{st.snapshot, live.requestReload}, o.log)
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

// udpOptions are the tunnel socket's: UDP_GRO unless the environment
// variable TUNNEL_AGENT_UDP_GRO holds a false value as strconv.ParseBool
// reads it ("0", "false"), a switch for measuring (docs/operations.md).
func udpOptions() udp.Options {
	gro, err := strconv.ParseBool(os.Getenv("TUNNEL_AGENT_UDP_GRO"))
	return udp.Options{DisableGRO: err == nil && !gro}
}

// engineConfig maps the site onto the dataplane's options.
func engineConfig(cfg *Config, lanAddrs []netip.Prefix, o *options) dataplane.Config {
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
			if mtu, err := udp.PathMTU(p.Endpoint.Addr()); err == nil {
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
func localPrefixes(cfg *Config, lanAddrs []netip.Prefix) []netip.Prefix {
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

func peerPrefixes(cfg *Config) []netip.Prefix {
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

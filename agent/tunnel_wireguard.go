package agent

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"time"

	"tunnel-agent/dataplane"
	"tunnel-agent/dataplane/afpacket"
	"tunnel-agent/dataplane/rawip"
	"tunnel-agent/dataplane/wireguard"
)

// runWireGuard is runTunnel in wireguard mode: the same capture and
// injection, wireguard-go's protocol and UDP socket in place of the plain
// transport.
func runWireGuard(ctx context.Context, cfg *Config, dcfg dataplane.Config, o *options,
	reload func(context.Context) ReloadVerdict) error {
	capture, err := afpacket.Open(cfg.LAN.Interface, peerPrefixes(cfg), captureOptions(cfg))
	if err != nil {
		return fmt.Errorf("open capture on %s: %w", cfg.LAN.Interface, err)
	}
	injector, err := rawip.Open()
	if err != nil {
		capture.Close()
		return fmt.Errorf("open raw injection socket: %w", err)
	}
	w, err := wireguard.New(wireGuardConfig(cfg, dcfg), capture, injector)
	if err != nil {
		capture.Close()
		injector.Close()
		return fmt.Errorf("start wireguard dataplane: %w", err)
	}
	st := &statusSource{site: cfg.Site, started: time.Now(), listen: cfg.Tunnel.Listen, capture: capture, wg: w}
	srv, err := serveStatus(statusPath(o.stateDir, cfg.Site), statusHandlers{st.snapshot, reload}, o.log)
	if err != nil {
		o.log.Warn("status socket unavailable; `tunnel-agent status` will not work", "err", err)
	} else {
		defer srv.Close()
	}
	o.log.Info("tunnel running", "mode", ModeWireGuard, "site", cfg.Site, "lan", cfg.LAN.Interface,
		"listen_port", cfg.Tunnel.Listen.Port(), "peers", len(cfg.Tunnel.Peers), "local_prefixes", dcfg.LocalPrefixes)
	return w.Run(ctx)
}

// wireGuardConfig adds the keys to the LAN-side configuration.
func wireGuardConfig(cfg *Config, dcfg dataplane.Config) wireguard.Config {
	wc := wireguard.Config{LAN: dcfg, PrivateKey: cfg.Tunnel.WireGuard.PrivateKey, ListenPort: cfg.Tunnel.Listen.Port()}
	for _, p := range cfg.Tunnel.Peers {
		wc.PeerKeys = append(wc.PeerKeys, wireguard.PeerKeys{Public: p.WireGuard.PublicKey, Preshared: p.WireGuard.PresharedKey})
	}
	return wc
}

// wireguardSnapshot is snapshot in wireguard mode.
func (s *statusSource) wireguardSnapshot() Status {
	wg := s.wg.WireGuardStats()
	listen := s.listen
	if wg.ListenPort != 0 {
		listen = netip.AddrPortFrom(listen.Addr(), wg.ListenPort)
	}
	return Status{Site: s.site, PID: os.Getpid(), Started: s.started.UTC(), Listen: listen,
		Dataplane: s.wg.Stats(), WireGuard: &wg}.withCapture(s.captureCounters())
}

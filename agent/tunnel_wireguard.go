package agent

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"

	"tunnel-agent/agent/config"
	"tunnel-agent/dataplane"
	"tunnel-agent/dataplane/wireguard"
)

// wireguardTunnel is wireguard mode: wireguard-go's device over the same
// capture and injection as plain mode, with its own UDP socket.
type wireguardTunnel struct {
	wg      *wireguard.Tunnel
	capture *captureBinding
	listen  netip.AddrPort // tunnel.listen: its port, before the device binds
}

// openWireGuard opens the capture and injection and the WireGuard
// tunnel over them, its device up and its UDP port bound.
func openWireGuard(cfg *config.Config, dcfg dataplane.Config, sys system, log *slog.Logger) (*wireguardTunnel, error) {
	capture, injector, err := openLAN(cfg, sys)
	if err != nil {
		return nil, err
	}
	wc := wireGuardConfig(cfg, dcfg)
	wc.Listen = func(ap netip.AddrPort) (dataplane.Transport, error) { return sys.listenUDP(ap) }
	w, err := wireguard.New(wc, capture, injector)
	if err != nil {
		capture.Close()
		injector.Close()
		return nil, fmt.Errorf("start wireguard dataplane: %w", err)
	}
	// The device binds its port now, as plain mode's socket is opened
	// here: the agent says it runs (and READY=1) once peers can reach it.
	if err := w.Open(); err != nil { // it closed the capture and injection
		return nil, fmt.Errorf("start wireguard device on port %d: %w", cfg.Tunnel.Listen.Port(), err)
	}
	return &wireguardTunnel{wg: w, listen: cfg.Tunnel.Listen,
		capture: newCaptureBinding(sys, cfg.LAN.Interface, captureOptions(cfg), log, capture)}, nil
}

func (t *wireguardTunnel) Run(ctx context.Context) error { return t.wg.Run(ctx) }

func (t *wireguardTunnel) Stats() dataplane.Stats { return t.wg.Stats() }

func (t *wireguardTunnel) SetLANMTU(mtu int) error { return t.wg.SetLANMTU(mtu) }

// Reconfigure applies the site's peers, keys, prefixes, endpoints,
// keepalives and relaying to the running device; peers that stay keep
// their sessions.
func (t *wireguardTunnel) Reconfigure(cfg *config.Config, dcfg dataplane.Config, capture []netip.Prefix) error {
	if err := t.wg.Reconfigure(wireGuardConfig(cfg, dcfg)); err != nil {
		return err
	}
	return t.capture.setPrefixes(capture)
}

func (t *wireguardTunnel) RebindCapture(prefixes []netip.Prefix) error {
	return t.capture.rebind(prefixes, t.wg.ReplaceCapture)
}

// status reports the device's port once it is bound, and its WireGuard
// state.
func (t *wireguardTunnel) status() Status {
	wg := t.wg.WireGuardStats()
	listen := t.listen
	if wg.ListenPort != 0 {
		listen = netip.AddrPortFrom(listen.Addr(), wg.ListenPort)
	}
	return Status{Listen: listen, Dataplane: t.wg.Stats(), WireGuard: &wg}.withCapture(t.capture.counters())
}

// wireGuardConfig adds the keys to the LAN-side configuration.
func wireGuardConfig(cfg *config.Config, dcfg dataplane.Config) wireguard.Config {
	wc := wireguard.Config{LAN: dcfg, PrivateKey: wireguard.Key(cfg.Tunnel.WireGuard.PrivateKey), ListenAddr: cfg.Tunnel.Listen.Addr(), ListenPort: cfg.Tunnel.Listen.Port()}
	for _, p := range cfg.Tunnel.Peers {
		wc.PeerKeys = append(wc.PeerKeys, wireguard.PeerKeys{Public: wireguard.Key(p.WireGuard.PublicKey),
			Preshared: wireguard.Key(p.WireGuard.PresharedKey)})
	}
	return wc
}

package agent

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"tunnel-agent/agent/config"
	"tunnel-agent/dataplane"
	"tunnel-agent/dataplane/wireguard"
)

// runWireGuard is runTunnel in wireguard mode: the same capture and
// injection, wireguard-go's protocol and UDP socket in place of the plain
// transport.
func runWireGuard(ctx context.Context, cfg *config.Config, dcfg dataplane.Config, o *options,
	reload func(context.Context) ReloadVerdict) error {
	capture, injector, err := openLAN(cfg, o.sys)
	if err != nil {
		return err
	}
	wc := wireGuardConfig(cfg, dcfg)
	wc.Listen = func(ap netip.AddrPort) (dataplane.Transport, error) { return o.sys.listenUDP(ap) }
	w, err := wireguard.New(wc, capture, injector)
	if err != nil {
		capture.Close()
		injector.Close()
		return fmt.Errorf("start wireguard dataplane: %w", err)
	}
	t := &wireguardTunnel{wg: w, capture: capture, listen: cfg.Tunnel.Listen}
	defer serveSiteStatus(o, &statusSource{site: cfg.Site, started: time.Now(), tun: t}, reload)()
	o.log.Info("tunnel running", "mode", config.ModeWireGuard, "site", cfg.Site, "lan", cfg.LAN.Interface,
		"listen_port", cfg.Tunnel.Listen.Port(), "peers", len(cfg.Tunnel.Peers), "local_prefixes", dcfg.LocalPrefixes)
	return t.Run(ctx)
}

// wireguardTunnel is wireguard mode's tunnel: wireguard-go's device over
// the capture and injection. It runs and reports; changing it while it
// runs (reload, re-resolution, capture re-binds, LAN MTU changes) is not
// supported yet, so the live site is not given it (runTunnel).
type wireguardTunnel struct {
	wg      *wireguard.Tunnel
	capture lanCapture
	listen  netip.AddrPort // tunnel.listen: its port, before the device binds
}

// errWireGuardNotYet is what wireguard mode answers to a change while it
// runs.
var errWireGuardNotYet = fmt.Errorf("not supported in wireguard mode yet: %w", errors.ErrUnsupported)

func (t *wireguardTunnel) Run(ctx context.Context) error { return t.wg.Run(ctx) }

func (t *wireguardTunnel) Stats() dataplane.Stats { return t.wg.Stats() }

func (t *wireguardTunnel) Reconfigure(dataplane.Config, []netip.Prefix) error {
	return errWireGuardNotYet
}

func (t *wireguardTunnel) SetLANMTU(int) error { return errWireGuardNotYet }

func (t *wireguardTunnel) RebindCapture([]netip.Prefix) error { return errWireGuardNotYet }

// status reports the device's port once it is bound, and what WireGuard
// refused.
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

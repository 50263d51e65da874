package agent

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"

	"tunnel-agent/agent/config"
	"tunnel-agent/dataplane"
)

// plainTunnel is plain mode: the engine between the capture on the LAN
// interface, the UDP transport and raw injection, all opened through the
// system's plainIO.
type plainTunnel struct {
	eng       *dataplane.Engine
	transport tunnelTransport
	capture   *captureBinding
}

// openPlain opens plain mode's capture, injection and UDP socket and the
// engine between them.
func openPlain(cfg *config.Config, dcfg dataplane.Config, io plainIO, log *slog.Logger) (*plainTunnel, error) {
	capture, injector, err := openLAN(cfg, io)
	if err != nil {
		return nil, err
	}
	transport, err := io.listenUDP(cfg.Tunnel.Listen)
	if err != nil {
		capture.Close()
		injector.Close()
		return nil, fmt.Errorf("listen on %s: %w", cfg.Tunnel.Listen, err)
	}
	eng, err := dataplane.New(dcfg, capture, transport, injector)
	if err != nil {
		capture.Close()
		injector.Close()
		transport.Close()
		return nil, fmt.Errorf("start dataplane: %w", err)
	}
	return &plainTunnel{eng: eng, transport: transport,
		capture: newCaptureBinding(io, cfg.LAN.Interface, captureOptions(cfg), log, capture)}, nil
}

func (t *plainTunnel) Run(ctx context.Context) error { return t.eng.Run(ctx) }

func (t *plainTunnel) Stats() dataplane.Stats { return t.eng.Stats() }

func (t *plainTunnel) SetLANMTU(mtu int) error { return t.eng.SetLANMTU(mtu) }

func (t *plainTunnel) Reconfigure(_ *config.Config, dcfg dataplane.Config, capture []netip.Prefix) error {
	if err := t.eng.Reconfigure(dcfg); err != nil {
		return err
	}
	return t.capture.setPrefixes(capture)
}

func (t *plainTunnel) RebindCapture(prefixes []netip.Prefix) error {
	return t.capture.rebind(prefixes, t.eng.ReplaceCapture)
}

func (t *plainTunnel) status() Status {
	return Status{Listen: t.transport.LocalAddr(), Dataplane: t.eng.Stats(), Transport: t.transport.status()}.withCapture(t.capture.counters())
}

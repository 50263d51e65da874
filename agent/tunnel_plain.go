package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"

	"tunnel-agent/agent/config"
	"tunnel-agent/dataplane"
	"tunnel-agent/dataplane/afpacket"
)

// plainTunnel is plain mode: the engine between the capture on the LAN
// interface, the UDP transport and raw injection, all opened through the
// system's plainIO.
type plainTunnel struct {
	eng       *dataplane.Engine
	io        plainIO
	lan       string
	opt       afpacket.Options
	transport tunnelTransport
	log       *slog.Logger

	mu      sync.Mutex // guards what follows (re-binds vs. status and metrics)
	capture lanCapture
	capBase captureCounters // counters of the captures re-binds replaced
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
	return &plainTunnel{eng: eng, io: io, lan: cfg.LAN.Interface, opt: captureOptions(cfg), transport: transport, log: log,
		capture: capture}, nil
}

func (t *plainTunnel) Run(ctx context.Context) error { return t.eng.Run(ctx) }

func (t *plainTunnel) Stats() dataplane.Stats { return t.eng.Stats() }

func (t *plainTunnel) SetLANMTU(mtu int) error { return t.eng.SetLANMTU(mtu) }

func (t *plainTunnel) Reconfigure(cfg dataplane.Config, capture []netip.Prefix) error {
	if err := t.eng.Reconfigure(cfg); err != nil {
		return err
	}
	if capture == nil {
		return nil
	}
	t.mu.Lock()
	c := t.capture
	t.mu.Unlock()
	return c.SetPrefixes(capture)
}

func (t *plainTunnel) RebindCapture(prefixes []netip.Prefix) error {
	c, err := t.io.openCapture(t.lan, prefixes, t.opt)
	if err != nil {
		return err
	}
	if err := t.eng.ReplaceCapture(c); errors.Is(err, dataplane.ErrStopped) {
		return err // stopping; ReplaceCapture closed c
	} else if err != nil {
		t.log.Warn("closing the capture of the old LAN interface", "lan", t.lan, "err", err)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	// Read after ReplaceCapture closed it: its counters as of Close.
	t.capBase = t.capBase.plus(t.capture.counters())
	t.capture = c
	return nil
}

func (t *plainTunnel) status() Status {
	t.mu.Lock()
	cc := t.capBase.plus(t.capture.counters())
	t.mu.Unlock()
	return Status{Listen: t.transport.LocalAddr(), Dataplane: t.eng.Stats(), Transport: t.transport.status()}.withCapture(cc)
}

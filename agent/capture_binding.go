package agent

import (
	"errors"
	"log/slog"
	"net/netip"
	"sync"

	"tunnel-agent/dataplane"
	"tunnel-agent/dataplane/afpacket"
)

// captureBinding is the capture on the LAN interface of a running tunnel,
// whatever its mode: re-opened when the interface is re-created, its
// prefixes changed by reloads, its counters summed over the captures it
// replaced.
type captureBinding struct {
	io  plainIO
	lan string
	opt afpacket.Options
	log *slog.Logger

	mu      sync.Mutex // guards what follows (re-binds vs. status and metrics)
	capture lanCapture
	base    captureCounters // counters of the captures re-binds replaced
}

func newCaptureBinding(io plainIO, lan string, opt afpacket.Options, log *slog.Logger, c lanCapture) *captureBinding {
	return &captureBinding{io: io, lan: lan, opt: opt, log: log, capture: c}
}

// setPrefixes changes the destinations the capture takes (nil: no
// change).
func (b *captureBinding) setPrefixes(prefixes []netip.Prefix) error {
	if prefixes == nil {
		return nil
	}
	b.mu.Lock()
	c := b.capture
	b.mu.Unlock()
	return c.SetPrefixes(prefixes)
}

// rebind opens a new capture on the LAN interface, taking prefixes, and
// hands it to replace (the dataplane's ReplaceCapture: it closes the old
// one). An error opening it changes nothing; dataplane.ErrStopped means
// the tunnel has stopped.
func (b *captureBinding) rebind(prefixes []netip.Prefix, replace func(dataplane.Capture) error) error {
	c, err := b.io.openCapture(b.lan, prefixes, b.opt)
	if err != nil {
		return err
	}
	if err := replace(c); errors.Is(err, dataplane.ErrStopped) {
		return err // stopping; replace closed c
	} else if err != nil {
		b.log.Warn("closing the capture of the old LAN interface", "lan", b.lan, "err", err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	// Read after replace closed it: its counters as of Close.
	b.base = b.base.plus(b.capture.counters())
	b.capture = c
	return nil
}

// counters are the capture's counters, those of the captures it replaced
// included.
func (b *captureBinding) counters() captureCounters {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.base.plus(b.capture.counters())
}

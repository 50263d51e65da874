package dataplane

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// PeerConfig describes one far end of the tunnel.
type PeerConfig struct {
	// Name identifies the peer in logs and statistics; unique, non-empty.
	Name string
	// Endpoint is the peer's UDP address. Zero: learn it from the first
	// valid datagram whose inner source lies in Prefixes.
	Endpoint netip.AddrPort
	// Prefixes are the networks behind the peer: captured packets to them
	// are sent to the peer, and packets from the peer must come from them.
	Prefixes []netip.Prefix
	// Keepalive is the interval of keepalive requests sent to a
	// configured Endpoint; 0 disables them.
	Keepalive time.Duration
	// PathMTU is the MTU of the outer path towards the peer; 0 means 1500.
	PathMTU int
}

// Config configures an Engine, or a Router of its own (NewRouter).
type Config struct {
	Peers []PeerConfig
	// LocalPrefixes are the networks behind this gateway: the only
	// destinations accepted from the tunnel.
	LocalPrefixes []netip.Prefix
	// ICMPSource is the source of the ICMP errors the engine generates,
	// normally the gateway's LAN address. Zero disables ICMP generation.
	ICMPSource netip.Addr
	// ICMPSource6 is the source of the ICMPv6 errors (hop limit exceeded,
	// packet too big), normally the gateway's IPv6 LAN address. Zero
	// disables ICMPv6 generation.
	ICMPSource6 netip.Addr
	// LANMTU is the MTU of the LAN interface, by which the packets from the
	// tunnel leave once injected; 0 disables the check. A larger packet is
	// fragmented (IPv4, DF clear) or answered through the tunnel with ICMP
	// fragmentation needed / ICMPv6 packet too big (lanmtu.go).
	// SetLANMTU changes it while the engine runs.
	LANMTU int
	// LANPrefixes are the LAN interface's own subnets (its addresses with
	// their prefix lengths). Their broadcast addresses, and those of
	// LocalPrefixes, are never sent an ICMP error (icmp.go, notHosts).
	LANPrefixes []netip.Prefix
	// Relay makes this gateway a hub: a packet from one peer whose
	// destination is not local but lies in another peer's prefixes is sent
	// on to that peer instead of being dropped as dst_not_allowed (the
	// source check still applies). See relay.go.
	Relay bool
	// Logger receives rate-limited drop and endpoint logs; nil discards.
	Logger *slog.Logger
	// BatchSize is the number of packets per ReadBatch/WriteBatch call;
	// 0 means DefaultBatchSize.
	BatchSize int
}

// Engine moves packets between a Capture/Injector pair and a Transport.
// Create it with New and start it with Run.
type Engine struct {
	// r is the LAN side: peers, prefix tables, router-hop and admission
	// checks, LAN MTU, counters, drop log and the Injector (router.go).
	// The Engine adds the tunnel side.
	r      Router
	learns bool           // some peer learns its endpoint
	ka     keepaliveState // our keepalive messages, peer attribution

	eps atomic.Pointer[endpoints]

	capture   *CaptureSlot
	transport Transport
	// txMu serialises writes to the Transport, which the capture and
	// keepalive goroutines share and which does not promise concurrency
	// safety. It is taken once per batch and is nearly always uncontended.
	txMu sync.Mutex

	started atomic.Bool
	rc      reconfState // live reconfiguration, reconfig.go
}

// peer is a PeerConfig resolved for the hot path, plus its counters.
type peer struct {
	idx        int
	name       string
	configured netip.AddrPort // zero: learning
	keepalive  time.Duration
	pathMTU    int
	ctr        peerCounters
	// learnLog limits "endpoint learned" lines, learnSuppressed counts the
	// lines it held back; both belong to the transport goroutine.
	learnLog        tokenBucket
	learnSuppressed uint64
	// kaReplies limits the replies to the peer's keepalive requests
	// (transport goroutine).
	kaReplies tokenBucket
}

// New checks cfg and returns an engine over the three I/O objects, which
// Run will own (and close when it stops).
func New(cfg Config, c Capture, t Transport, inj Injector) (*Engine, error) {
	if c == nil || t == nil || inj == nil {
		return nil, errors.New("dataplane: nil Capture, Transport or Injector")
	}
	e, err := newEngine(cfg)
	if err != nil {
		return nil, fmt.Errorf("dataplane: %w", err)
	}
	e.capture, e.transport, e.r.injector = NewCaptureSlot(c), t, inj
	return e, nil
}

// Run moves packets until ctx is done (then it returns nil) or until an
// I/O object fails (then it returns that error; a capture error wrapping
// ErrInterfaceDown is not a failure). Either way it closes the
// three I/O objects, which unblocks the reads, and waits for its
// goroutines before returning. Run may be called only once.
func (e *Engine) Run(ctx context.Context) error {
	if !e.started.CompareAndSwap(false, true) {
		return errors.New("dataplane: Run called twice")
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	failed := make(chan error, 2)
	wg.Go(func() { failed <- wrapIOErr("capture", e.captureLoop()) })
	wg.Go(func() { failed <- wrapIOErr("transport", e.transportLoop()) })
	wg.Go(func() { e.keepaliveLoop(ctx) })
	var err error
	select {
	case <-ctx.Done():
	case err = <-failed:
	}
	cancel()
	e.closeIO()
	wg.Wait()
	return err
}

// wrapIOErr names the loop that failed.
func wrapIOErr(what string, err error) error {
	return fmt.Errorf("dataplane: %s: %w", what, err)
}

// closeIO closes the three I/O objects. Their errors are only logged: the
// engine is stopping anyway and the reason it stops matters more.
func (e *Engine) closeIO() {
	for _, c := range []interface{ Close() error }{e.capture.Stop(), e.transport, e.r.injector} {
		if err := c.Close(); err != nil {
			e.r.log.Warn("closing dataplane I/O", "err", err)
		}
	}
}

// Stats returns a snapshot of the counters; safe to call at any time from
// any goroutine.
func (e *Engine) Stats() Stats {
	e.rc.cfgMu.RLock()
	defer e.rc.cfgMu.RUnlock()
	st, eps := e.r.Stats(), e.eps.Load()
	for i := range st.Peers {
		st.Peers[i].CurrentEndpoint = eps.cur[i]
	}
	return st
}

// SetLANMTU changes the LAN MTU (Config.LANMTU) of a running engine, from
// the next batch on; safe from any goroutine.
func (e *Engine) SetLANMTU(mtu int) error { return e.r.SetLANMTU(mtu) }

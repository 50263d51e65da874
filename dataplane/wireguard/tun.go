package wireguard

import (
	"errors"
	"os"
	"sync"
	"time"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/tun"

	"tunnel-agent/dataplane"
)

// wgTUN is the tun.Device wireguard-go reads plaintext packets from and
// writes them to: our Capture and Injector, with plain mode's LAN-side
// rules applied by the Router (an Outbound on reads, an Inbound on
// writes). Per packet it neither allocates nor locks: its slices are
// allocated once at the largest batch wireguard-go uses.
type wgTUN struct {
	lan     *dataplane.Router
	ctr     *wgCounters
	capture *dataplane.CaptureSlot // replaced when the LAN interface is re-created
	inj     dataplane.Injector
	mtu     int
	events  chan tun.Event
	closed  sync.Once

	// Read side: only wireguard-go's TUN reader goroutine calls Read.
	rdMu  sync.Mutex // held while out works: Reconfigure pauses it (pause)
	sub   [][]byte   // bufs[i][offset:], the capture's view
	out   *dataplane.Outbound
	mask  keptMask // what the device kept of the previous Read
	kinds []uint8  // kindTransport for each packet handed over
	timer *time.Timer

	// relay: packets from Write back into the tunnel, which Read takes
	// first (relayq.go); nil when the capture cannot be woken.
	relay *relayQueue

	// Write side: each peer's receive goroutine calls Write.
	wrMu sync.Mutex
	pkts [][]byte // bufs[i][offset:]
	in   *dataplane.Inbound
}

// leakBatch is the read batch while outbound packets are forgiven
// (flight.go): small, so that wireguard-go's staging queue of a peer
// without a session holds few packets per entry.
const leakBatch = 4

// wgMaxBatch bounds the batches wireguard-go hands us: its own bind's
// batch size, or ours if larger.
func wgMaxBatch(ours int) int { return max(ours, conn.IdealBatchSize) }

func newWGTUN(lan *dataplane.Router, ctr *wgCounters, c dataplane.Capture, inj dataplane.Injector, mtu int) *wgTUN {
	n := wgMaxBatch(lan.BatchSize())
	t := &wgTUN{lan: lan, ctr: ctr, capture: dataplane.NewCaptureSlot(c), inj: inj, mtu: mtu, events: make(chan tun.Event, 1),
		sub: make([][]byte, n), out: dataplane.NewOutbound(lan, n), mask: newKeptMask(n), kinds: make([]uint8, n),
		timer: newStoppedTimer(), pkts: make([][]byte, 0, n), in: dataplane.NewInbound(lan, n)}
	if _, ok := c.(dataplane.WakeableCapture); ok {
		t.relay = newRelayQueue(mtu)
		t.in.Relay = t.relay.add
	}
	return t
}

// Read fills bufs[i][offset:] with captured packets that pass the router
// hop checks, TTL already decremented. A packet that does not pass gets
// size 0, which wireguard-go skips; its ICMP error, if due, is injected.
// It first waits for outbound credit (flight.go) and reads no more
// packets than the credit allows, and no more than leakBatch while the
// device holds or drops packets without a word. Relayed packets and ICMP
// errors for peers (relayq.go) go first; while the LAN interface is down,
// or when its capture was replaced (ReplaceCapture), Read goes on
// reading: an error from Read stops wireguard-go's device.
func (t *wgTUN) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	out := t.ctr.out
	t.mask.skipped(bufs, func(uint8) { out.Release(1) })
	n := min(len(bufs), len(sizes), len(t.sub), out.wait(t.timer))
	if out.leaking() {
		n = min(n, leakBatch)
	}
	for i := range n {
		t.sub[i] = bufs[i][offset:]
	}
	got, err := t.read(n, sizes)
	handed := 0
	for i := range got {
		t.kinds[i] = 0
		if sizes[i] > 0 {
			t.kinds[i] = kindTransport
			handed++
		}
	}
	out.Charge(handed)
	t.mask.record(bufs, t.kinds, got)
	return got, err
}

// read fills t.sub[:n] (n > 0): queued relayed packets if there are any,
// else captured packets through the Outbound's checks. It keeps reading
// while the LAN interface is down or after its capture was replaced, and
// after a Wake (the relay queue has packets).
func (t *wgTUN) read(n int, sizes []int) (int, error) {
	c, gen := t.capture.Current()
	for {
		if t.relay != nil {
			if k := t.relay.drain(t.sub[:n], sizes[:n]); k > 0 {
				return k, nil // checked by the Inbound that queued them
			}
		}
		got, err := c.ReadBatch(t.sub[:n], sizes[:n])
		got = min(max(got, 0), n)
		t.rdMu.Lock()
		t.out.Forward(t.sub, sizes, got)
		t.rdMu.Unlock()
		if got == 0 && err == nil {
			continue // woken: the relay queue has packets
		}
		if err == nil || got > 0 { // an error that stays is seen again by the next Read
			return got, nil
		}
		if c, gen = t.capture.Next(c, gen, err); c == nil {
			return 0, err
		}
	}
}

// pause stops Read's and Write's use of the Router between batches, for
// Router.Reconfigure, and returns the function that lets them go on.
func (t *wgTUN) pause() (resume func()) {
	t.rdMu.Lock()
	t.wrMu.Lock()
	return func() {
		t.wrMu.Unlock()
		t.rdMu.Unlock()
	}
}

// Write injects the decrypted packets bufs[i][offset:] that pass the
// Router's admission (valid header, source owned by a peer, local
// destination), fragmenting a DF-clear IPv4 packet larger than the LAN
// MTU as plain mode does; a DF or IPv6 one is dropped as too_big_lan, but
// without the ICMP error plain mode sends back: only wireguard-go's read
// of this device sends to a peer, and it waits for the LAN. It always
// reports every packet as written: refusals are counted and logged by the
// Router, as in plain mode.
func (t *wgTUN) Write(bufs [][]byte, offset int) (int, error) {
	t.wrMu.Lock()
	defer t.wrMu.Unlock()
	t.pkts = t.pkts[:0]
	for _, b := range bufs {
		t.pkts = append(t.pkts, b[offset:])
	}
	var queued uint64
	if t.relay != nil {
		queued = t.relay.pending()
	}
	// Counted before the LAN side sees them: once a packet is injected,
	// transport_rejected (inferred from what did not come out) is exact
	// for it.
	t.ctr.delivered.Add(uint64(len(bufs)))
	t.in.Deliver(t.pkts)
	if t.relay != nil && t.relay.pending() != queued {
		wake(t.capture) // Read takes the relayed packets and ICMP errors
	}
	t.ctr.in.Release(len(bufs))
	return len(bufs), nil
}

// File is nil: there is no device file.
func (t *wgTUN) File() *os.File { return nil }

// MTU is the largest inner packet; wireguard-go pads up to it, never past.
func (t *wgTUN) MTU() (int, error) { return t.mtu, nil }

// Name names the device in wireguard-go's logs.
func (t *wgTUN) Name() (string, error) { return "tunnel-agent", nil }

// Events never reports anything: Run brings the device up itself.
func (t *wgTUN) Events() <-chan tun.Event { return t.events }

// BatchSize is our capture and injection batch size.
func (t *wgTUN) BatchSize() int { return t.lan.BatchSize() }

// Close closes the capture (which ends wireguard-go's reader), the
// injector and the event channel. Safe to call more than once.
func (t *wgTUN) Close() error {
	var err error
	t.closed.Do(func() {
		err = errors.Join(t.capture.Stop().Close(), t.inj.Close())
		close(t.events)
	})
	return err
}

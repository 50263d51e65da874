package dataplane

import (
	"errors"
	"net/netip"
	"os"
	"sync"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/tun"
)

// wgTUN is the tun.Device wireguard-go reads plaintext packets from and
// writes them to: our Capture and Injector, with plain mode's LAN-side
// rules applied by the Engine's own functions. Per packet it neither
// allocates nor locks: its slices are allocated once at the largest batch
// wireguard-go uses.
type wgTUN struct {
	eng     *Engine
	ctr     *wgCounters
	capture Capture
	inj     Injector
	eps     *endpoints // hop checks only: every peer "has" an endpoint
	mtu     int
	events  chan tun.Event
	closed  sync.Once

	// Read side: only wireguard-go's TUN reader goroutine calls Read.
	sub      [][]byte // bufs[i][offset:], the capture's view
	icmpBufs [][]byte
	icmp     [][]byte

	// Write side: each peer's receive goroutine calls Write.
	wrMu sync.Mutex
	q    injectQueue
}

// wgMaxBatch bounds the batches wireguard-go hands us: its own bind's
// batch size, or ours if larger.
func wgMaxBatch(ours int) int { return max(ours, conn.IdealBatchSize) }

func newWGTUN(eng *Engine, ctr *wgCounters, c Capture, inj Injector) *wgTUN {
	n := wgMaxBatch(eng.batch)
	t := &wgTUN{eng: eng, ctr: ctr, capture: c, inj: inj, eps: placeholderEndpoints(eng.peers),
		mtu: innerMTU(eng.peers), events: make(chan tun.Event, 1),
		sub: make([][]byte, n), icmpBufs: newBuffers(n, icmpMaxLen), icmp: make([][]byte, 0, n),
		q: newInjectQueue(n)}
	return t
}

// placeholderEndpoints gives every peer an endpoint for the hop checks:
// the configured one, else wgEndpointPlaceholder. WireGuard, not the
// Engine, decides where datagrams go.
func placeholderEndpoints(peers []peer) *endpoints {
	eps := &endpoints{byAddr: map[netip.AddrPort]int{}, cur: make([]netip.AddrPort, len(peers))}
	for i := range peers {
		eps.cur[i] = peers[i].configured
		if !eps.cur[i].IsValid() {
			eps.cur[i] = wgEndpointPlaceholder
		}
	}
	return eps
}

// innerMTU is the largest inner packet over every peer's path (the
// device's MTU, which wireguard-go pads up to).
func innerMTU(peers []peer) int {
	mtu := 0
	for i := range peers {
		mtu = max(mtu, peers[i].pathMTU-outerOverhead(wgEndpointPlaceholder))
	}
	return mtu
}

// Read fills bufs[i][offset:] with captured packets that pass the router
// hop checks, TTL already decremented. A packet that does not pass gets
// size 0, which wireguard-go skips; its ICMP error, if due, is injected.
func (t *wgTUN) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	n := min(len(bufs), len(sizes), len(t.sub))
	for i := range n {
		t.sub[i] = bufs[i][offset:]
	}
	got, err := t.capture.ReadBatch(t.sub[:n], sizes[:n])
	got = min(max(got, 0), n)
	t.filter(sizes, got)
	return got, err
}

// filter applies Engine.forward to the first n packets of t.sub.
func (t *wgTUN) filter(sizes []int, n int) {
	if n == 0 {
		return
	}
	now := t.eng.now().mono
	t.icmp = t.icmp[:0]
	for i := range n {
		sizes[i] = t.forwardOne(packetAt(t.sub, sizes, i), now)
	}
	if len(t.icmp) > 0 {
		t.eng.ctr.icmpSent.Add(uint64(t.eng.inject(t.icmp, nil, now)))
	}
}

// forwardOne checks one captured packet and returns the size to hand to
// wireguard-go: the trimmed packet, or 0 when it is dropped.
func (t *wgTUN) forwardOne(pkt []byte, now int64) int {
	buf := t.icmpBufs[len(t.icmp)]
	v := t.eng.forward(pkt, t.eps, buf, now)
	if v.icmp > 0 {
		t.icmp = append(t.icmp, buf[:v.icmp])
	}
	if v.reason != DropNone {
		t.eng.drop(v.reason, v.dropInfo, now)
		return 0
	}
	v.peer.ctr.txPackets.Add(1)
	v.peer.ctr.txBytes.Add(uint64(len(v.pkt)))
	return len(v.pkt)
}

// Write injects the decrypted packets bufs[i][offset:] that pass the
// Engine's admission (valid header, source owned by a peer, local
// destination), fragmenting a DF-clear IPv4 packet larger than the LAN
// MTU as plain mode does; a DF or IPv6 one is dropped as too_big_lan, but
// without the ICMP error plain mode sends back: only wireguard-go's read
// of this device sends to a peer, and it waits for the LAN. It always
// reports every packet as written: refusals are counted and logged here,
// as in plain mode.
func (t *wgTUN) Write(bufs [][]byte, offset int) (int, error) {
	t.wrMu.Lock()
	defer t.wrMu.Unlock()
	now := t.eng.now()
	t.q.reset(int(t.eng.lanMTU.Load()))
	for _, b := range bufs {
		t.admitOne(b[offset:], now)
	}
	t.ctr.delivered.Add(uint64(len(bufs)))
	if len(t.q.out) > 0 {
		t.eng.inject(t.q.out, t.q.peers, now.mono)
	}
	return len(bufs), nil
}

// admitOne queues one decrypted packet for injection, or counts its drop.
func (t *wgTUN) admitOne(pkt []byte, now batchTime) {
	if len(pkt) == 0 {
		t.eng.drop(DropTooShort, dropInfo{}, now.mono)
		return
	}
	r, d := t.eng.admit(pkt, nil)
	if r != DropNone {
		t.eng.drop(r, d, now.mono)
		return
	}
	if !t.q.fitsLAN(pkt) {
		t.eng.tooBigForLAN(&t.q, nil, d.peer, pkt, netip.AddrPort{}, now)
		return
	}
	t.q.add(d.peer, pkt, now)
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
func (t *wgTUN) BatchSize() int { return t.eng.batch }

// Close closes the capture (which ends wireguard-go's reader), the
// injector and the event channel. Safe to call more than once.
func (t *wgTUN) Close() error {
	var err error
	t.closed.Do(func() {
		err = errors.Join(t.capture.Close(), t.inj.Close())
		close(t.events)
	})
	return err
}

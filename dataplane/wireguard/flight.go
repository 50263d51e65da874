package wireguard

import (
	"sync/atomic"
	"time"
)

// wireguard-go keeps every packet it holds in a 64 KiB buffer
// (device.MaxMessageSize) from pools that are unbounded on Linux, and its
// queues hold up to 1024 batches per stage: a sender faster than the
// crypto fills them, and the agent grew to 700 MB under load. A credit
// bounds how many packets are inside the device in one direction; the
// device's own goroutines wait for credit in our tun.Device's Read
// (outbound) and in our bind's receive functions (inbound), so the
// backpressure reaches the capture socket and the UDP socket, whose
// kernel buffers drop what does not fit, as a kernel interface would.
//
// A packet is charged when it is handed to the device (and released at
// the next call if the device skipped it: see keptMask), and released
// where it leaves: Bind.Send for outbound; tun.Write, a keepalive or a
// logged drop for inbound. The device also drops some packets without a
// word (failed authentication, replay, packets staged for a peer whose
// handshake does not complete); their credit would leak. So the credit
// counts only the packets charged within a window (creditEpochs epochs
// of creditEpoch): a packet still unreleased when its epoch leaves the
// window is forgiven. Releases are taken from the oldest epochs first
// (packets leave the device's queues about in order). A packet crosses
// the device in well under a millisecond, so only the silent drops are
// forgiven, and packets held longer: those staged for a peer whose
// handshake does not complete. wireguard-go stages up to QueueStagedSize
// (128) of our reads per peer, each up to a batch of packets; while the
// outbound credit forgives, wgTUN.Read reads at most leakBatch packets
// at a time, so that a peer without a session flooded with traffic holds
// at most 128 × leakBatch buffers (32 MiB), not 128 × 32 (256 MiB).
const (
	creditOutbound = 128 // LAN packets read and not yet sent
	creditInbound  = 128 // datagrams received and not yet written to the LAN
	creditEpoch    = 25 * time.Millisecond
	creditEpochs   = 4 // the window: 100 ms
)

// credit is the number of packets in flight in one direction. One
// goroutine at a time waits in wait per caller; Charge and Release are
// called from any goroutine; nothing locks or allocates.
type credit struct {
	max   int64
	used  atomic.Int64               // Σ slot
	slot  [creditEpochs]atomic.Int64 // charged in an epoch of the window and not released, by epoch % creditEpochs
	epoch atomic.Int64               // the current epoch: time since start / epochLen
	start time.Time
	// epochLen is creditEpoch (tests shorten or lengthen it).
	epochLen time.Duration
	wake     chan struct{} // a Release wakes one waiter (cap 1)
	// forgiven counts packets charged and not seen leaving the device
	// within the window; lastForgiven is the epoch it last grew in + 1.
	forgiven     atomic.Uint64
	lastForgiven atomic.Int64
}

func newCredit(max int) *credit {
	return &credit{max: int64(max), wake: make(chan struct{}, 1), start: time.Now(), epochLen: creditEpoch}
}

// advance moves the window to now: each epoch that leaves it gives its
// count back (forgiving what was charged in it and never released).
func (c *credit) advance(now time.Time) int64 {
	e := int64(now.Sub(c.start) / c.epochLen)
	for {
		cur := c.epoch.Load()
		if e <= cur {
			return cur
		}
		next := cur + 1
		if e-cur > creditEpochs { // idle: the whole window leaves at once
			next = e
		}
		if !c.epoch.CompareAndSwap(cur, next) {
			continue
		}
		for i := cur + 1; i <= next && i <= cur+creditEpochs; i++ {
			v := c.slot[i%creditEpochs].Swap(0) // charged creditEpochs epochs before i, never released
			if v > 0 {
				c.forgiven.Add(uint64(v))
				c.lastForgiven.Store(i + 1)
			}
			c.used.Add(-v)
		}
	}
}

// leaking reports whether packets were forgiven within the last
// leakMemory epochs: the device holds or drops packets without a word.
func (c *credit) leaking() bool {
	last := c.lastForgiven.Load()
	return last > 0 && c.epoch.Load()-(last-1) < leakMemory
}

// leakMemory is how long leaking remembers a forgiveness: 1 s.
const leakMemory = 40

// room is how many packets may enter now.
func (c *credit) room() int64 { return c.max - c.used.Load() }

// wait blocks until fewer than max packets are in flight and returns how
// many more may enter now (at least 1). timer is the caller's own,
// stopped, reused between calls.
func (c *credit) wait(timer *time.Timer) int {
	for {
		c.advance(time.Now())
		if r := c.room(); r > 0 {
			if r > 1 {
				c.signal() // room for another waiter too
			}
			return int(r)
		}
		timer.Reset(c.epochLen)
		select {
		case <-c.wake:
			timer.Stop()
		case <-timer.C:
		}
	}
}

// full reports whether max packets are in flight, for a caller that drops
// rather than waits.
func (c *credit) full(now time.Time) bool {
	c.advance(now)
	return c.room() <= 0
}

// Charge counts n packets that entered the device.
func (c *credit) Charge(n int) {
	if n <= 0 {
		return
	}
	e := c.advance(time.Now())
	c.slot[e%creditEpochs].Add(int64(n))
	c.used.Add(int64(n))
}

// Release counts n packets that left the device, taken from the oldest
// epochs first: packets leave the device's queues in about the order they
// entered. Releases beyond what the window holds (packets already
// forgiven) count for nothing.
func (c *credit) Release(n int) {
	if n <= 0 {
		return
	}
	left := int64(n)
	e := c.epoch.Load() // advanced by Charge and wait, often enough
	for i := e - creditEpochs + 1; i <= e && left > 0; i++ {
		s := &c.slot[(i+creditEpochs)%creditEpochs]
		for {
			v := s.Load()
			if v <= 0 {
				break
			}
			take := min(v, left)
			if s.CompareAndSwap(v, v-take) {
				left -= take
				break
			}
		}
	}
	c.used.Add(-(int64(n) - left))
	c.signal()
}

func (c *credit) signal() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// InFlight is the number of packets charged within the window and not
// released.
func (c *credit) InFlight() int {
	c.advance(time.Now())
	return int(c.used.Load())
}

// newStoppedTimer is a timer for credit.wait.
func newStoppedTimer() *time.Timer {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return t
}

// keptMask records the buffers handed to the device by a Read or a
// receive function and tells, on the next call, which of them the device
// skipped: wireguard-go replaces the buffer of each packet it queues with
// a fresh one from its pool before it reads again, and reuses the buffer
// of each packet it did not keep (no peer for the destination, unknown
// receiver index, expired session). Packets are charged when handed over
// and the skipped ones released on the next call, so that a release never
// comes before its charge. Only the goroutine that makes the calls uses a
// keptMask.
type keptMask struct {
	ptr  []*byte
	kind []uint8 // the caller's class of each packet (0: not handed over)
	n    int
}

func newKeptMask(n int) keptMask {
	return keptMask{ptr: make([]*byte, n), kind: make([]uint8, n)}
}

// skipped calls f with the class of each packet of the previous call
// whose buffer bufs still holds, then forgets the previous call.
func (m *keptMask) skipped(bufs [][]byte, f func(kind uint8)) {
	for i := range min(m.n, len(bufs)) {
		if m.kind[i] != 0 && len(bufs[i]) > 0 && &bufs[i][0] == m.ptr[i] {
			f(m.kind[i])
		}
	}
	m.n = 0
}

// record remembers bufs[i] with class kinds[i] for i < n.
func (m *keptMask) record(bufs [][]byte, kinds []uint8, n int) {
	n = min(n, len(m.ptr), len(bufs), len(kinds))
	for i := range n {
		m.kind[i] = 0
		if len(bufs[i]) > 0 {
			m.ptr[i] = &bufs[i][0]
			m.kind[i] = kinds[i]
		}
	}
	m.n = n
}

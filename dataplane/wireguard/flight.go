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
// A packet is charged when the device keeps its buffer (it swaps in a
// fresh one: see keptMask) and released where it leaves the device:
// Bind.Send for outbound, tun.Write, a keepalive or a logged drop for
// inbound. The device also drops some packets without a word (failed
// authentication, replay, packets staged for a peer whose handshake never
// completes); their credit would leak, so a credit that sees no release
// for creditStall while it is exhausted is reclaimed whole, and until the
// next release it grants one packet at a time (a peer without a session
// stages at most QueueStagedSize of our reads, then one packet each).
const (
	creditOutbound = 128 // LAN packets read and not yet sent
	creditInbound  = 128 // datagrams received and not yet written to the LAN
	creditStall    = 50 * time.Millisecond
)

// credit is the number of packets in flight in one direction. One
// goroutine waits in wait at a time per caller; Charge and Release are
// called from any goroutine; nothing locks or allocates.
type credit struct {
	max       int64
	used      atomic.Int64
	released  atomic.Uint64 // Release calls: progress
	wake      chan struct{} // a Release wakes one waiter (cap 1)
	probation atomic.Bool   // reclaimed and no release since: one at a time
	reclaims  atomic.Uint64 // times the credit was reclaimed after a stall
	stall     time.Duration
	// lastRelease is when Release was last called (Unix ns), for full.
	lastRelease atomic.Int64
}

func newCredit(max int) *credit {
	return &credit{max: int64(max), wake: make(chan struct{}, 1), stall: creditStall}
}

// wait blocks until fewer than max packets are in flight and returns how
// many more may enter now (at least 1). timer is the caller's own,
// stopped, reused between calls.
func (c *credit) wait(timer *time.Timer) int {
	for {
		if u := c.used.Load(); u < c.max {
			if u+1 < c.max {
				c.signal() // room for another waiter too
			}
			if c.probation.Load() {
				return 1
			}
			return int(c.max - u)
		}
		seen := c.released.Load()
		timer.Reset(c.stall)
		select {
		case <-c.wake:
			timer.Stop()
		case <-timer.C:
			if c.released.Load() == seen && c.used.Load() >= c.max {
				c.used.Store(0)
				c.reclaims.Add(1)
				c.probation.Store(true)
			}
		}
	}
}

// full reports whether max packets are in flight, for a caller that drops
// rather than waits; it reclaims the credit if it has been full with no
// release for the stall time.
func (c *credit) full(now time.Time) bool {
	if c.used.Load() < c.max {
		return false
	}
	if now.UnixNano()-c.lastRelease.Load() < int64(c.stall) {
		return true
	}
	c.used.Store(0)
	c.reclaims.Add(1)
	c.lastRelease.Store(now.UnixNano())
	return false
}

// Charge counts n packets that entered the device.
func (c *credit) Charge(n int) {
	if n > 0 {
		c.used.Add(int64(n))
	}
}

// Release counts n packets that left the device.
func (c *credit) Release(n int) {
	if n <= 0 {
		return
	}
	if v := c.used.Add(-int64(n)); v < -c.max { // released after a reclaim
		c.used.CompareAndSwap(v, -c.max)
	}
	c.released.Add(1)
	c.lastRelease.Store(time.Now().UnixNano())
	if c.probation.Load() {
		c.probation.Store(false)
	}
	c.signal()
}

func (c *credit) signal() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// InFlight is the number of packets charged and not released.
func (c *credit) InFlight() int { return int(c.used.Load()) }

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

package wireguard

import (
	"sync/atomic"

	"tunnel-agent/dataplane"
)

// relayQueue holds the packets that go back into the tunnel without
// coming from the capture: what one peer sends to another through this
// gateway (Config.LAN.Relay: the Router's Inbound checks it and hands it
// over) and the ICMP errors the Router answers a peer's packet with (too
// big for the LAN, or for the next peer's path). wireguard-go takes
// plaintext only from the device's Read, so Write queues them here and
// wakes the capture's read (dataplane.WakeableCapture); Read hands them to
// wireguard-go ahead of captured packets.
//
// It is a ring with one producer (Write, serialised by wrMu) and one
// consumer (Read, wireguard-go's one reader goroutine): no lock and no
// allocation per packet. A packet that finds it full is dropped and
// counted by the Router as tunnel_busy.
type relayQueue struct {
	bufs  [relaySlots][]byte
	sizes [relaySlots]int
	head  atomic.Uint64 // next slot Read takes
	tail  atomic.Uint64 // next slot Write fills
}

const (
	relaySlots = 64
	// relaySlotSize holds any IP packet; the pages of a slot are touched
	// only as far as the packets it held.
	relaySlotSize = 1<<16 - 1
)

func newRelayQueue() *relayQueue {
	q := &relayQueue{}
	for i := range q.bufs {
		q.bufs[i] = make([]byte, relaySlotSize)
	}
	return q
}

// add queues a copy of pkt; false when the ring is full.
func (q *relayQueue) add(pkt []byte) bool {
	t := q.tail.Load()
	if t-q.head.Load() == relaySlots || len(pkt) > relaySlotSize {
		return false
	}
	i := t % relaySlots
	q.sizes[i] = copy(q.bufs[i], pkt)
	q.tail.Store(t + 1)
	return true
}

// drain moves queued packets into bufs (sizes[i] each) and returns how
// many.
func (q *relayQueue) drain(bufs [][]byte, sizes []int) int {
	h, t := q.head.Load(), q.tail.Load()
	n := 0
	for ; h < t && n < len(bufs); h++ {
		i := h % relaySlots
		sizes[n] = copy(bufs[n], q.bufs[i][:q.sizes[i]]) // wireguard-go's buffers hold any IP packet
		n++
	}
	q.head.Store(h)
	return n
}

// pending reports whether packets are queued.
func (q *relayQueue) pending() uint64 { return q.tail.Load() }

// wake wakes the read of the capture in slot, if it can be woken.
func wake(slot *dataplane.CaptureSlot) {
	if c, _ := slot.Current(); c != nil {
		if w, ok := c.(dataplane.WakeableCapture); ok {
			w.Wake()
		}
	}
}

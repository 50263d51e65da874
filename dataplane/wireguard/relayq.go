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
	bufs  [relaySlots][]byte // slices of one allocation
	sizes [relaySlots]int
	head  atomic.Uint64 // next slot Read takes
	tail  atomic.Uint64 // next slot Write fills
}

// relaySlots is the ring's length: bursts from several peers' receive
// goroutines wait here until wireguard-go's reader takes them.
const relaySlots = 256

// newRelayQueue returns a ring for packets up to mtu bytes (the device's
// MTU: larger ones cannot be relayed with DF set, and an IPv4 one with DF
// clear that large is dropped as tunnel_busy), and at least a
// 1500-byte packet or an ICMP error.
func newRelayQueue(mtu int) *relayQueue {
	q := &relayQueue{}
	size := max(mtu, 1500)
	slab := make([]byte, relaySlots*size)
	for i := range q.bufs {
		q.bufs[i] = slab[i*size : (i+1)*size : (i+1)*size]
	}
	return q
}

// add queues a copy of pkt; false when the ring is full.
func (q *relayQueue) add(pkt []byte) bool {
	t := q.tail.Load()
	if t-q.head.Load() == relaySlots || len(pkt) > len(q.bufs[0]) {
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

// Package dptest provides in-memory, channel-based implementations of the
// dataplane I/O interfaces (Capture, Transport, Injector), in the spirit of
// wireguard-go's tun/tuntest and conn/bindtest, plus IPv4 packet builders.
// With them an Engine, or two wired back to back, runs in a test without
// privileges or sockets.
//
// The fakes copy every packet at the boundary, as the kernel would, so the
// caller may reuse its buffers. They block rather than drop when a queue is
// full, which keeps tests deterministic; Close unblocks everything.
//
// This package does not import dataplane, so dataplane's own internal
// tests can use it; the interfaces are satisfied structurally.
package dptest

import (
	"fmt"
	"net"
	"sync"
	"sync/atomic"
)

// queueLen is the depth of every fake's queue.
const queueLen = 1024

// closer is the close-once state shared by the fakes.
type closer struct {
	done chan struct{}
	once sync.Once
	err  error // what reads return after close; set before done is closed
}

func newCloser() closer { return closer{done: make(chan struct{})} }

// close closes with err (nil: an error wrapping net.ErrClosed).
func (c *closer) close(what string, err error) {
	c.once.Do(func() {
		if err == nil {
			err = fmt.Errorf("dptest: %s closed: %w", what, net.ErrClosed)
		}
		c.err = err
		close(c.done)
	})
}

// isClosed reports whether close was called.
func (c *closer) isClosed() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// Capture is an in-memory dataplane.Capture. Packets queued with Send are
// returned by ReadBatch, in order.
type Capture struct {
	in      chan []byte
	wake    chan struct{} // Wake's, merged
	c       closer
	Dropped atomic.Uint64 // packets larger than the reader's buffer
}

// NewCapture returns an empty, open Capture.
func NewCapture() *Capture {
	return &Capture{in: make(chan []byte, queueLen), wake: make(chan struct{}, 1), c: newCloser()}
}

// Send queues a copy of pkt as if it arrived on the LAN interface. It
// blocks while the queue is full and reports false once closed.
func (c *Capture) Send(pkt []byte) bool {
	if c.c.isClosed() {
		return false
	}
	select {
	case c.in <- clone(pkt):
		return true
	case <-c.c.done:
		return false
	}
}

// ReadBatch implements dataplane.Capture: it blocks for the first packet,
// then takes whatever else is queued, up to len(bufs).
func (c *Capture) ReadBatch(bufs [][]byte, sizes []int) (int, error) {
	n := 0
	for n < len(bufs) {
		p, ok, err := next(c.in, &c.c, false)
		if !ok && err == nil && n == 0 { // nothing queued: wait for a packet, a Wake or Close
			select {
			case p, ok = <-c.in:
			case <-c.wake:
				return 0, nil
			case <-c.c.done:
				return 0, c.c.err
			}
		}
		if err != nil || !ok {
			return n, err
		}
		if len(p) > len(bufs[n]) {
			c.Dropped.Add(1) // never truncate, as the interface requires
			continue
		}
		sizes[n] = copy(bufs[n], p)
		n++
	}
	return n, nil
}

// Close implements dataplane.Capture; later reads fail with net.ErrClosed.
func (c *Capture) Close() error {
	c.c.close("capture", nil)
	return nil
}

// Wake makes the blocked ReadBatch, or the next, return (0, nil), as
// dataplane.WakeableCapture says.
func (c *Capture) Wake() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// Fail closes c so that ReadBatch returns err: an I/O failure.
func (c *Capture) Fail(err error) { c.c.close("capture", err) }

// next takes one item from q. If block, it waits for one or for close;
// otherwise it reports ok=false when q is empty. A closed fake reports its
// error only when nothing has been read yet in this batch (block), so the
// packets already copied are returned first.
func next[T any](q chan T, c *closer, block bool) (v T, ok bool, err error) {
	select {
	case <-c.done:
		if block {
			return v, false, c.err
		}
		return v, false, nil
	default:
	}
	if !block {
		select {
		case v = <-q:
			return v, true, nil
		default:
			return v, false, nil
		}
	}
	select {
	case v = <-q:
		return v, true, nil
	case <-c.done:
		return v, false, c.err
	}
}

// clone copies b into a new slice (never nil).
func clone(b []byte) []byte {
	return append(make([]byte, 0, len(b)), b...)
}

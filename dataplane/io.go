package dataplane

import (
	"errors"
	"net/netip"
)

// The packet path talks to the operating system only through the three
// small interfaces in this file, so that it can run in memory in tests
// (see package dataplane/dptest) and so that another tunnel side can reuse
// capture and injection unchanged. Their production implementations are
// afpacket.Capture, udp.Transport and rawip.Injector.

// Capture delivers IP packets seen arriving on the LAN interface, from the
// IP header on (link-layer header already removed).
type Capture interface {
	// ReadBatch blocks until at least one packet is available, then fills
	// bufs[i][:sizes[i]] for i < n and returns n. Each buffer must be large
	// enough for the largest frame the interface can deliver; a packet that
	// did not fit is dropped by the implementation, never truncated.
	// After Close it returns an error wrapping net.ErrClosed.
	ReadBatch(bufs [][]byte, sizes []int) (n int, err error)
	Close() error
}

// ErrInterfaceDown is wrapped by a Capture's read error when its interface
// went down (or away) but the capture stays usable: the interface may come
// back up, or the capture be replaced (Engine.ReplaceCapture). The engine
// keeps reading after it; any other error stops the engine.
var ErrInterfaceDown = errors.New("dataplane: capture interface down")

// WakeableCapture is a Capture whose blocked ReadBatch another goroutine
// can interrupt, for a reader that has something else to pass on (WireGuard
// mode's relayed packets and ICMP errors back into the tunnel).
type WakeableCapture interface {
	Capture
	// Wake makes the ReadBatch blocked now, or else the next one, return
	// at once, (0, nil) when nothing was read. It may be called from any
	// goroutine; wakes may be merged.
	Wake()
}

// Transport carries tunnel datagrams to and from peers (UDP in production).
type Transport interface {
	// ReadBatch blocks until at least one datagram is available, then fills
	// bufs[i][:sizes[i]] and from[i] for i < n and returns n. A datagram
	// larger than its buffer is dropped by the implementation.
	// After Close it returns an error wrapping net.ErrClosed.
	ReadBatch(bufs [][]byte, sizes []int, from []netip.AddrPort) (n int, err error)
	// WriteBatch sends each of bufs as one datagram to the matching entry
	// of to, and returns how many were sent before the first error.
	WriteBatch(bufs [][]byte, to []netip.AddrPort) (n int, err error)
	// LocalAddr is the address the transport is bound to.
	LocalAddr() netip.AddrPort
	Close() error
}

// Injector hands IP packets (from the IP header on) to the local IP stack,
// which routes them to their destination (a raw IP socket in production).
type Injector interface {
	// WriteBatch injects each of pkts and returns how many were injected
	// before the first error.
	WriteBatch(pkts [][]byte) (n int, err error)
	Close() error
}

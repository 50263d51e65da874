package dptest

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// Datagram is one datagram on a Network.
type Datagram struct {
	From, To netip.AddrPort
	Data     []byte
}

// Network connects Transports by address, like an IP network carrying
// UDP: a datagram to an address nobody listens on is lost (and counted).
// It can also play a NAT, rewriting a sender's address (see SetNAT).
type Network struct {
	mu    sync.RWMutex
	nodes map[netip.AddrPort]*Transport
	nat   map[netip.AddrPort]netip.AddrPort // inside → outside
	unnat map[netip.AddrPort]netip.AddrPort // outside → inside
	Lost  atomic.Uint64
}

// NewNetwork returns an empty network.
func NewNetwork() *Network {
	return &Network{nodes: map[netip.AddrPort]*Transport{},
		nat: map[netip.AddrPort]netip.AddrPort{}, unnat: map[netip.AddrPort]netip.AddrPort{}}
}

// Listen returns a Transport bound to addr. It panics if addr is in use,
// which is a bug in the test.
func (n *Network) Listen(addr netip.AddrPort) *Transport {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.nodes[addr] != nil {
		panic("dptest: address in use: " + addr.String())
	}
	t := &Transport{net: n, addr: addr, in: make(chan Datagram, queueLen), c: newCloser()}
	n.nodes[addr] = t
	return t
}

// SetNAT makes datagrams sent from inside appear to come from outside, and
// datagrams to outside reach inside, replacing any earlier mapping of
// inside. Changing the mapping mid-test simulates a NAT rebinding.
func (n *Network) SetNAT(inside, outside netip.AddrPort) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if old, ok := n.nat[inside]; ok {
		delete(n.unnat, old)
	}
	n.nat[inside], n.unnat[outside] = outside, inside
}

// route applies NAT to a datagram from → to and finds the receiver.
func (n *Network) route(from, to netip.AddrPort) (*Transport, netip.AddrPort) {
	n.mu.RLock()
	defer n.mu.RUnlock()
	if out, ok := n.nat[from]; ok {
		from = out
	}
	if in, ok := n.unnat[to]; ok {
		to = in
	}
	return n.nodes[to], from
}

// remove unbinds t.
func (n *Network) remove(t *Transport) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.nodes[t.addr] == t {
		delete(n.nodes, t.addr)
	}
}

// Transport is an in-memory dataplane.Transport on a Network.
type Transport struct {
	net  *Network
	addr netip.AddrPort
	in   chan Datagram
	c    closer

	mu       sync.Mutex
	writeErr error

	Dropped atomic.Uint64 // datagrams larger than the reader's buffer
}

// LocalAddr implements dataplane.Transport.
func (t *Transport) LocalAddr() netip.AddrPort { return t.addr }

// SetWriteError makes WriteBatch fail with err (nil: succeed again).
func (t *Transport) SetWriteError(err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.writeErr = err
}

// Deliver queues a copy of d as received by t, whatever d.From says: for
// spoofed, stray or NATed senders. It reports false once t is closed.
func (t *Transport) Deliver(d Datagram) bool {
	return t.deliver(d, nil)
}

// deliver is Deliver that also gives up when abort is closed (the sender
// closing), so a full queue cannot hold a stopping sender forever.
func (t *Transport) deliver(d Datagram, abort <-chan struct{}) bool {
	d.Data, d.To = clone(d.Data), t.addr
	if t.c.isClosed() {
		return false
	}
	select {
	case t.in <- d:
		return true
	case <-t.c.done:
		return false
	case <-abort:
		return false
	}
}

// Recv waits up to timeout for the next datagram to t. Use it on
// transports that no Engine reads.
func (t *Transport) Recv(timeout time.Duration) (Datagram, error) {
	select {
	case d := <-t.in:
		return d, nil
	case <-time.After(timeout):
		return Datagram{}, errors.New("dptest: no datagram within " + timeout.String())
	}
}

// ReadBatch implements dataplane.Transport.
func (t *Transport) ReadBatch(bufs [][]byte, sizes []int, from []netip.AddrPort) (int, error) {
	n := 0
	for n < len(bufs) {
		d, ok, err := next(t.in, &t.c, n == 0)
		if err != nil || !ok {
			return n, err
		}
		if len(d.Data) > len(bufs[n]) {
			t.Dropped.Add(1)
			continue
		}
		sizes[n], from[n] = copy(bufs[n], d.Data), d.From
		n++
	}
	return n, nil
}

// WriteBatch implements dataplane.Transport. Datagrams to unknown
// addresses are lost silently, as with UDP.
func (t *Transport) WriteBatch(bufs [][]byte, to []netip.AddrPort) (int, error) {
	if err := t.writeError(); err != nil {
		return 0, err
	}
	for i, b := range bufs {
		if t.c.isClosed() {
			return i, fmt.Errorf("dptest: transport closed: %w", net.ErrClosed)
		}
		dst, from := t.net.route(t.addr, to[i])
		if dst == nil || !dst.deliver(Datagram{From: from, Data: b}, t.c.done) {
			t.net.Lost.Add(1)
		}
	}
	return len(bufs), nil
}

// writeError is the error set by SetWriteError.
func (t *Transport) writeError() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.writeErr
}

// Close implements dataplane.Transport and unbinds the address.
func (t *Transport) Close() error {
	t.Fail(nil)
	return nil
}

// Fail closes t so that ReadBatch returns err (nil: net.ErrClosed), an I/O
// failure, and unbinds the address.
func (t *Transport) Fail(err error) {
	t.c.close("transport", err)
	t.net.remove(t)
}

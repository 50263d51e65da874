package wireguard

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"

	"golang.zx2c4.com/wireguard/conn"

	"tunnel-agent/dataplane"
	"tunnel-agent/dataplane/udp"
)

// udpBind is wireguard-go's conn.Bind over a dataplane.Transport, the
// project's UDP socket (package udp) in production: bound to one
// address, the one `listen` names (0.0.0.0, [::] for both families, or a
// specific one), read and written in batches with recvmmsg/sendmmsg, GRO
// and GSO, one socket and one receive function. Compared with wireguard-go's StdNetBind (two sockets, a port
// only, batches of 128 and an endpoint allocated per datagram), it holds
// fewer of the device's 64 KiB buffers and allocates nothing per
// datagram from a known source.
type udpBind struct {
	addr   netip.Addr
	listen ListenFunc
	batch  int

	mu sync.Mutex // Open, Close, the socket
	t  dataplane.Transport

	smu sync.Mutex // Send's destination slice
	to  []netip.AddrPort
}

// udpBindBatch is the batch the bind reads and wireguard-go sends: as
// many 64 KiB buffers per receive function, and the device's TUN reader
// takes as many again (or the LAN batch size, if larger). Measured with
// bench/run.sh (ta_wg): 32 and 64 carry TCP alike, 128 no faster; each
// doubling costs ~8 MiB more resident (docs/performance.md).
const udpBindBatch = 32

// ListenFunc opens the tunnel's UDP socket on addr (port 0: any free
// port).
type ListenFunc func(addr netip.AddrPort) (dataplane.Transport, error)

// listenUDP is the default ListenFunc: package udp with its default
// offloads.
func listenUDP(addr netip.AddrPort) (dataplane.Transport, error) {
	return udp.Listen(addr, udp.Options{})
}

func newUDPBind(addr netip.Addr, listen ListenFunc) *udpBind {
	if listen == nil {
		listen = listenUDP
	}
	return &udpBind{addr: addr, listen: listen, batch: udpBindBatch, to: make([]netip.AddrPort, udpBindBatch)}
}

// Open binds the socket to the address and port.
func (b *udpBind) Open(port uint16) ([]conn.ReceiveFunc, uint16, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.t != nil {
		return nil, 0, conn.ErrBindAlreadyOpen
	}
	t, err := b.listen(netip.AddrPortFrom(b.addr, port))
	if err != nil {
		return nil, 0, fmt.Errorf("listen on %v: %w", netip.AddrPortFrom(b.addr, port), err)
	}
	b.t = t
	return []conn.ReceiveFunc{b.receiveFunc(t)}, t.LocalAddr().Port(), nil
}

// receiveFunc reads a batch. The endpoints of the sources are kept in a
// map that only this function's goroutine uses, so that a datagram from a
// known source costs no allocation.
func (b *udpBind) receiveFunc(t dataplane.Transport) conn.ReceiveFunc {
	from := make([]netip.AddrPort, b.batch)
	eps := make(map[netip.AddrPort]*udpEndpoint)
	var last *udpEndpoint
	return func(bufs [][]byte, sizes []int, out []conn.Endpoint) (int, error) {
		n := min(len(bufs), len(sizes), len(out), len(from))
		got, err := t.ReadBatch(bufs[:n], sizes[:n], from[:n])
		if err != nil {
			return 0, err
		}
		for i := range got {
			ap := from[i]
			if last == nil || last.ap != ap {
				if last = eps[ap]; last == nil {
					if len(eps) >= maxEndpoints { // a scan of source ports: start over
						clear(eps)
					}
					last = &udpEndpoint{ap: ap}
					eps[ap] = last
				}
			}
			out[i] = last
		}
		return got, nil
	}
}

// maxEndpoints bounds the receive function's map of sources.
const maxEndpoints = 4096

// Close closes the socket; the receive function then returns an error
// wrapping net.ErrClosed.
func (b *udpBind) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.t == nil {
		return nil
	}
	err := b.t.Close()
	b.t = nil
	return err
}

// drops is what the socket lost before the device saw it: the kernel's
// drops (receive buffer full) and datagrams too large for a buffer; the
// figures of the current socket (0 while closed, or if the transport does
// not count them).
func (b *udpBind) drops() (kernel, truncated uint64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if t, ok := b.t.(interface {
		KernelDrops() uint64
		Truncated() uint64
	}); ok {
		return t.KernelDrops(), t.Truncated()
	}
	return 0, 0
}

// SetMark is not supported: the agent marks nothing.
func (b *udpBind) SetMark(uint32) error { return nil }

// Send sends bufs to ep in one batch (a GSO run when they are of equal
// size).
func (b *udpBind) Send(bufs [][]byte, ep conn.Endpoint) error {
	e, ok := ep.(*udpEndpoint)
	if !ok {
		return conn.ErrWrongEndpointType
	}
	b.mu.Lock()
	t := b.t
	b.mu.Unlock()
	if t == nil {
		return errors.New("send on a closed bind")
	}
	b.smu.Lock()
	defer b.smu.Unlock()
	for len(bufs) > 0 {
		n := min(len(bufs), len(b.to))
		for i := range n {
			b.to[i] = e.ap
		}
		sent, err := t.WriteBatch(bufs[:n], b.to[:n])
		if err != nil {
			return err
		}
		bufs = bufs[max(sent, 1):]
	}
	return nil
}

// ParseEndpoint parses ip:port.
func (b *udpBind) ParseEndpoint(s string) (conn.Endpoint, error) {
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return nil, err
	}
	return &udpEndpoint{ap: netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())}, nil
}

// BatchSize is the number of datagrams per read and per send.
func (b *udpBind) BatchSize() int { return b.batch }

// udpEndpoint is a peer's address. The source address of the datagram is
// not kept: the kernel picks it by route, as for any socket bound to one
// address or to all of them.
type udpEndpoint struct{ ap netip.AddrPort }

func (e *udpEndpoint) ClearSrc()           {}
func (e *udpEndpoint) SrcToString() string { return "" }
func (e *udpEndpoint) DstToString() string { return e.ap.String() }
func (e *udpEndpoint) DstIP() netip.Addr   { return e.ap.Addr() }
func (e *udpEndpoint) SrcIP() netip.Addr   { return netip.Addr{} }

// DstToBytes is the address and port, for the cookie MAC.
func (e *udpEndpoint) DstToBytes() []byte {
	b, _ := e.ap.MarshalBinary()
	return b
}

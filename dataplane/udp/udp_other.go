//go:build !linux

package udp

import (
	"errors"
	"net/netip"
)

// Transport is only implemented on Linux.
type Transport struct{}

// Listen is only implemented on Linux.
func Listen(addr netip.AddrPort, opt Options) (*Transport, error) { return nil, errors.ErrUnsupported }

func (t *Transport) ReadBatch(bufs [][]byte, sizes []int, from []netip.AddrPort) (int, error) {
	return 0, errors.ErrUnsupported
}
func (t *Transport) WriteBatch(bufs [][]byte, to []netip.AddrPort) (int, error) {
	return 0, errors.ErrUnsupported
}
func (t *Transport) LocalAddr() netip.AddrPort { return netip.AddrPort{} }
func (t *Transport) Truncated() uint64         { return 0 }
func (t *Transport) KernelDrops() uint64       { return 0 }
func (t *Transport) Close() error              { return nil }

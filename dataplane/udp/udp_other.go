//go:build !linux

package dataplane

import (
	"errors"
	"net/netip"
)

// UDPTransport is only implemented on Linux.
type UDPTransport struct{}

// ListenUDP is only implemented on Linux.
func ListenUDP(addr netip.AddrPort) (*UDPTransport, error) { return nil, errors.ErrUnsupported }

func (t *UDPTransport) ReadBatch(bufs [][]byte, sizes []int, from []netip.AddrPort) (int, error) {
	return 0, errors.ErrUnsupported
}
func (t *UDPTransport) WriteBatch(bufs [][]byte, to []netip.AddrPort) (int, error) {
	return 0, errors.ErrUnsupported
}
func (t *UDPTransport) LocalAddr() netip.AddrPort { return netip.AddrPort{} }
func (t *UDPTransport) Truncated() uint64         { return 0 }
func (t *UDPTransport) KernelDrops() uint64       { return 0 }
func (t *UDPTransport) Close() error              { return nil }

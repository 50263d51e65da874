//go:build !linux

package afpacket

import (
	"errors"
	"net/netip"
)

// BufferSize is a buffer size that holds any frame a capture can
// deliver.
const BufferSize = 65535 + 1024

// Capture is only implemented on Linux.
type Capture struct{}

// Open is only implemented on Linux.
func Open(ifname string, prefixes []netip.Prefix, opt Options) (*Capture, error) {
	return nil, errors.ErrUnsupported
}

func (c *Capture) ReadBatch(bufs [][]byte, sizes []int) (int, error) {
	return 0, errors.ErrUnsupported
}
func (c *Capture) Truncated() uint64        { return 0 }
func (c *Capture) GSODropped() uint64       { return 0 }
func (c *Capture) Unreadable() uint64       { return 0 }
func (c *Capture) KernelStats() KernelStats { return KernelStats{} }
func (c *Capture) Close() error             { return nil }

// SetPrefixes is only implemented on Linux.
func (c *Capture) SetPrefixes(prefixes []netip.Prefix) error { return errors.ErrUnsupported }

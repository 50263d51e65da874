//go:build !linux

package dataplane

import (
	"errors"
	"net/netip"
)

// CaptureBufferSize is a buffer size that holds any frame a capture can
// deliver.
const CaptureBufferSize = 65535 + 1024

// PacketCapture is only implemented on Linux.
type PacketCapture struct{}

// OpenCapture is only implemented on Linux.
func OpenCapture(ifname string, prefixes []netip.Prefix) (*PacketCapture, error) {
	return nil, errors.ErrUnsupported
}

// OpenCaptureWith is only implemented on Linux.
func OpenCaptureWith(ifname string, prefixes []netip.Prefix, opt CaptureOptions) (*PacketCapture, error) {
	return nil, errors.ErrUnsupported
}

func (c *PacketCapture) ReadBatch(bufs [][]byte, sizes []int) (int, error) {
	return 0, errors.ErrUnsupported
}
func (c *PacketCapture) Truncated() uint64               { return 0 }
func (c *PacketCapture) GSODropped() uint64              { return 0 }
func (c *PacketCapture) Unreadable() uint64              { return 0 }
func (c *PacketCapture) KernelStats() CaptureKernelStats { return CaptureKernelStats{} }
func (c *PacketCapture) Close() error                    { return nil }

// SetPrefixes is only implemented on Linux.
func (c *PacketCapture) SetPrefixes(prefixes []netip.Prefix) error { return errors.ErrUnsupported }

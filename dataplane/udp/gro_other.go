//go:build !linux

package dataplane

// GROStats is only implemented on Linux.
func (t *UDPTransport) GROStats() GROStats { return GROStats{} }

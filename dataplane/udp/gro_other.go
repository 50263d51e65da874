//go:build !linux

package udp

// GROStats is only implemented on Linux.
func (t *Transport) GROStats() GROStats { return GROStats{} }

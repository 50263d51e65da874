//go:build !linux

package udp

import (
	"errors"
	"net/netip"
)

// PathMTU is only implemented on Linux.
func PathMTU(dst netip.Addr) (int, error) { return 0, errors.ErrUnsupported }

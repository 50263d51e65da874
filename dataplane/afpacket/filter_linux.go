package afpacket

import (
	"fmt"
	"net/netip"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// SetPrefixes replaces the capture's BPF filter on the open socket (a
// reload changed the peers' prefixes): SO_ATTACH_FILTER swaps the program
// atomically, so no packet is seen unfiltered and none of the unchanged
// prefixes is missed.
func (c *Capture) SetPrefixes(prefixes []netip.Prefix) error {
	filter, err := captureFilter(prefixes, c.link.linkLen)
	if err != nil {
		return fmt.Errorf("capture filter for %s: %w", c.ifname, err)
	}
	prog := unix.SockFprog{
		Len:    uint16(len(filter)),
		Filter: (*unix.SockFilter)(unsafe.Pointer(unsafe.SliceData(filter))),
	}
	var serr error
	if err := c.rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptSockFprog(int(fd), unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &prog)
	}); err != nil {
		return fmt.Errorf("capture on %s: %w", c.ifname, err)
	}
	if serr != nil {
		return fmt.Errorf("capture on %s: %w", c.ifname, os.NewSyscallError("setsockopt SO_ATTACH_FILTER", serr))
	}
	return nil
}

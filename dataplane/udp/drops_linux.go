package udp

import (
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The tunnel socket's kernel drops: datagrams for the socket that the
// kernel discarded before the agent read them, above all because its
// receive buffer was full (a flood, or the agent descheduled), but also
// for a bad UDP checksum. The kernel keeps them in the socket's sk_drops.
//
// Two ways to read it: SO_RXQ_OVFL attaches the counter to every datagram
// received (a control message to parse per message of every batch), and
// SO_MEMINFO returns it on demand with the socket's other memory figures.
// The counter is cumulative either way, so reading it when someone asks
// (status, a metrics scrape) loses nothing; SO_MEMINFO is that, and costs
// the packet path nothing.

// kernelDrops sums the tunnel socket's sk_drops, a 32-bit counter that may
// wrap, into 64 bits.
type kernelDrops struct {
	mu   sync.Mutex
	last uint32
	sum  uint64
}

// KernelDrops is the number of datagrams for the tunnel socket that the
// kernel dropped before they were read (receive buffer full, bad
// checksum), since the socket was opened; after Close, as of Close.
func (t *Transport) KernelDrops() uint64 {
	t.kd.mu.Lock()
	defer t.kd.mu.Unlock()
	var mi [unix.SK_MEMINFO_VARS]uint32
	var errno unix.Errno
	err := t.rc.Control(func(fd uintptr) {
		size := uint32(unsafe.Sizeof(mi))
		_, _, errno = unix.Syscall6(unix.SYS_GETSOCKOPT, fd, unix.SOL_SOCKET, unix.SO_MEMINFO,
			uintptr(unsafe.Pointer(&mi[0])), uintptr(unsafe.Pointer(&size)), 0)
	})
	if err == nil && errno == 0 {
		now := mi[unix.SK_MEMINFO_DROPS]
		t.kd.sum += uint64(now - t.kd.last) // modulo 2^32: a wrap counts right
		t.kd.last = now
	}
	return t.kd.sum
}

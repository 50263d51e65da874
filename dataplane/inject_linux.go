package dataplane

import (
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// RawInjector is the production Injector: a raw IPv4 socket with protocol
// IPPROTO_RAW (which implies IP_HDRINCL: the packet is sent with the
// header we give, the kernel only fills in the total length, the header
// checksum, and the ID and source address when zero). The kernel routes
// each packet by its destination as if this host had originated it.
//
// The kernel never fragments an IP_HDRINCL packet: one larger than the
// MTU of its route fails with EMSGSIZE (errors.Is(err, syscall.EMSGSIZE)),
// whatever its DF bit.
//
// The socket receives nothing (IPPROTO_RAW sockets are send-only).
// WriteBatch calls are serialised.
type RawInjector struct {
	f  *os.File
	rc syscall.RawConn

	mu sync.Mutex
	w  batchWriter

	closed atomic.Bool
}

var _ Injector = (*RawInjector)(nil)

// OpenInjector opens the raw socket in the calling thread's network
// namespace.
func OpenInjector() (*RawInjector, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW)
	if err != nil {
		return nil, &net.OpError{Op: "listen", Net: "ip4:raw", Err: os.NewSyscallError("socket", err)}
	}
	f := os.NewFile(uintptr(fd), "ip4:raw")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, &net.OpError{Op: "listen", Net: "ip4:raw", Err: err}
	}
	inj := &RawInjector{f: f, rc: rc}
	inj.w.init(rc)
	return inj, nil
}

// WriteBatch implements Injector: each packet (from the IPv4 header on) is
// sent to its own destination address. A packet that is too short or not
// IPv4 stops the batch with an error (IPv6 is not supported yet).
func (inj *RawInjector) WriteBatch(pkts [][]byte) (int, error) {
	inj.mu.Lock()
	defer inj.mu.Unlock()
	total := 0
	for len(pkts) > 0 {
		chunk := min(len(pkts), maxBatch)
		m := inj.w.prepare(pkts[:chunk])
		var bad error
		k := 0
		for ; k < chunk; k++ {
			if bad = injectDest(&m.names[k], &m.hdrs[k].Hdr, pkts[k]); bad != nil {
				break
			}
		}
		sent, err := inj.w.write(k)
		total += sent
		if err == nil {
			err = bad
		}
		if err != nil {
			if inj.closed.Load() {
				err = net.ErrClosed
			}
			return total, &net.OpError{Op: "write", Net: "ip4:raw", Err: err}
		}
		pkts = pkts[chunk:]
	}
	return total, nil
}

// injectDest sets the destination sockaddr of h from the packet's header,
// dispatching on the IP version.
func injectDest(raw *unix.RawSockaddrInet6, h *unix.Msghdr, pkt []byte) error {
	if len(pkt) == 0 {
		return fmt.Errorf("inject: empty packet")
	}
	switch pkt[0] >> 4 {
	case 4:
		if len(pkt) < 20 {
			return fmt.Errorf("inject: IPv4 packet of %d bytes is shorter than its header", len(pkt))
		}
		sa := (*unix.RawSockaddrInet4)(unsafe.Pointer(raw))
		*sa = unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: [4]byte(pkt[16:20])}
		h.Name = (*byte)(unsafe.Pointer(raw))
		h.Namelen = unix.SizeofSockaddrInet4
		return nil
	case 6:
		// Later: a second socket(AF_INET6, SOCK_RAW, IPPROTO_RAW) and a
		// sockaddr_in6 to the inner destination.
		return fmt.Errorf("inject: %w", errIPv6NotSupported)
	default:
		return fmt.Errorf("inject: not an IP packet (version %d)", pkt[0]>>4)
	}
}

// Close closes the socket.
func (inj *RawInjector) Close() error {
	if inj.closed.Swap(true) {
		return &net.OpError{Op: "close", Net: "ip4:raw", Err: net.ErrClosed}
	}
	if err := inj.f.Close(); err != nil {
		return &net.OpError{Op: "close", Net: "ip4:raw", Err: err}
	}
	return nil
}

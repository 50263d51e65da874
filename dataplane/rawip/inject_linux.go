package rawip

import (
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"tunnel-agent/dataplane/internal/header"
	"tunnel-agent/dataplane/internal/mmsg"
)

// Injector is the production dataplane.Injector: a raw IPv4 socket and a
// raw IPv6 socket, both with protocol IPPROTO_RAW and header inclusion
// (IP_HDRINCL, implied for IPv4; IPV6_HDRINCL, set explicitly for IPv6):
// the packet is sent with the header we give (the IPv4 kernel only fills
// in the total length, the header checksum, and the ID and source address
// when zero).
// The kernel routes each packet by its destination as if this host had
// originated it.
//
// The kernel never fragments a header-included packet: one larger than
// the MTU of its route fails with EMSGSIZE (errors.Is(err,
// syscall.EMSGSIZE)), whatever its DF bit.
//
// The sockets receive nothing (IPPROTO_RAW sockets are send-only).
// WriteBatch calls are serialised.
type Injector struct {
	v4, v6 rawSocket

	mu     sync.Mutex
	closed atomic.Bool
}

// rawSocket is one family's raw socket; f is nil when the family is not
// available (err says why) and its packets fail.
type rawSocket struct {
	f   *os.File
	rc  syscall.RawConn
	w   mmsg.Writer
	err error
}

// Open opens the raw sockets in the calling thread's network
// namespace. The IPv4 socket is required; without IPv6 in the kernel the
// injector works for IPv4 and fails IPv6 packets.
func Open() (*Injector, error) {
	inj := &Injector{}
	if err := inj.v4.open(unix.AF_INET); err != nil {
		return nil, &net.OpError{Op: "listen", Net: "ip4:raw", Err: err}
	}
	if err := inj.v6.open(unix.AF_INET6); err != nil {
		inj.v6.err = &net.OpError{Op: "listen", Net: "ip6:raw", Err: err}
	}
	return inj, nil
}

// open creates the raw socket of family fam.
//
// The socket is blocking and stays out of the runtime poller (os.NewFile
// registers only non-blocking descriptors): it is never read, and a
// socket in an epoll set has every sent packet's release (sock_wfree, when
// the packet reaches the next stack) run the epoll callback and wake the
// runtime's poller thread for write space nobody waits for, a wakeup per
// packet. A full send buffer blocks the injecting thread in sendmmsg, as
// it should: the LAN cannot take more.
func (s *rawSocket) open(fam int) error {
	fd, err := unix.Socket(fam, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW)
	if err != nil {
		return os.NewSyscallError("socket", err)
	}
	if fam == unix.AF_INET6 {
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_HDRINCL, 1); err != nil {
			unix.Close(fd)
			return os.NewSyscallError("setsockopt IPV6_HDRINCL", err)
		}
	}
	s.f = os.NewFile(uintptr(fd), "ip:raw")
	if s.rc, err = s.f.SyscallConn(); err != nil {
		s.f.Close()
		s.f = nil
		return err
	}
	s.w.InitBlocking(s.rc)
	return nil
}

// WriteBatch implements Injector: each packet (from the IP header on) is
// sent to its own destination address through the socket of its family. A
// packet that is too short or not IP stops the batch with an error.
func (inj *Injector) WriteBatch(pkts [][]byte) (int, error) {
	inj.mu.Lock()
	defer inj.mu.Unlock()
	total := 0
	for len(pkts) > 0 {
		s, run := inj.socketFor(pkts)
		sent, err := inj.writeRun(s, pkts[:run])
		total += sent
		if err != nil {
			if inj.closed.Load() {
				err = net.ErrClosed
			}
			return total, &net.OpError{Op: "write", Net: "ip:raw", Err: err}
		}
		pkts = pkts[run:]
	}
	return total, nil
}

// socketFor returns the socket for pkts[0] and how many packets from the
// start share its IP version (at most maxBatch). A packet that is not IP
// gets the IPv4 socket; injectDest then refuses it.
func (inj *Injector) socketFor(pkts [][]byte) (*rawSocket, int) {
	ver := ipVersion(pkts[0])
	run := 1
	for run < len(pkts) && run < mmsg.MaxBatch && ipVersion(pkts[run]) == ver {
		run++
	}
	if ver == 6 {
		return &inj.v6, run
	}
	return &inj.v4, run
}

// ipVersion is the version nibble of pkt, 0 for an empty packet.
func ipVersion(pkt []byte) byte {
	if len(pkt) == 0 {
		return 0
	}
	return pkt[0] >> 4
}

// writeRun sends pkts (one family, at most maxBatch) through s and returns
// how many were sent before the first error.
func (inj *Injector) writeRun(s *rawSocket, pkts [][]byte) (int, error) {
	if s.f == nil {
		return 0, fmt.Errorf("inject: %w", s.unavailable())
	}
	m := s.w.Prepare(pkts)
	var bad error
	k := 0
	for ; k < len(pkts); k++ {
		if bad = injectDest(&m.Names[k], &m.Hdrs[k].Hdr, pkts[k]); bad != nil {
			break
		}
	}
	sent, err := s.w.Write(k)
	if err == nil {
		err = bad
	}
	return sent, err
}

// unavailable says why a socket was not opened.
func (s *rawSocket) unavailable() error {
	if s.err != nil {
		return s.err
	}
	return errors.New("no raw socket")
}

// injectDest sets the destination sockaddr of h from the packet's header,
// dispatching on the IP version.
func injectDest(raw *unix.RawSockaddrInet6, h *unix.Msghdr, pkt []byte) error {
	switch ipVersion(pkt) {
	case 4:
		if len(pkt) < header.IPv4MinHeaderLen {
			return fmt.Errorf("inject: IPv4 packet of %d bytes is shorter than its header", len(pkt))
		}
		sa := (*unix.RawSockaddrInet4)(unsafe.Pointer(raw))
		*sa = unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: [4]byte(pkt[header.IPv4OffDst : header.IPv4OffDst+4])}
		h.Namelen = unix.SizeofSockaddrInet4
	case 6:
		if len(pkt) < header.IPv6HeaderLen {
			return fmt.Errorf("inject: IPv6 packet of %d bytes is shorter than its header", len(pkt))
		}
		*raw = unix.RawSockaddrInet6{Family: unix.AF_INET6, Addr: [16]byte(pkt[header.IPv6OffDst : header.IPv6OffDst+16])}
		h.Namelen = unix.SizeofSockaddrInet6
	case 0:
		if len(pkt) == 0 {
			return fmt.Errorf("inject: empty packet")
		}
		fallthrough
	default:
		return fmt.Errorf("inject: not an IP packet (version %d)", pkt[0]>>4)
	}
	h.Name = (*byte)(unsafe.Pointer(raw))
	return nil
}

// Close closes the sockets.
func (inj *Injector) Close() error {
	if inj.closed.Swap(true) {
		return &net.OpError{Op: "close", Net: "ip:raw", Err: net.ErrClosed}
	}
	var errs []error
	for _, s := range []*rawSocket{&inj.v4, &inj.v6} {
		if s.f != nil {
			if err := s.f.Close(); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return &net.OpError{Op: "close", Net: "ip:raw", Err: err}
	}
	return nil
}

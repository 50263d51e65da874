package dataplane

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// UDPTransport is the production Transport: one UDP socket, read and
// written in batches with recvmmsg(2)/sendmmsg(2) through the Go runtime
// poller, without allocating per datagram.
//
// ReadBatch and WriteBatch may run concurrently with each other (one
// reader, one writer); concurrent calls of the same method are serialised.
type UDPTransport struct {
	conn  *net.UDPConn
	rc    syscall.RawConn
	local netip.AddrPort
	fam   int // unix.AF_INET or unix.AF_INET6: the socket's family
	// dual: an AF_INET6 socket bound to [::] that also carries IPv4
	// (IPV6_V6ONLY off); IPv4 peers are addressed as IPv4-mapped.
	dual bool

	rmu sync.Mutex
	r   batchReader
	gro *groReader // UDP_GRO receives (gro_linux.go); nil when off

	wmu sync.Mutex
	w   batchWriter
	// GSO sends (gso_linux.go): on until the kernel refuses them.
	gso atomic.Bool
	g   *gsoBatch
	gw  batchWriter

	truncated atomic.Uint64
	kd        kernelDrops // udp_drops_linux.go
}

var _ Transport = (*UDPTransport)(nil)

// udpSocketBuffer is the receive and send buffer size asked for the tunnel
// socket. The kernel default (rmem_default, ~208 KiB) holds only ~140 full
// size datagrams, and the tutorial's program loses packets to it as soon as
// the reader falls behind a burst.
const udpSocketBuffer = 8 << 20

// ListenUDP opens the tunnel socket bound to addr (port 0 picks a free
// port) in the calling thread's network namespace.
func ListenUDP(addr netip.AddrPort) (*UDPTransport, error) {
	network, fam := "udp4", unix.AF_INET
	switch {
	case !addr.IsValid():
		return nil, &net.OpError{Op: "listen", Net: "udp", Err: fmt.Errorf("invalid address %v", addr)}
	case addr.Addr().Is4() || addr.Addr().Is4In6():
		addr = netip.AddrPortFrom(addr.Addr().Unmap(), addr.Port())
	case addr.Addr().IsUnspecified():
		network, fam = "udp", unix.AF_INET6 // Go's "udp" on [::] is dual-stack
	default:
		network, fam = "udp6", unix.AF_INET6
	}
	conn, err := net.ListenUDP(network, net.UDPAddrFromAddrPort(addr))
	if err != nil {
		return nil, err
	}
	t := &UDPTransport{conn: conn, fam: fam, dual: network == "udp"}
	fail := func(op string, err error) (*UDPTransport, error) {
		conn.Close()
		return nil, &net.OpError{Op: op, Net: network, Source: conn.LocalAddr(), Err: err}
	}
	if t.rc, err = conn.SyscallConn(); err != nil {
		return fail("listen", err)
	}
	var serr error
	err = t.rc.Control(func(fd uintptr) {
		setSocketBuffers(int(fd), udpSocketBuffer)
		if enableGRO(int(fd)) {
			t.gro = newGROReader()
		}
		// Outer datagrams leave with DF cleared (IP_PMTUDISC_DONT). An
		// outer datagram is the inner packet plus 28 bytes of IPv4/UDP
		// header, so a full-size inner packet does not fit a path of the
		// same MTU. With DF set (the Linux default, IP_PMTUDISC_WANT) such
		// a datagram is dropped by the first smaller hop, the kernel learns
		// the PMTU from the ICMP error and from then on fragments locally:
		// the first packets of every flow are lost, and a path that filters
		// ICMP turns into a black hole. With DF cleared the kernel
		// fragments an oversized datagram itself (or a router on the path
		// does) and the peer's stack reassembles it, so the tunnel never
		// fails a send for size below 64 KiB. Inner senders that want to
		// avoid fragmentation are served by the engine from PathMTU.
		if fam == unix.AF_INET6 {
			serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_MTU_DISCOVER, unix.IPV6_PMTUDISC_DONT)
			if serr == nil && network == "udp" { // the IPv4 side of a dual-stack socket
				serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_MTU_DISCOVER, unix.IP_PMTUDISC_DONT)
			}
		} else {
			serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_MTU_DISCOVER, unix.IP_PMTUDISC_DONT)
		}
		if serr != nil {
			serr = os.NewSyscallError("setsockopt", serr)
		}
	})
	if err == nil {
		err = serr
	}
	if err != nil {
		return fail("listen", err)
	}
	t.local = conn.LocalAddr().(*net.UDPAddr).AddrPort()
	t.local = netip.AddrPortFrom(t.local.Addr().Unmap(), t.local.Port())
	t.r.init(t.rc)
	if t.gro != nil {
		t.r.m.ctrlLen = groCtrlLen
	}
	t.w.init(t.rc)
	t.gw.init(t.rc)
	t.g = newGSOBatch()
	t.gso.Store(gsoEnabled)
	return t, nil
}

// setSocketBuffers asks for size bytes of receive and send buffer, first
// with the *FORCE options that pass rmem_max/wmem_max (CAP_NET_ADMIN),
// then with the ordinary ones (capped by the sysctls). Best effort.
func setSocketBuffers(fd, size int) {
	if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, size) != nil {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, size)
	}
	if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, size) != nil {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, size)
	}
}

// LocalAddr is the address the socket is bound to (IPv4 unmapped).
func (t *UDPTransport) LocalAddr() netip.AddrPort { return t.local }

// Truncated is the number of datagrams dropped because they were larger
// than the buffer they would have been returned in.
func (t *UDPTransport) Truncated() uint64 { return t.truncated.Load() }

// Close closes the socket; blocked ReadBatch/WriteBatch calls return an
// error wrapping net.ErrClosed.
func (t *UDPTransport) Close() error {
	t.KernelDrops() // the kernel's counter dies with the socket
	return t.conn.Close()
}

func (t *UDPTransport) opError(op string, err error) error {
	var oe *net.OpError
	if errors.As(err, &oe) { // from the RawConn: keep only the cause
		err = oe.Err
	}
	return &net.OpError{Op: op, Net: "udp", Source: net.UDPAddrFromAddrPort(t.local), Err: err}
}

// ReadBatch implements Transport.
func (t *UDPTransport) ReadBatch(bufs [][]byte, sizes []int, from []netip.AddrPort) (int, error) {
	n := min(len(bufs), len(sizes), len(from))
	if n == 0 {
		return 0, nil
	}
	t.rmu.Lock()
	defer t.rmu.Unlock()
	if t.gro != nil {
		return t.readGRO(bufs[:n], sizes[:n], from[:n])
	}
	for {
		got, err := t.r.read(bufs[:n], true)
		if err != nil {
			return 0, t.opError("read", err)
		}
		out := 0
		for i := range got {
			h := &t.r.m.hdrs[i]
			size := int(h.Len)
			if h.Hdr.Flags&unix.MSG_TRUNC != 0 || !compact(bufs, i, out, size) {
				t.truncated.Add(1)
				continue
			}
			sizes[out] = size
			from[out] = addrPortFromRaw(&t.r.m.names[i])
			out++
		}
		if out > 0 {
			return out, nil
		}
	}
}

// WriteBatch implements Transport. A destination of the wrong family
// (IPv6 on an IPv4 socket or the reverse) stops the batch with an error.
func (t *UDPTransport) WriteBatch(bufs [][]byte, to []netip.AddrPort) (int, error) {
	if len(to) < len(bufs) {
		bufs = bufs[:len(to)]
	}
	if len(bufs) == 0 {
		return 0, nil
	}
	t.wmu.Lock()
	defer t.wmu.Unlock()
	if t.gso.Load() && len(bufs) > 1 {
		return t.writeGSO(bufs, to)
	}
	return t.writePlain(bufs, to)
}

// errBadDest is the error for a destination of the wrong family.
func errBadDest(to netip.AddrPort) error {
	return fmt.Errorf("destination %v: %w", to, unix.EAFNOSUPPORT)
}

// writePlain is WriteBatch without GSO, one message per datagram; the
// caller holds t.wmu.
func (t *UDPTransport) writePlain(bufs [][]byte, to []netip.AddrPort) (int, error) {
	total := 0
	for len(bufs) > 0 {
		chunk := min(len(bufs), maxBatch)
		m := t.w.prepare(bufs[:chunk])
		var bad error
		k := 0
		for ; k < chunk; k++ {
			if !putSockaddr(&m.names[k], &m.hdrs[k].Hdr, t.fam, t.mapped(to[k])) {
				bad = errBadDest(to[k])
				break
			}
		}
		sent, err := t.w.write(k)
		total += sent
		if err == nil {
			err = bad
		}
		if err != nil {
			return total, t.opError("write", err)
		}
		bufs, to = bufs[chunk:], to[chunk:]
	}
	return total, nil
}

// mapped returns ap as the socket addresses it: an IPv4 peer of a
// dual-stack socket as IPv4-mapped IPv6, anything else unchanged.
func (t *UDPTransport) mapped(ap netip.AddrPort) netip.AddrPort {
	if t.dual && ap.Addr().Is4() {
		return netip.AddrPortFrom(netip.AddrFrom16(ap.Addr().As16()), ap.Port())
	}
	return ap
}

// compact moves datagram i (size bytes, in bufs[i]) to bufs[out] after
// earlier datagrams of the batch were dropped. It reports false when the
// datagram does not fit bufs[out] (only possible with unequal buffers).
func compact(bufs [][]byte, i, out, size int) bool {
	if i == out {
		return true
	}
	if size > len(bufs[out]) {
		return false
	}
	copy(bufs[out], bufs[i][:size])
	return true
}

// maxBatch bounds one recvmmsg/sendmmsg call: the kernel caps vlen at
// UIO_MAXIOV (1024) anyway.
const maxBatch = 1024

// mmsgBufs holds the arrays handed to recvmmsg/sendmmsg. They are reused
// across calls, so a batch allocates only while they grow.
type mmsgBufs struct {
	hdrs  []unix.Mmsghdr
	iovs  []unix.Iovec
	names []unix.RawSockaddrInet6 // large enough for IPv4 and IPv6
	// ctrlLen, when set before the first prepare, gives each header a
	// control (ancillary data) buffer of that many bytes in ctrl.
	ctrlLen int
	ctrl    []byte
	// headLen, when set before the first prepare, scatters the first
	// headLen bytes of each received message into that message's own
	// slot of heads (a header to strip: the capture's virtio-net and
	// link-layer headers) and the rest into its buffer.
	headLen int
	heads   []byte
}

// head returns the head slot of message i (headLen bytes).
func (m *mmsgBufs) head(i int) []byte { return m.heads[i*m.headLen : (i+1)*m.headLen] }

// control returns the ancillary data the kernel wrote for message i.
func (m *mmsgBufs) control(i int) []byte {
	if m.ctrlLen == 0 {
		return nil
	}
	n := min(int(m.hdrs[i].Hdr.Controllen), m.ctrlLen)
	return m.ctrl[i*m.ctrlLen : i*m.ctrlLen+n]
}

// prepare points the first len(bufs) headers at bufs (one iovec each) and
// returns the number prepared (at most maxBatch). withNames gives each
// header room for a peer address.
func (m *mmsgBufs) prepare(bufs [][]byte, withNames bool) int {
	n := min(len(bufs), maxBatch)
	iovs := 1 // per message
	if m.headLen > 0 {
		iovs = 2
	}
	if len(m.hdrs) < n {
		m.hdrs = make([]unix.Mmsghdr, n)
		m.iovs = make([]unix.Iovec, n*iovs)
		m.names = make([]unix.RawSockaddrInet6, n)
		m.ctrl = make([]byte, n*m.ctrlLen)
		m.heads = make([]byte, n*m.headLen)
	}
	for i, b := range bufs[:n] {
		iov := &m.iovs[i*iovs]
		if m.headLen > 0 {
			iov.Base = &m.heads[i*m.headLen]
			iov.SetLen(m.headLen)
			m.iovs[i*iovs+1].Base = unsafe.SliceData(b)
			m.iovs[i*iovs+1].SetLen(len(b))
		} else {
			iov.Base = unsafe.SliceData(b)
			iov.SetLen(len(b))
		}
		h := &m.hdrs[i]
		h.Hdr = unix.Msghdr{Iov: iov}
		h.Hdr.SetIovlen(iovs)
		h.Len = 0
		if withNames {
			h.Hdr.Name = (*byte)(unsafe.Pointer(&m.names[i]))
			h.Hdr.Namelen = unix.SizeofSockaddrInet6
		}
		if m.ctrlLen > 0 {
			h.Hdr.Control = &m.ctrl[i*m.ctrlLen]
			h.Hdr.SetControllen(m.ctrlLen)
		}
	}
	return n
}

// batchReader receives a batch of datagrams with one recvmmsg(2) through
// the runtime poller. Its callback is created once, so a read allocates
// nothing; the per-call state lives in the struct (callers serialise).
type batchReader struct {
	rc   syscall.RawConn
	m    mmsgBufs
	vlen int
	n    int
	err  error
	fn   func(fd uintptr) bool
}

func (r *batchReader) init(rc syscall.RawConn) {
	r.rc = rc
	r.fn = r.recv
}

// read fills bufs (at most maxBatch of them) and returns how many headers
// of r.m the kernel filled, blocking until at least one.
func (r *batchReader) read(bufs [][]byte, withNames bool) (int, error) {
	r.vlen = r.m.prepare(bufs, withNames)
	r.n, r.err = 0, nil
	if err := r.rc.Read(r.fn); err != nil {
		return 0, err
	}
	return r.n, r.err
}

func (r *batchReader) recv(fd uintptr) bool {
	for {
		n, _, e := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&r.m.hdrs[0])),
			uintptr(r.vlen), unix.MSG_DONTWAIT, 0, 0)
		switch e {
		case 0:
			r.n = int(n)
			return true
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false // wait for readability
		default:
			r.err = os.NewSyscallError("recvmmsg", e)
			return true
		}
	}
}

// batchWriter sends a batch with sendmmsg(2) through the runtime poller,
// looping over partial sends and waiting while the socket buffer is full.
type batchWriter struct {
	rc   syscall.RawConn
	m    mmsgBufs
	vlen int
	sent int
	err  error
	fn   func(fd uintptr) bool
	// flags are sendmmsg's: MSG_DONTWAIT for a socket in the runtime
	// poller (init), 0 for a blocking one outside it (initBlocking).
	flags uintptr
}

func (w *batchWriter) init(rc syscall.RawConn) {
	w.rc = rc
	w.fn = w.send
	w.flags = unix.MSG_DONTWAIT
}

// initBlocking is init for a blocking socket that is not in the runtime
// poller: sendmmsg waits in the kernel while the send buffer is full.
func (w *batchWriter) initBlocking(rc syscall.RawConn) {
	w.init(rc)
	w.flags = 0
}

// prepare sets up the headers for bufs (at most maxBatch); the caller then
// fills the destination names and calls write.
func (w *batchWriter) prepare(bufs [][]byte) *mmsgBufs {
	w.vlen = w.m.prepare(bufs, false)
	return &w.m
}

// write sends the first min(k, prepared) messages and returns how many
// were sent before the first error.
func (w *batchWriter) write(k int) (int, error) {
	w.vlen = min(w.vlen, k)
	w.sent, w.err = 0, nil
	if w.vlen == 0 {
		return 0, nil
	}
	if err := w.rc.Write(w.fn); err != nil {
		return w.sent, err
	}
	return w.sent, w.err
}

func (w *batchWriter) send(fd uintptr) bool {
	for w.sent < w.vlen {
		n, _, e := unix.Syscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&w.m.hdrs[w.sent])),
			uintptr(w.vlen-w.sent), w.flags, 0, 0)
		switch e {
		case 0:
			if n == 0 {
				w.err = io.ErrShortWrite
				return true
			}
			w.sent += int(n)
		case unix.EINTR:
		case unix.EAGAIN:
			return false // wait for writability
		default:
			w.err = os.NewSyscallError("sendmmsg", e)
			return true
		}
	}
	return true
}

// putSockaddr writes ap as a sockaddr of family fam into raw and points h
// at it. It reports false if ap cannot be expressed in that family.
func putSockaddr(raw *unix.RawSockaddrInet6, h *unix.Msghdr, fam int, ap netip.AddrPort) bool {
	a := ap.Addr()
	switch {
	case fam == unix.AF_INET && (a.Is4() || a.Is4In6()):
		sa := (*unix.RawSockaddrInet4)(unsafe.Pointer(raw))
		*sa = unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: a.Unmap().As4()}
		putPort(&sa.Port, ap.Port())
		h.Namelen = unix.SizeofSockaddrInet4
	case fam == unix.AF_INET6 && a.Is6(): // IPv4-mapped only from mapped (dual-stack)
		*raw = unix.RawSockaddrInet6{Family: unix.AF_INET6, Addr: a.As16()}
		putPort(&raw.Port, ap.Port())
		h.Namelen = unix.SizeofSockaddrInet6
		// Zones (link-local peers) need an interface index: not yet.
	default:
		return false
	}
	h.Name = (*byte)(unsafe.Pointer(raw))
	return true
}

// putPort stores port in network byte order.
func putPort(dst *uint16, port uint16) {
	b := (*[2]byte)(unsafe.Pointer(dst))
	b[0], b[1] = byte(port>>8), byte(port)
}

// addrPortFromRaw decodes a sockaddr_in or sockaddr_in6 filled by the
// kernel; IPv4-mapped IPv6 addresses are unmapped.
func addrPortFromRaw(raw *unix.RawSockaddrInet6) netip.AddrPort {
	switch raw.Family {
	case unix.AF_INET:
		sa := (*unix.RawSockaddrInet4)(unsafe.Pointer(raw))
		p := (*[2]byte)(unsafe.Pointer(&sa.Port))
		return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(p[0])<<8|uint16(p[1]))
	case unix.AF_INET6:
		p := (*[2]byte)(unsafe.Pointer(&raw.Port))
		return netip.AddrPortFrom(netip.AddrFrom16(raw.Addr).Unmap(), uint16(p[0])<<8|uint16(p[1]))
	}
	return netip.AddrPort{}
}

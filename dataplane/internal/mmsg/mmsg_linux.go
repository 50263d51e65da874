// Package mmsg receives and sends batches of messages with recvmmsg(2)
// and sendmmsg(2) through the Go runtime poller, without allocating per
// call, and holds what the sockets that use it share: control messages,
// socket addresses, buffer sizes. The capture (dataplane/afpacket), the
// tunnel socket (dataplane/udp) and the injector (dataplane/rawip) build
// on it.
package mmsg

import (
	"io"
	"net/netip"
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// SocketBuffer is the receive and send buffer size the dataplane asks for
// its tunnel and capture sockets. The kernel default (rmem_default, ~208
// KiB) holds only ~140 full size datagrams, and the tutorial's program
// loses packets to it as soon as the reader falls behind a burst.
const SocketBuffer = 8 << 20

// SetSocketBuffers asks for size bytes of receive and send buffer, first
// with the *FORCE options that pass rmem_max/wmem_max (CAP_NET_ADMIN),
// then with the ordinary ones (capped by the sysctls). Best effort.
func SetSocketBuffers(fd, size int) {
	if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, size) != nil {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, size)
	}
	if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, size) != nil {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, size)
	}
}

// Compact moves datagram i (size bytes, in bufs[i]) to bufs[out] after
// earlier datagrams of the batch were dropped. It reports false when the
// datagram does not fit bufs[out] (only possible with unequal buffers).
func Compact(bufs [][]byte, i, out, size int) bool {
	if i == out {
		return true
	}
	if size > len(bufs[out]) {
		return false
	}
	copy(bufs[out], bufs[i][:size])
	return true
}

// MaxBatch bounds one recvmmsg/sendmmsg call: the kernel caps vlen at
// UIO_MAXIOV (1024) anyway.
const MaxBatch = 1024

// Msgs holds the arrays handed to recvmmsg/sendmmsg. They are reused
// across calls, so a batch allocates only while they grow.
type Msgs struct {
	Hdrs  []unix.Mmsghdr
	iovs  []unix.Iovec
	Names []unix.RawSockaddrInet6 // large enough for IPv4 and IPv6
	// CtrlLen, when set before the first batch, gives each header a
	// control (ancillary data) buffer of that many bytes in ctrl.
	CtrlLen int
	ctrl    []byte
	// HeadLen, when set before the first batch, scatters the first
	// HeadLen bytes of each received message into that message's own
	// slot of heads (a header to strip: the capture's virtio-net and
	// link-layer headers) and the rest into its buffer.
	HeadLen int
	heads   []byte
}

// Head returns the head slot of message i (HeadLen bytes).
func (m *Msgs) Head(i int) []byte { return m.heads[i*m.HeadLen : (i+1)*m.HeadLen] }

// Control returns the ancillary data the kernel wrote for message i.
func (m *Msgs) Control(i int) []byte {
	if m.CtrlLen == 0 {
		return nil
	}
	n := min(int(m.Hdrs[i].Hdr.Controllen), m.CtrlLen)
	return m.ctrl[i*m.CtrlLen : i*m.CtrlLen+n]
}

// prepare points the first len(bufs) headers at bufs (one iovec each) and
// returns the number prepared (at most MaxBatch). withNames gives each
// header room for a peer address.
func (m *Msgs) prepare(bufs [][]byte, withNames bool) int {
	n := min(len(bufs), MaxBatch)
	iovs := 1 // per message
	if m.HeadLen > 0 {
		iovs = 2
	}
	if len(m.Hdrs) < n {
		m.Hdrs = make([]unix.Mmsghdr, n)
		m.iovs = make([]unix.Iovec, n*iovs)
		m.Names = make([]unix.RawSockaddrInet6, n)
		m.ctrl = make([]byte, n*m.CtrlLen)
		m.heads = make([]byte, n*m.HeadLen)
	}
	for i, b := range bufs[:n] {
		iov := &m.iovs[i*iovs]
		if m.HeadLen > 0 {
			iov.Base = &m.heads[i*m.HeadLen]
			iov.SetLen(m.HeadLen)
			m.iovs[i*iovs+1].Base = unsafe.SliceData(b)
			m.iovs[i*iovs+1].SetLen(len(b))
		} else {
			iov.Base = unsafe.SliceData(b)
			iov.SetLen(len(b))
		}
		h := &m.Hdrs[i]
		h.Hdr = unix.Msghdr{Iov: iov}
		h.Hdr.SetIovlen(iovs)
		h.Len = 0
		if withNames {
			h.Hdr.Name = (*byte)(unsafe.Pointer(&m.Names[i]))
			h.Hdr.Namelen = unix.SizeofSockaddrInet6
		}
		if m.CtrlLen > 0 {
			h.Hdr.Control = &m.ctrl[i*m.CtrlLen]
			h.Hdr.SetControllen(m.CtrlLen)
		}
	}
	return n
}

// Reader receives a batch of datagrams with one recvmmsg(2) through
// the runtime poller. Its callback is created once, so a read allocates
// nothing; the per-call state lives in the struct (callers serialise).
type Reader struct {
	rc   syscall.RawConn
	Msgs Msgs
	vlen int
	n    int
	err  error
	fn   func(fd uintptr) bool
}

// Init binds r to the socket rc; Msgs.CtrlLen and Msgs.HeadLen are set
// before the first Read.
func (r *Reader) Init(rc syscall.RawConn) {
	r.rc = rc
	r.fn = r.recv
}

// Read fills bufs (at most MaxBatch of them) and returns how many headers
// of r.Msgs the kernel filled, blocking until at least one.
func (r *Reader) Read(bufs [][]byte, withNames bool) (int, error) {
	r.vlen = r.Msgs.prepare(bufs, withNames)
	r.n, r.err = 0, nil
	if err := r.rc.Read(r.fn); err != nil {
		return 0, err
	}
	return r.n, r.err
}

func (r *Reader) recv(fd uintptr) bool {
	for {
		n, _, e := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&r.Msgs.Hdrs[0])),
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

// Writer sends a batch with sendmmsg(2) through the runtime poller,
// looping over partial sends and waiting while the socket buffer is full.
type Writer struct {
	rc   syscall.RawConn
	Msgs Msgs
	vlen int
	sent int
	err  error
	fn   func(fd uintptr) bool
	// flags are sendmmsg's: MSG_DONTWAIT for a socket in the runtime
	// poller (Init), 0 for a blocking one outside it (InitBlocking).
	flags uintptr
}

// Init binds w to rc, a non-blocking socket in the runtime poller.
func (w *Writer) Init(rc syscall.RawConn) {
	w.rc = rc
	w.fn = w.send
	w.flags = unix.MSG_DONTWAIT
}

// InitBlocking is Init for a blocking socket that is not in the runtime
// poller: sendmmsg waits in the kernel while the send buffer is full.
func (w *Writer) InitBlocking(rc syscall.RawConn) {
	w.Init(rc)
	w.flags = 0
}

// Prepare sets up the headers for bufs (at most MaxBatch); the caller then
// fills the destination names and calls Write.
func (w *Writer) Prepare(bufs [][]byte) *Msgs {
	w.vlen = w.Msgs.prepare(bufs, false)
	return &w.Msgs
}

// WriteMsgs sends hdrs, messages the caller prepared itself (UDP GSO
// runs, say), and returns how many were sent before the first error.
func (w *Writer) WriteMsgs(hdrs []unix.Mmsghdr) (int, error) {
	w.Msgs.Hdrs, w.vlen = hdrs, len(hdrs)
	return w.Write(len(hdrs))
}

// Write sends the first min(k, prepared) messages and returns how many
// were sent before the first error.
func (w *Writer) Write(k int) (int, error) {
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

func (w *Writer) send(fd uintptr) bool {
	for w.sent < w.vlen {
		n, _, e := unix.Syscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&w.Msgs.Hdrs[w.sent])),
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

// PutSockaddr writes ap as a sockaddr of family fam into raw and points h
// at it. It reports false if ap cannot be expressed in that family.
func PutSockaddr(raw *unix.RawSockaddrInet6, h *unix.Msghdr, fam int, ap netip.AddrPort) bool {
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

// AddrPortFromRaw decodes a sockaddr_in or sockaddr_in6 filled by the
// kernel; IPv4-mapped IPv6 addresses are unmapped.
func AddrPortFromRaw(raw *unix.RawSockaddrInet6) netip.AddrPort {
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

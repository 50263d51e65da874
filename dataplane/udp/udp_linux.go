package udp

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"

	"tunnel-agent/dataplane/internal/mmsg"
)

// Transport is the production dataplane.Transport: one UDP socket, read
// and written in batches with recvmmsg(2)/sendmmsg(2) through the Go
// runtime poller, without allocating per datagram.
//
// ReadBatch and WriteBatch may run concurrently with each other (one
// reader, one writer); concurrent calls of the same method are serialised.
type Transport struct {
	conn  *net.UDPConn
	rc    syscall.RawConn
	local netip.AddrPort
	fam   int // unix.AF_INET or unix.AF_INET6: the socket's family
	// dual: an AF_INET6 socket bound to [::] that also carries IPv4
	// (IPV6_V6ONLY off); IPv4 peers are addressed as IPv4-mapped.
	dual bool

	rmu sync.Mutex
	r   mmsg.Reader
	gro *groReader // UDP_GRO receives (gro_linux.go); nil when off

	wmu sync.Mutex
	w   mmsg.Writer
	// GSO sends (gso_linux.go): on until the kernel refuses them.
	gso atomic.Bool
	g   *gsoBatch
	gw  mmsg.Writer

	truncated atomic.Uint64
	kd        kernelDrops // drops_linux.go
}

// Listen opens the tunnel socket bound to addr (port 0 picks a free
// port) in the calling thread's network namespace, with the offloads opt
// allows.
func Listen(addr netip.AddrPort, opt Options) (*Transport, error) {
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
	t := &Transport{conn: conn, fam: fam, dual: network == "udp"}
	fail := func(op string, err error) (*Transport, error) {
		conn.Close()
		return nil, &net.OpError{Op: op, Net: network, Source: conn.LocalAddr(), Err: err}
	}
	if t.rc, err = conn.SyscallConn(); err != nil {
		return fail("listen", err)
	}
	var serr error
	err = t.rc.Control(func(fd uintptr) {
		mmsg.SetSocketBuffers(int(fd), mmsg.SocketBuffer)
		if !opt.DisableGRO && enableGRO(int(fd)) {
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
	t.r.Init(t.rc)
	if t.gro != nil {
		t.r.Msgs.CtrlLen = groCtrlLen
	}
	t.w.Init(t.rc)
	t.gw.Init(t.rc)
	t.g = newGSOBatch()
	t.gso.Store(!opt.DisableGSO)
	return t, nil
}

// LocalAddr is the address the socket is bound to (IPv4 unmapped).
func (t *Transport) LocalAddr() netip.AddrPort { return t.local }

// Truncated is the number of datagrams dropped because they were larger
// than the buffer they would have been returned in.
func (t *Transport) Truncated() uint64 { return t.truncated.Load() }

// Close closes the socket; blocked ReadBatch/WriteBatch calls return an
// error wrapping net.ErrClosed.
func (t *Transport) Close() error {
	t.KernelDrops() // the kernel's counter dies with the socket
	return t.conn.Close()
}

func (t *Transport) opError(op string, err error) error {
	var oe *net.OpError
	if errors.As(err, &oe) { // from the RawConn: keep only the cause
		err = oe.Err
	}
	return &net.OpError{Op: op, Net: "udp", Source: net.UDPAddrFromAddrPort(t.local), Err: err}
}

// ReadBatch implements Transport.
func (t *Transport) ReadBatch(bufs [][]byte, sizes []int, from []netip.AddrPort) (int, error) {
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
		got, err := t.r.Read(bufs[:n], true)
		if err != nil {
			return 0, t.opError("read", err)
		}
		out := 0
		for i := range got {
			h := &t.r.Msgs.Hdrs[i]
			size := int(h.Len)
			if h.Hdr.Flags&unix.MSG_TRUNC != 0 || !mmsg.Compact(bufs, i, out, size) {
				t.truncated.Add(1)
				continue
			}
			sizes[out] = size
			from[out] = mmsg.AddrPortFromRaw(&t.r.Msgs.Names[i])
			out++
		}
		if out > 0 {
			return out, nil
		}
	}
}

// WriteBatch implements Transport. A destination of the wrong family
// (IPv6 on an IPv4 socket or the reverse) stops the batch with an error.
func (t *Transport) WriteBatch(bufs [][]byte, to []netip.AddrPort) (int, error) {
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
func (t *Transport) writePlain(bufs [][]byte, to []netip.AddrPort) (int, error) {
	total := 0
	for len(bufs) > 0 {
		chunk := min(len(bufs), mmsg.MaxBatch)
		m := t.w.Prepare(bufs[:chunk])
		var bad error
		k := 0
		for ; k < chunk; k++ {
			if !mmsg.PutSockaddr(&m.Names[k], &m.Hdrs[k].Hdr, t.fam, t.mapped(to[k])) {
				bad = errBadDest(to[k])
				break
			}
		}
		sent, err := t.w.Write(k)
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
func (t *Transport) mapped(ap netip.AddrPort) netip.AddrPort {
	if t.dual && ap.Addr().Is4() {
		return netip.AddrPortFrom(netip.AddrFrom16(ap.Addr().As16()), ap.Port())
	}
	return ap
}

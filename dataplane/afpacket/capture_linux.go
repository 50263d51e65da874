package afpacket

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"

	"tunnel-agent/dataplane"
	"tunnel-agent/dataplane/internal/mmsg"
)

// BufferSize is a buffer size that holds any frame a capture can
// deliver: the largest IPv4 packet (65535 bytes) plus headroom. Buffers
// passed to Capture.ReadBatch should be at least this large;
// smaller ones work, but frames that do not fit are dropped (Truncated).
const BufferSize = 65535 + 1024

// Capture is the production dataplane.Capture: an AF_PACKET socket bound
// to one interface, SOCK_RAW with PACKET_VNET_HDR on Ethernet-like and
// header-less interfaces, SOCK_DGRAM on others (see captureLink). Either
// way the IP packet is delivered straight into the caller's buffer, the
// link-layer and virtio-net headers stripped, with no copy.
//
// Only inbound packets are seen: PACKET_IGNORE_OUTGOING keeps the kernel
// from even cloning outgoing frames to the socket, and the filter also
// requires pkttype == PACKET_HOST (which additionally rejects broadcast,
// multicast and frames for other hosts in promiscuous mode).
//
// Packets from a LAN host with tx checksum offload on arrive with a
// partial TCP/UDP checksum; PACKET_AUXDATA marks them and ReadBatch
// completes the checksum (completeChecksum, IPv4 and IPv6) before returning
// them. TCP super-packets (TSO/GRO) and UDP GSO super-datagrams are cut
// into the segments the sender meant (gsoSplitter), so one frame may fill
// several entries of a batch.
//
// With Options.Ring the frames are read from a TPACKET_V3 ring
// mapped into the process instead (ring_linux.go); filter, checksum
// completion, super-packet cutting and counters are the same.
//
// ReadBatch calls are serialised; Close may be called concurrently and
// unblocks a blocked ReadBatch.
type Capture struct {
	f      *os.File
	rc     syscall.RawConn
	ifname string

	mu sync.Mutex // serialises ReadBatch (r holds per-call state)
	r  mmsg.Reader
	g  *gsoSplitter // TCP super-packets cut to the MTU (split.go)
	rx *rxRing      // the receive ring, nil on the socket path (ring_linux.go)

	link captureLink // socket type and headers to strip (link_linux.go)

	truncated  atomic.Uint64
	unreadable atomic.Uint64
	closed     atomic.Bool
	ks         kernelStats // stats_linux.go
}

var _ dataplane.Capture = (*Capture)(nil)

// captureAddr names the interface in a net.OpError.
type captureAddr string

func (a captureAddr) Network() string { return "packet" }
func (a captureAddr) String() string  { return string(a) }

// Open opens a capture on the interface ifname (in the calling thread's
// network namespace) for IPv4 and IPv6 packets arriving for this host
// whose destination lies in one of prefixes, receiving as opt says (the
// zero Options: the socket path). An empty prefix list captures nothing.
func Open(ifname string, prefixes []netip.Prefix, opt Options) (*Capture, error) {
	opErr := func(err error) error {
		return &net.OpError{Op: "listen", Net: "packet", Addr: captureAddr(ifname), Err: err}
	}
	opt, err := opt.withDefaults()
	if err != nil {
		return nil, opErr(err)
	}
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		return nil, opErr(err)
	}
	link, err := linkOf(ifname)
	if err != nil {
		return nil, opErr(err)
	}
	filter, err := captureFilter(prefixes, link.linkLen)
	if err != nil {
		return nil, opErr(err)
	}

	// Protocol 0: the socket receives nothing until bind names a protocol,
	// so no frame can be queued before the filter is in place.
	fd, err := unix.Socket(unix.AF_PACKET, link.sockType|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, opErr(os.NewSyscallError("socket", err))
	}
	link.enableVnet(fd) // before the ring: the kernel refuses it after
	rx, err := setupCaptureSocket(fd, ifi.Index, filter, opt)
	if err != nil {
		unix.Close(fd)
		return nil, opErr(err)
	}

	// fd is non-blocking, so os.NewFile registers it with the runtime
	// poller: reads park the goroutine, and Close wakes them.
	f := os.NewFile(uintptr(fd), "packet:"+ifname)
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		rx.unmap()
		return nil, opErr(err)
	}
	c := &Capture{f: f, rc: rc, ifname: ifname, g: newGSOSplitter(ifi.MTU), rx: rx, link: link}
	c.r.Init(rc)
	c.r.Msgs.CtrlLen = auxControlLen
	c.r.Msgs.HeadLen = link.headLen()
	if rx != nil {
		rx.init(rc, c)
	}
	return c, nil
}

// setupCaptureSocket attaches the filter, maps the ring if opt asks for
// one, and only then binds fd to the interface.
func setupCaptureSocket(fd, ifindex int, filter []bpf.RawInstruction, opt Options) (*rxRing, error) {
	if err := filterCaptureSocket(fd, filter); err != nil {
		return nil, err
	}
	var rx *rxRing
	if opt.Ring {
		var err error
		if rx, err = setupRing(fd, opt); err != nil {
			return nil, err
		}
	}
	if err := bindCaptureSocket(fd, ifindex); err != nil {
		rx.unmap()
		return nil, err
	}
	return rx, nil
}

func filterCaptureSocket(fd int, filter []bpf.RawInstruction) error {
	// Inbound only. Kernels before 4.20 lack the option; the filter's
	// pkttype check still drops outgoing frames there.
	if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_IGNORE_OUTGOING, 1); err != nil &&
		!errors.Is(err, unix.ENOPROTOOPT) && !errors.Is(err, unix.EINVAL) {
		return os.NewSyscallError("setsockopt PACKET_IGNORE_OUTGOING", err)
	}
	prog := unix.SockFprog{
		Len:    uint16(len(filter)),
		Filter: (*unix.SockFilter)(unsafe.Pointer(unsafe.SliceData(filter))),
	}
	if err := unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &prog); err != nil {
		return os.NewSyscallError("setsockopt SO_ATTACH_FILTER", err)
	}
	mmsg.SetSocketBuffers(fd, mmsg.SocketBuffer)
	// Per-packet status (TP_STATUS_CSUMNOTREADY), see completeChecksum.
	if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_AUXDATA, 1); err != nil {
		return os.NewSyscallError("setsockopt PACKET_AUXDATA", err)
	}
	return nil
}

func bindCaptureSocket(fd, ifindex int) error {
	// Bind to every protocol on this interface: one socket sees IPv4 and
	// IPv6, and the filter keeps only those two EtherTypes (ancillary
	// protocol load) before it looks at the version nibble.
	sa := &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifindex}
	if err := unix.Bind(fd, sa); err != nil {
		return os.NewSyscallError("bind", err)
	}

	// Belt and braces: with protocol 0 and the filter attached before bind
	// nothing unfiltered can have been queued, but drop whatever is there
	// so that the first read only returns frames that arrived after open.
	// (PACKET_VNET_HDR refuses a read shorter than its header.)
	var scratch [2 * vnetHdrLen]byte
	for range 1 << 16 { // bounded even under a flood
		_, _, e := unix.Syscall6(unix.SYS_RECVFROM, uintptr(fd), uintptr(unsafe.Pointer(&scratch[0])), uintptr(len(scratch)),
			unix.MSG_DONTWAIT|unix.MSG_TRUNC, 0, 0)
		if e != 0 {
			break
		}
	}
	return nil
}

// auxControlLen is the room for one PACKET_AUXDATA control message.
var auxControlLen = unix.CmsgSpace(int(unsafe.Sizeof(unix.TpacketAuxdata{})))

// auxData returns the PACKET_AUXDATA message (a struct tpacket_auxdata) in
// the ancillary data ctrl, or nil if there is none.
func auxData(ctrl []byte) []byte {
	return mmsg.CmsgData(ctrl, unix.SOL_PACKET, unix.PACKET_AUXDATA)
}

// htons converts a 16-bit value to network byte order, as sll_protocol
// expects.
func htons(v uint16) uint16 { return v<<8 | v>>8 }

// ReadBatch implements Capture. Packets are received directly into bufs;
// one larger than its buffer is dropped and counted by Truncated. It
// never returns bytes beyond what the kernel delivered.
func (c *Capture) ReadBatch(bufs [][]byte, sizes []int) (int, error) {
	n := min(len(bufs), len(sizes))
	if n == 0 {
		return 0, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if k := c.g.drain(bufs[:n], sizes); k > 0 {
		return k, nil
	}
	if c.rx != nil {
		return c.readRing(bufs[:n], sizes)
	}
	for {
		got, err := c.r.Read(bufs[:c.g.readLimit(n)], false)
		if err != nil {
			if c.vnetRefused(err) {
				continue
			}
			return 0, c.readError(err)
		}
		meta := c.g.metaFor(got)
		out := 0
		for i := range got {
			h := &c.r.Msgs.Hdrs[i]
			size, m, ok := c.link.message(c.r.Msgs.Head(i), auxData(c.r.Msgs.Control(i)), int(h.Len))
			if !ok {
				c.unreadable.Add(1)
				continue
			}
			if h.Hdr.Flags&unix.MSG_TRUNC != 0 || size > len(bufs[i]) || !mmsg.Compact(bufs, i, out, size) {
				c.truncated.Add(1)
				continue
			}
			sizes[out], meta[out] = size, m
			out++
		}
		if out > 0 {
			return c.g.expand(bufs[:n], sizes, out), nil
		}
	}
}

// readError is ReadBatch's error for a failed read: net.ErrClosed after
// Close, and a read that failed because the interface went down (or away)
// wraps dataplane.ErrInterfaceDown, after which the engine keeps reading
// (the socket stays usable, or is replaced on a re-created interface).
func (c *Capture) readError(err error) error {
	if c.closed.Load() {
		err = net.ErrClosed
	} else if errors.Is(err, os.ErrDeadlineExceeded) {
		// Wake's: cleared before returning, so that a Wake after this
		// point wakes the next read. One that came meanwhile is merged
		// with this one (the caller looks at its queue after).
		_ = c.f.SetReadDeadline(time.Time{})
		return nil
	} else if errors.Is(err, unix.ENETDOWN) {
		err = interfaceDown{err}
	}
	return &net.OpError{Op: "read", Net: "packet", Addr: captureAddr(c.ifname), Err: err}
}

// interfaceDown is ENETDOWN, which an AF_PACKET socket reports once when
// its interface goes down: errors.Is finds both the errno and
// dataplane.ErrInterfaceDown in it.
type interfaceDown struct{ error }

func (e interfaceDown) Is(target error) bool { return target == dataplane.ErrInterfaceDown }
func (e interfaceDown) Unwrap() error        { return e.error }

// Wake makes a blocked ReadBatch, or else the next one, return (0, nil)
// (dataplane.WakeableCapture): it sets the socket's
// read deadline in the past, which the runtime poller acts on at once.
func (c *Capture) Wake() { _ = c.f.SetReadDeadline(time.Unix(1, 0)) }

// Truncated is the number of frames dropped because they were larger than
// the buffer they would have been returned in.
func (c *Capture) Truncated() uint64 { return c.truncated.Load() }

// Unreadable is the number of frames dropped because the capture could not
// take them apart: the kernel could not describe a super-packet in a
// virtio-net header (a GSO type it has no virtio-net name for, SCTP say,
// or UDP GSO before Linux 6.2: the read fails with EINVAL and the frame is
// gone), or the link-layer header was not the expected length. On the ring
// the kernel counts the former as a drop (KernelStats) instead.
func (c *Capture) Unreadable() uint64 { return c.unreadable.Load() }

// vnetRefused reports whether a failed read lost one frame the kernel
// could not put a virtio-net header on (EINVAL, from packet_rcv_vnet), and
// counts it: the read is then simply repeated.
func (c *Capture) vnetRefused(err error) bool {
	if c.link.vnetLen == 0 || !errors.Is(err, unix.EINVAL) || c.closed.Load() {
		return false
	}
	c.unreadable.Add(1)
	return true
}

// Close closes the socket; a blocked ReadBatch returns an error wrapping
// net.ErrClosed.
func (c *Capture) Close() error {
	if c.closed.Swap(true) {
		return &net.OpError{Op: "close", Net: "packet", Addr: captureAddr(c.ifname), Err: net.ErrClosed}
	}
	c.KernelStats()    // the kernel's counters die with the socket
	err := c.f.Close() // wakes a ReadBatch waiting in the poller
	c.mu.Lock()        // and waits for it to leave before the ring goes
	c.rx.unmap()
	c.mu.Unlock()
	if err != nil {
		return &net.OpError{Op: "close", Net: "packet", Addr: captureAddr(c.ifname), Err: err}
	}
	return nil
}

// String names the capture for logs.
func (c *Capture) String() string { return fmt.Sprintf("capture(%s)", c.ifname) }

// GSODropped is the number of packets dropped because the segments of a
// TCP super-packet before them filled the batch (see gsoSplitter).
func (c *Capture) GSODropped() uint64 { return c.g.dropped.Load() }

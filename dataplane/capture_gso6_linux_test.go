package dataplane

import (
	"bytes"
	"context"
	"encoding/binary"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"tunnel-agent/dataplane/dptest"
	"tunnel-agent/internal/nstest"
)

// The IPv6 side of vethTopo (addIPv6): A fd00:18::1/64, B fd00:18::2/64,
// fd00:19::/48 blackholed in A and routed via A in B.
var (
	topoAddrA6  = netip.MustParseAddr("fd00:18::1")
	topoAddrB6  = netip.MustParseAddr("fd00:18::2")
	topoRemote6 = netip.MustParsePrefix("fd00:19::/48")
)

// addIPv6 gives the veth topology its IPv6 addresses (without duplicate
// address detection, so they are usable at once) and routes.
func addIPv6(t testing.TB, topo *vethTopo) {
	t.Helper()
	for _, side := range []struct {
		ns     *nstest.NS
		ifname string
		addr   netip.Addr
	}{{topo.A, topo.IfA, topoAddrA6}, {topo.B, topo.IfB, topoAddrB6}} {
		link, err := side.ns.NL.LinkByName(side.ifname)
		if err != nil {
			t.Fatal(err)
		}
		a := &netlink.Addr{IPNet: &net.IPNet{IP: side.addr.AsSlice(), Mask: net.CIDRMask(64, 128)}, Flags: unix.IFA_F_NODAD}
		if err := side.ns.NL.AddrAdd(link, a); err != nil {
			t.Fatalf("IPv6 address on %s: %v", side.ifname, err)
		}
	}
	remote := &net.IPNet{IP: topoRemote6.Addr().AsSlice(), Mask: net.CIDRMask(topoRemote6.Bits(), 128)}
	if err := topo.A.NL.RouteAdd(&netlink.Route{Dst: remote, Type: unix.RTN_BLACKHOLE}); err != nil {
		t.Fatalf("IPv6 blackhole in A: %v", err)
	}
	linkB, err := topo.B.NL.LinkByName(topo.IfB)
	if err != nil {
		t.Fatal(err)
	}
	if err := topo.B.NL.RouteAdd(&netlink.Route{Dst: remote, Gw: topoAddrA6.AsSlice(), LinkIndex: linkB.Attrs().Index}); err != nil {
		t.Fatalf("IPv6 route in B: %v", err)
	}
}

// udp6In opens a UDP socket of either family bound to addr in ns.
func udp6In(t testing.TB, ns *nstest.NS, addr netip.AddrPort) *net.UDPConn {
	t.Helper()
	var conn *net.UDPConn
	if err := ns.Do(func() (err error) {
		conn, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(addr))
		return err
	}); err != nil {
		t.Fatalf("UDP socket in %s: %v", ns.Name, err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// validTransport checks the TCP or UDP checksum of a captured IPv4 or IPv6
// packet without extension headers or options.
func validTransport(pkt []byte) bool {
	if pkt[0]>>4 == 6 {
		return dptest.ValidL4(netip.AddrFrom16([16]byte(pkt[8:24])), netip.AddrFrom16([16]byte(pkt[24:40])), pkt[6], pkt[40:])
	}
	return dptest.ValidL4(netip.AddrFrom4([4]byte(pkt[12:16])), netip.AddrFrom4([4]byte(pkt[16:20])), pkt[9], pkt[20:])
}

// TestCaptureCompletesPartialChecksum6: with the veths' checksum offloads
// at their defaults, B's IPv6 UDP datagrams and TCP SYN reach the capture
// with only the pseudo-header sum in their checksum; they must come out
// complete (the SYN of issue 12's hanging IPv6 connection).
func TestCaptureCompletesPartialChecksum6(t *testing.T) {
	forCaptureModes(t, testCaptureCompletesPartialChecksum6)
}

func testCaptureCompletesPartialChecksum6(t *testing.T, opt CaptureOptions) {
	nstest.RequireRoot(t)
	topo := newVethTopo(t, 1500)
	addIPv6(t, topo)
	c := openCaptureWithIn(t, topo.A, topo.IfA, opt, topoRemote6.String())
	conn := udp6In(t, topo.B, netip.AddrPortFrom(topoAddrB6, 0))
	bufs, sizes := makeBufs(4, CaptureBufferSize)
	for _, payload := range []string{"partial checksum over IPv6", "odd"} {
		sendTo(t, conn, "[fd00:19::9]:7", []byte(payload))
		n := readCapture(t, c, bufs, sizes, 5*time.Second)
		pkt := bufs[0][:sizes[0]]
		if n != 1 || pkt[0]>>4 != 6 || pkt[6] != unix.IPPROTO_UDP || string(pkt[48:]) != payload {
			t.Fatalf("captured %d packets, first % x", n, pkt[:min(len(pkt), 48)])
		}
		if !validTransport(pkt) {
			t.Errorf("%q: UDP checksum %#04x does not verify", payload, binary.BigEndian.Uint16(pkt[46:]))
		}
	}
	// A TCP SYN to the tunnelled range (nobody answers: the dial is
	// cancelled once the SYN is captured, and waited for).
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	dialed := make(chan struct{})
	go topo.B.Do(func() error {
		defer close(dialed)
		c, err := (&net.Dialer{}).DialContext(ctx, "tcp6", "[fd00:19::9]:80")
		if err == nil {
			c.Close()
		}
		return nil
	})
	t.Cleanup(func() { cancel(); <-dialed })
	n := readCapture(t, c, bufs, sizes, 5*time.Second)
	pkt := bufs[0][:sizes[0]]
	if n < 1 || pkt[6] != unix.IPPROTO_TCP || pkt[40+13]&dptest.TCPSyn == 0 {
		t.Fatalf("captured % x, want a TCP SYN", pkt[:min(len(pkt), 60)])
	}
	if !validTransport(pkt) {
		t.Errorf("TCP SYN checksum %#04x does not verify", binary.BigEndian.Uint16(pkt[56:]))
	}
}

// TestCaptureSplitsUDPGSO: a UDP_SEGMENT send of 3500 bytes in 1000-byte
// datagrams crosses the veth as one super-datagram; the capture returns
// the four datagrams the sender meant, each with a valid checksum, over
// IPv4 and IPv6.
func TestCaptureSplitsUDPGSO(t *testing.T) { forCaptureModes(t, testCaptureSplitsUDPGSO) }

func testCaptureSplitsUDPGSO(t *testing.T, opt CaptureOptions) {
	nstest.RequireRoot(t)
	topo := newVethTopo(t, 1500)
	addIPv6(t, topo)
	c := openCaptureWithIn(t, topo.A, topo.IfA, opt, topoRemote.String(), topoRemote6.String())
	payload := pattern(3500)
	for _, dst := range []string{"198.19.0.9:7", "[fd00:19::9]:7"} {
		src := topo.AddrB
		if netip.MustParseAddrPort(dst).Addr().Is6() {
			src = topoAddrB6
		}
		conn := udp6In(t, topo.B, netip.AddrPortFrom(src, 0))
		rc, err := conn.SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		var serr error
		rc.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_UDP, unix.UDP_SEGMENT, 1000) })
		if serr != nil {
			t.Skipf("UDP_SEGMENT: %v", serr)
		}
		sendTo(t, conn, dst, payload)
		bufs, sizes := makeBufs(8, CaptureBufferSize)
		var got []byte
		var count int
		for deadline := time.Now().Add(5 * time.Second); len(got) < len(payload) && time.Now().Before(deadline); {
			n := readCapture(t, c, bufs, sizes, time.Until(deadline))
			for i := range n {
				pkt := bufs[i][:sizes[i]]
				l4 := 20
				if pkt[0]>>4 == 6 {
					l4 = 40
				}
				if len(pkt)-l4-8 > 1000 || !validTransport(pkt) || int(binary.BigEndian.Uint16(pkt[l4+4:])) != len(pkt)-l4 {
					t.Fatalf("%s: captured a %d-byte datagram with a bad length or checksum", dst, len(pkt))
				}
				got = append(got, pkt[l4+8:]...)
				count++
			}
		}
		if count != 4 || !bytes.Equal(got, payload) {
			t.Errorf("%s: %d datagrams carrying %d bytes; want 4 carrying the 3500 sent", dst, count, len(got))
		}
	}
	if c.Unreadable() != 0 {
		t.Errorf("unreadable %d", c.Unreadable())
	}
}

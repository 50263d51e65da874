package afpacket

import (
	"bytes"
	"context"
	"encoding/binary"
	"net"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"tunnel-agent/dataplane/dptest"
	"tunnel-agent/dataplane/internal/vethtest"
	"tunnel-agent/internal/nstest"
)

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

func testCaptureCompletesPartialChecksum6(t *testing.T, opt Options) {
	nstest.RequireRoot(t)
	topo := vethtest.New(t, 1500)
	topo.AddIPv6(t)
	c := openCaptureWithIn(t, topo.A, topo.IfA, opt, vethtest.Remote6.String())
	conn := vethtest.UDPIn(t, topo.B, netip.AddrPortFrom(vethtest.AddrB6, 0))
	bufs, sizes := vethtest.Bufs(4, BufferSize)
	for _, payload := range []string{"partial checksum over IPv6", "odd"} {
		vethtest.SendTo(t, conn, "[fd00:19::9]:7", []byte(payload))
		n := vethtest.Read(t, c, bufs, sizes, 5*time.Second)
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
	n := vethtest.Read(t, c, bufs, sizes, 5*time.Second)
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

func testCaptureSplitsUDPGSO(t *testing.T, opt Options) {
	nstest.RequireRoot(t)
	topo := vethtest.New(t, 1500)
	topo.AddIPv6(t)
	c := openCaptureWithIn(t, topo.A, topo.IfA, opt, vethtest.Remote.String(), vethtest.Remote6.String())
	payload := dptest.Pattern(3500)
	for _, dst := range []string{"198.19.0.9:7", "[fd00:19::9]:7"} {
		src := topo.AddrB
		if netip.MustParseAddrPort(dst).Addr().Is6() {
			src = vethtest.AddrB6
		}
		conn := vethtest.UDPIn(t, topo.B, netip.AddrPortFrom(src, 0))
		rc, err := conn.SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		var serr error
		rc.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_UDP, unix.UDP_SEGMENT, 1000) })
		if serr != nil {
			t.Skipf("UDP_SEGMENT: %v", serr)
		}
		vethtest.SendTo(t, conn, dst, payload)
		bufs, sizes := vethtest.Bufs(8, BufferSize)
		var got []byte
		var count int
		for deadline := time.Now().Add(5 * time.Second); len(got) < len(payload) && time.Now().Before(deadline); {
			n := vethtest.Read(t, c, bufs, sizes, time.Until(deadline))
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

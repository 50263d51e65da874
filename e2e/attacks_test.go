package e2e

import (
	"encoding/binary"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"tunnel-agent/internal/nsutil"
)

// ipv4UDP builds an IPv4/UDP packet with a valid header checksum (the UDP
// checksum is left 0, which IPv4 allows).
func ipv4UDP(src, dst netip.AddrPort, payload []byte) []byte {
	b := make([]byte, 28+len(payload))
	b[0], b[8], b[9] = 0x45, 64, unix.IPPROTO_UDP
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
	copy(b[12:16], src.Addr().AsSlice())
	copy(b[16:20], dst.Addr().AsSlice())
	binary.BigEndian.PutUint16(b[10:], ^checksum(b[:20]))
	binary.BigEndian.PutUint16(b[20:], src.Port())
	binary.BigEndian.PutUint16(b[22:], dst.Port())
	binary.BigEndian.PutUint16(b[24:], uint16(8+len(payload)))
	copy(b[28:], payload)
	return b
}

func checksum(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return uint16(s)
}

// sendRaw sends a hand-built IPv4 packet from inside ns (any source).
func sendRaw(t *testing.T, ns netns.NsHandle, pkt []byte) {
	t.Helper()
	err := nsutil.Do(ns, func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_RAW)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		return unix.Sendto(fd, pkt, 0, &unix.SockaddrInet4{Addr: [4]byte(pkt[16:20])})
	})
	if err != nil {
		t.Fatalf("send raw packet: %v", err)
	}
}

// sendUDP sends one datagram from src to dst inside ns.
func sendUDP(t *testing.T, ns netns.NsHandle, src, dst netip.AddrPort, payload []byte) {
	t.Helper()
	err := nsutil.Do(ns, func() error {
		c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(src))
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.WriteToUDPAddrPort(payload, dst)
		return err
	})
	if err != nil {
		t.Fatalf("send UDP %v -> %v: %v", src, dst, err)
	}
}

// udpSink counts datagrams arriving at addr inside ns until closed.
func udpSink(t *testing.T, ns netns.NsHandle, addr netip.AddrPort) *atomic.Int64 {
	t.Helper()
	var c *net.UDPConn
	if err := nsutil.Do(ns, func() (err error) {
		c, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(addr))
		return err
	}); err != nil {
		t.Fatalf("listen %v: %v", addr, err)
	}
	var n atomic.Int64
	go func() {
		buf := make([]byte, 2048)
		for {
			if _, _, err := c.ReadFromUDPAddrPort(buf); err != nil {
				return
			}
			n.Add(1)
		}
	}()
	t.Cleanup(func() { c.Close() })
	return &n
}

func drops(t *testing.T, s *twoSite, site, reason string) uint64 {
	return s.status(t, site).Dataplane.Drops[reason]
}

// testAttacks sends datagrams that plain mode must refuse and checks that
// none reaches a LAN and each is counted under its reason.
func testAttacks(t *testing.T, s *twoSite, ns1 netns.NsHandle) {
	hostA, hostB := s.ClientAddr.Addr(), s.SiteBHost.Addr()
	sinkA := udpSink(t, s.client(), netip.AddrPortFrom(hostA, 5400))
	sinkB := udpSink(t, ns1, netip.AddrPortFrom(hostB, 5401))
	msg := []byte("must not arrive")
	gwAWAN := netip.AddrPortFrom(s.GatewayAWAN.Addr(), 60000)
	gwB := netip.AddrPortFrom(s.GatewayBWAN.Addr(), 50000)

	// (a) A valid inner packet from an address that is not the server's
	// endpoint, sent to the client's agent from the NAT router's inside.
	before := drops(t, s, "client", "not_from_peer")
	inner := ipv4UDP(netip.AddrPortFrom(hostB, 7000), netip.AddrPortFrom(hostA, 5400), msg)
	sendUDP(t, s.Handle(s.NAT), netip.AddrPortFrom(s.NATInside.Addr(), 40000), gwAWAN, inner)
	// (b) From the client's real endpoint (a raw packet through the NAT's
	// mapping), an inner source outside the client's prefixes.
	beforeSrc := drops(t, s, "server", "src_not_allowed")
	inner = ipv4UDP(netip.MustParseAddrPort("192.168.111.77:7000"), netip.AddrPortFrom(hostB, 5401), msg)
	sendRaw(t, s.Handle(s.GatewayA), ipv4UDP(gwAWAN, gwB, inner))
	// (c) The same, with an inner destination outside the server's local
	// prefixes.
	beforeDst := drops(t, s, "server", "dst_not_allowed")
	inner = ipv4UDP(netip.AddrPortFrom(hostA, 7000), netip.MustParseAddrPort("198.19.255.1:5402"), msg)
	sendRaw(t, s.Handle(s.GatewayA), ipv4UDP(gwAWAN, gwB, inner))

	counted := eventually(3*time.Second, func() bool {
		return drops(t, s, "client", "not_from_peer") > before &&
			drops(t, s, "server", "src_not_allowed") > beforeSrc &&
			drops(t, s, "server", "dst_not_allowed") > beforeDst
	})
	if !counted {
		t.Errorf("drops not counted: client not_from_peer %d->%d, server src_not_allowed %d->%d, dst_not_allowed %d->%d",
			before, drops(t, s, "client", "not_from_peer"), beforeSrc, drops(t, s, "server", "src_not_allowed"),
			beforeDst, drops(t, s, "server", "dst_not_allowed"))
	}
	time.Sleep(300 * time.Millisecond)
	if a, b := sinkA.Load(), sinkB.Load(); a != 0 || b != 0 {
		t.Errorf("refused packets reached a LAN: %d at the client, %d at the VPS host", a, b)
	}
}

// testNATRebinding moves the NAT's mapping of the client's flow to new
// ports; traffic from the VPS side resumes once the next keepalive from
// the client tells the server the new endpoint.
func testNATRebinding(t *testing.T, s *twoSite, ns1 netns.NsHandle) {
	if err := s.SetNATPorts(61000, 61100); err != nil {
		t.Fatalf("change NAT port range: %v", err)
	}
	old := s.status(t, "server").Dataplane.Peers[0].CurrentEndpoint
	ok := eventually(10*time.Second, func() bool {
		ep := s.status(t, "server").Dataplane.Peers[0].CurrentEndpoint
		return ep.Port() >= 61000 && ep.Port() <= 61100
	})
	if !ok {
		t.Fatalf("server still sends to %v 10s after the NAT mapping changed", old)
	}
	mustPingEventually(t, "VPS host -> client after rebinding", ns1, s.ClientAddr.Addr())
}

package e2e

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"tunnel-agent/dataplane"
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

// sink counts the datagrams arriving at a UDP port: the markers
// (sinkMarker) and the others.
type sink struct {
	addr           netip.AddrPort
	others, marked atomic.Int64
}

// sinkMarker is the payload of flush's datagrams.
var sinkMarker = []byte("sink marker")

// udpSink counts datagrams arriving at addr inside ns until the test ends.
func udpSink(t *testing.T, ns netns.NsHandle, addr netip.AddrPort) *sink {
	t.Helper()
	var c *net.UDPConn
	if err := nsutil.Do(ns, func() (err error) {
		c, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(addr))
		return err
	}); err != nil {
		t.Fatalf("listen %v: %v", addr, err)
	}
	s := &sink{addr: addr}
	go func() {
		buf := make([]byte, 2048)
		for {
			n, _, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			if bytes.Equal(buf[:n], sinkMarker) {
				s.marked.Add(1)
			} else {
				s.others.Add(1)
			}
		}
	}()
	t.Cleanup(func() { c.Close() })
	return s
}

// flush sends markers to the sink from src inside ns (through the path a
// wrongly let-through datagram would take) until one has arrived, 10 s at
// most: whatever was sent to the sink before has then arrived too.
func (s *sink) flush(t *testing.T, ns netns.NsHandle, src netip.AddrPort) {
	t.Helper()
	want := s.marked.Load() + 1
	if !eventually(10*time.Second, func() bool {
		sendUDP(t, ns, src, s.addr, sinkMarker)
		return s.marked.Load() >= want
	}) {
		t.Fatalf("no marker sent from %v reached %v in 10s", src, s.addr)
	}
}

func drops(t *testing.T, s *twoSite, site, reason string) uint64 {
	return s.status(t, site).Dataplane.Drops[reason]
}

// rxPackets is the sum of a site's peers' received (injected) packets.
func rxPackets(st dataplane.Stats) uint64 {
	var n uint64
	for _, p := range st.Peers {
		n += p.RxPackets
	}
	return n
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

	// The counters that move when a site refuses the datagrams below, and
	// those of what it injected, which must not.
	type counts struct{ notFromPeer, srcNotAllowed, dstNotAllowed, rxA, rxB uint64 }
	read := func() counts {
		a, b := s.status(t, "client").Dataplane, s.status(t, "server").Dataplane
		return counts{a.Drops["not_from_peer"], b.Drops["src_not_allowed"], b.Drops["dst_not_allowed"], rxPackets(a), rxPackets(b)}
	}
	before := read()
	// (a) A valid inner packet from an address that is not the server's
	// endpoint, sent to the client's agent from the NAT router's inside.
	inner := ipv4UDP(netip.AddrPortFrom(hostB, 7000), netip.AddrPortFrom(hostA, 5400), msg)
	sendUDP(t, s.Handle(s.NAT), netip.AddrPortFrom(s.NATInside.Addr(), 40000), gwAWAN, inner)
	// (b) From the client's real endpoint (a raw packet through the NAT's
	// mapping), an inner source outside the client's prefixes.
	inner = ipv4UDP(netip.MustParseAddrPort("192.168.111.77:7000"), netip.AddrPortFrom(hostB, 5401), msg)
	sendRaw(t, s.Handle(s.GatewayA), ipv4UDP(gwAWAN, gwB, inner))
	// (c) The same, with an inner destination outside the server's local
	// prefixes.
	inner = ipv4UDP(netip.AddrPortFrom(hostA, 7000), netip.MustParseAddrPort("198.19.255.1:5402"), msg)
	sendRaw(t, s.Handle(s.GatewayA), ipv4UDP(gwAWAN, gwB, inner))

	var after counts
	if !eventually(3*time.Second, func() bool {
		after = read()
		return after.notFromPeer > before.notFromPeer && after.srcNotAllowed > before.srcNotAllowed &&
			after.dstNotAllowed > before.dstNotAllowed
	}) {
		t.Errorf("drops not counted: client not_from_peer %d->%d, server src_not_allowed %d->%d, dst_not_allowed %d->%d",
			before.notFromPeer, after.notFromPeer, before.srcNotAllowed, after.srcNotAllowed, before.dstNotAllowed, after.dstNotAllowed)
	}
	// A refused datagram is not injected: the sites' counts of what they
	// injected did not move, and the markers sent through the tunnel
	// after it reach each LAN port alone.
	if after.rxA != before.rxA || after.rxB != before.rxB {
		t.Errorf("refused packets injected: client %d -> %d, server %d -> %d", before.rxA, after.rxA, before.rxB, after.rxB)
	}
	sinkA.flush(t, ns1, netip.AddrPortFrom(hostB, 7001))
	sinkB.flush(t, s.client(), netip.AddrPortFrom(hostA, 7001))
	if a, b := sinkA.others.Load(), sinkB.others.Load(); a != 0 || b != 0 {
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

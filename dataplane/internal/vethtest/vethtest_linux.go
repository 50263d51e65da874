// Package vethtest is the test bed of the dataplane's OS packages
// (afpacket, udp, rawip): two throwaway network namespaces joined by a
// veth pair, and the small helpers their tests share. Everything it
// creates is removed when the test ends.
package vethtest

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"tunnel-agent/internal/nstest"
)

// Topo is two throwaway namespaces joined by a veth pair:
//
//	A: veth-a 198.18.0.1/24, blackhole 198.19.0.0/16 (the "tunnelled" range)
//	B: veth-b 198.18.0.2/24, 198.19.0.0/16 via 198.18.0.1
//
// so that B sending to 198.19.x.y puts an inbound frame for a non-local
// destination on A's veth-a, as a LAN host sending into the tunnel would.
// AddIPv6 adds the same in IPv6: fd00:18::1/64 and fd00:18::2/64,
// fd00:19::/48 blackholed in A and routed via A in B.
type Topo struct {
	A, B         *nstest.NS
	IfA, IfB     string
	AddrA, AddrB netip.Addr
}

// The topology's addresses and remote ("tunnelled") prefixes.
var (
	AddrA  = netip.MustParseAddr("198.18.0.1")
	AddrB  = netip.MustParseAddr("198.18.0.2")
	Remote = netip.MustParsePrefix("198.19.0.0/16")

	AddrA6  = netip.MustParseAddr("fd00:18::1")
	AddrB6  = netip.MustParseAddr("fd00:18::2")
	Remote6 = netip.MustParsePrefix("fd00:19::/48")
)

// New creates the topology with links of MTU mtu, up and ready to carry
// traffic.
func New(t testing.TB, mtu int) *Topo {
	t.Helper()
	topo := &Topo{
		A: nstest.New(t, "dpa"), B: nstest.New(t, "dpb"),
		IfA: "veth-a", IfB: "veth-b",
		AddrA: AddrA, AddrB: AddrB,
	}
	veth := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: topo.IfA, MTU: mtu},
		PeerName:      topo.IfB,
		PeerMTU:       uint32(mtu),
		PeerNamespace: netlink.NsFd(topo.B.Handle),
	}
	if err := topo.A.NL.LinkAdd(veth); err != nil {
		t.Fatalf("create veth pair: %v", err)
	}
	setup := func(ns *nstest.NS, ifname string, addr netip.Addr) netlink.Link {
		link, err := ns.NL.LinkByName(ifname)
		if err != nil {
			t.Fatalf("%s in %s: %v", ifname, ns.Name, err)
		}
		if link.Attrs().MTU != mtu {
			if err := ns.NL.LinkSetMTU(link, mtu); err != nil {
				t.Fatalf("set MTU of %s: %v", ifname, err)
			}
		}
		a := &netlink.Addr{IPNet: &net.IPNet{IP: addr.AsSlice(), Mask: net.CIDRMask(24, 32)}}
		if err := ns.NL.AddrAdd(link, a); err != nil {
			t.Fatalf("address on %s: %v", ifname, err)
		}
		if err := ns.NL.LinkSetUp(link); err != nil {
			t.Fatalf("bring %s up: %v", ifname, err)
		}
		return link
	}
	setup(topo.A, topo.IfA, topo.AddrA)
	linkB := setup(topo.B, topo.IfB, topo.AddrB)
	// The kernel activates a device's queueing (linkwatch) up to a second
	// after carrier comes up; until then it drops what is sent, including
	// the first ARP request, whose retry would delay the tests by 1s.
	for _, side := range []struct {
		ns     *nstest.NS
		ifname string
	}{{topo.A, topo.IfA}, {topo.B, topo.IfB}} {
		deadline := time.Now().Add(5 * time.Second)
		for {
			link, err := side.ns.NL.LinkByName(side.ifname)
			if err == nil && link.Attrs().OperState == netlink.OperUp {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s not operationally up after 5s: %v", side.ifname, err)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	remote := &net.IPNet{IP: Remote.Addr().AsSlice(), Mask: net.CIDRMask(Remote.Bits(), 32)}
	if err := topo.A.NL.RouteAdd(&netlink.Route{Dst: remote, Type: unix.RTN_BLACKHOLE}); err != nil {
		t.Fatalf("blackhole route in A: %v", err)
	}
	if err := topo.B.NL.RouteAdd(&netlink.Route{Dst: remote, Gw: topo.AddrA.AsSlice(), LinkIndex: linkB.Attrs().Index}); err != nil {
		t.Fatalf("route in B: %v", err)
	}
	return topo
}

// AddIPv6 gives the topology its IPv6 addresses (without duplicate
// address detection, so they are usable at once) and routes.
func (topo *Topo) AddIPv6(t testing.TB) {
	t.Helper()
	for _, side := range []struct {
		ns     *nstest.NS
		ifname string
		addr   netip.Addr
	}{{topo.A, topo.IfA, AddrA6}, {topo.B, topo.IfB, AddrB6}} {
		link, err := side.ns.NL.LinkByName(side.ifname)
		if err != nil {
			t.Fatal(err)
		}
		a := &netlink.Addr{IPNet: &net.IPNet{IP: side.addr.AsSlice(), Mask: net.CIDRMask(64, 128)}, Flags: unix.IFA_F_NODAD}
		if err := side.ns.NL.AddrAdd(link, a); err != nil {
			t.Fatalf("IPv6 address on %s: %v", side.ifname, err)
		}
	}
	remote := &net.IPNet{IP: Remote6.Addr().AsSlice(), Mask: net.CIDRMask(Remote6.Bits(), 128)}
	if err := topo.A.NL.RouteAdd(&netlink.Route{Dst: remote, Type: unix.RTN_BLACKHOLE}); err != nil {
		t.Fatalf("IPv6 blackhole in A: %v", err)
	}
	linkB, err := topo.B.NL.LinkByName(topo.IfB)
	if err != nil {
		t.Fatal(err)
	}
	if err := topo.B.NL.RouteAdd(&netlink.Route{Dst: remote, Gw: AddrA6.AsSlice(), LinkIndex: linkB.Attrs().Index}); err != nil {
		t.Fatalf("IPv6 route in B: %v", err)
	}
}

// UDPIn opens a UDP socket bound to addr in namespace ns, closed when the
// test ends.
func UDPIn(t testing.TB, ns *nstest.NS, addr netip.AddrPort) *net.UDPConn {
	t.Helper()
	network := "udp"
	if addr.Addr().Is4() {
		network = "udp4"
	}
	var conn *net.UDPConn
	err := ns.Do(func() (err error) {
		conn, err = net.ListenUDP(network, net.UDPAddrFromAddrPort(addr))
		return err
	})
	if err != nil {
		t.Fatalf("UDP socket on %v in %s: %v", addr, ns.Name, err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// SendTo sends payload from conn to dst, failing the test on error.
func SendTo(t testing.TB, conn *net.UDPConn, dst string, payload []byte) {
	t.Helper()
	if _, err := conn.WriteToUDPAddrPort(payload, netip.MustParseAddrPort(dst)); err != nil {
		t.Fatalf("send to %s: %v", dst, err)
	}
}

// Watchdog closes c if the test is still running after d, so that a lost
// packet fails a blocked read instead of hanging the test.
func Watchdog(t testing.TB, d time.Duration, c interface{ Close() error }) {
	timer := time.AfterFunc(d, func() { c.Close() })
	t.Cleanup(func() { timer.Stop() })
}

// Bufs returns n buffers of size bytes and their sizes.
func Bufs(n, size int) ([][]byte, []int) {
	bufs := make([][]byte, n)
	for i := range bufs {
		bufs[i] = make([]byte, size)
	}
	return bufs, make([]int, n)
}

// Capture is what Read reads from: a dataplane.Capture.
type Capture interface {
	ReadBatch(bufs [][]byte, sizes []int) (int, error)
	Close() error
}

// Read reads one batch from c, failing the test (and closing c to
// unblock the read) if nothing arrives within d.
func Read(t testing.TB, c Capture, bufs [][]byte, sizes []int, d time.Duration) int {
	t.Helper()
	type result struct {
		n   int
		err error
	}
	done := make(chan result, 1)
	go func() {
		n, err := c.ReadBatch(bufs, sizes)
		done <- result{n, err}
	}()
	select {
	case r := <-done:
		if r.err != nil {
			t.Fatalf("ReadBatch: %v", r.err)
		}
		return r.n
	case <-time.After(d):
		c.Close()
		<-done
		t.Fatalf("ReadBatch: nothing captured within %v", d)
		return 0
	}
}

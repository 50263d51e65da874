package wireguard

import (
	"net/netip"
	"testing"

	"golang.zx2c4.com/wireguard/conn"

	"tunnel-agent/dataplane/udp"
	"tunnel-agent/internal/nstest"
)

// openUDPBind opens a udpBind on addr:0 inside ns.
func openUDPBind(t *testing.T, ns *nstest.NS, addr netip.Addr) (*udpBind, conn.ReceiveFunc, uint16) {
	t.Helper()
	b := newUDPBind(addr, udp.Options{})
	var fns []conn.ReceiveFunc
	var port uint16
	if err := ns.Do(func() (err error) {
		fns, port, err = b.Open(0)
		return err
	}); err != nil {
		t.Fatalf("open the bind on %v: %v", addr, err)
	}
	t.Cleanup(func() { b.Close() })
	if len(fns) != 1 || port == 0 {
		t.Fatalf("%d receive functions, port %d", len(fns), port)
	}
	return b, fns[0], port
}

// TestUDPBind: the bind listens on the address it is given, carries a
// batch both ways with the sender's address as the endpoint, refuses a
// second Open, and allocates nothing per batch from a known source.
func TestUDPBind(t *testing.T) {
	ns := nstest.New(t, "wgb")
	lo := netip.MustParseAddr("127.0.0.1")
	a, _, portA := openUDPBind(t, ns, lo)
	_, recvB, portB := openUDPBind(t, ns, netip.MustParseAddr("127.0.0.2"))
	if got := a.t.LocalAddr(); got != netip.AddrPortFrom(lo, portA) {
		t.Errorf("bound to %v, want 127.0.0.1:%d", got, portA)
	}
	if _, _, err := a.Open(0); err == nil {
		t.Error("a second Open succeeded")
	}
	ep, err := a.ParseEndpoint(netip.AddrPortFrom(netip.MustParseAddr("127.0.0.2"), portB).String())
	if err != nil {
		t.Fatal(err)
	}
	msgs := newBuffers(8, 100)
	bufs, sizes, eps := newBuffers(udpBindBatch, 65535), make([]int, udpBindBatch), make([]conn.Endpoint, udpBindBatch)
	from := netip.AddrPortFrom(lo, portA)
	roundTrip := func() {
		if err := a.Send(msgs, ep); err != nil {
			t.Fatalf("send: %v", err)
		}
		for got := 0; got < len(msgs); {
			n, err := recvB(bufs, sizes, eps)
			if err != nil {
				t.Fatalf("receive: %v", err)
			}
			for i := range n {
				if e, ok := eps[i].(*udpEndpoint); sizes[i] != 100 || !ok || e.ap != from {
					t.Fatalf("datagram of %d bytes from %v", sizes[i], eps[i])
				}
			}
			got += n
		}
	}
	roundTrip()
	if n := testing.AllocsPerRun(20, roundTrip); n != 0 {
		t.Errorf("send and receive of a batch: %v allocs", n)
	}
}

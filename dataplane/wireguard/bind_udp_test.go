package wireguard

import (
	"net/netip"
	"testing"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"tunnel-agent/dataplane"
	"tunnel-agent/dataplane/dptest"
	"tunnel-agent/dataplane/udp"
	"tunnel-agent/internal/nstest"
)

// openUDPBind opens a udpBind on addr:0 inside ns.
func openUDPBind(t *testing.T, ns *nstest.NS, addr netip.Addr) (*udpBind, conn.ReceiveFunc, uint16) {
	t.Helper()
	b := newUDPBind(addr, nil)
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
	if _, ok := a.t.(*udp.Transport); !ok {
		t.Errorf("default transport %T, want *udp.Transport", a.t)
	}
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

// TestWireGuardOverListenFunc runs two tunnels over the UDP bind with an
// in-memory network (Config.Listen, as the agent's tests can), A behind a
// NAT: packets cross both ways and B answers A at its NAT's address.
func TestWireGuardOverListenFunc(t *testing.T) {
	network := dptest.NewNetwork()
	aAddr, natAddr, bAddr := netip.MustParseAddrPort("192.0.2.1:51820"), netip.MustParseAddrPort("203.0.113.9:40000"), netip.MustParseAddrPort("198.51.100.2:51820")
	network.SetNAT(aAddr, natAddr)
	listen := func(want netip.AddrPort) ListenFunc {
		return func(addr netip.AddrPort) (dataplane.Transport, error) {
			if addr != want {
				t.Errorf("listen on %v, want %v", addr, want)
			}
			return network.Listen(addr), nil
		}
	}
	ka, kb := mustKey(t), mustKey(t)
	start := func(key wgtypes.Key, peer wgtypes.Key, addr netip.AddrPort, lan dataplane.Config) wgSite {
		s := wgSite{cap: dptest.NewCapture(), inj: dptest.NewInjector()}
		w, err := New(Config{LAN: lan, PrivateKey: Key(key), ListenAddr: addr.Addr(), ListenPort: addr.Port(), Listen: listen(addr),
			PeerKeys: []PeerKeys{{Public: Key(peer.PublicKey())}}}, s.cap, s.inj)
		if err != nil {
			t.Fatal(err)
		}
		s.w = w
		runWG(t, w)
		return s
	}
	a := start(ka, kb, aAddr, dataplane.Config{LocalPrefixes: wgPfx("192.168.111.0/24"), ICMPSource: netip.MustParseAddr("192.168.111.1"),
		Peers: []dataplane.PeerConfig{{Name: "b", Endpoint: bAddr, Prefixes: wgPfx("11.11.11.0/24")}}})
	b := start(kb, ka, bAddr, dataplane.Config{LocalPrefixes: wgPfx("11.11.11.0/24"), ICMPSource: netip.MustParseAddr("11.11.11.1"),
		Peers: []dataplane.PeerConfig{{Name: "a", Prefixes: wgPfx("192.168.111.0/24")}}})
	src, dst := netip.MustParseAddr("192.168.111.2"), netip.MustParseAddr("11.11.11.100")
	a.cap.Send(dptest.EchoRequest(src, dst, 1, 1, 56))
	mustRecv(t, b.inj)
	b.cap.Send(dptest.EchoRequest(dst, src, 1, 1, 56))
	mustRecv(t, a.inj)
	if ep := b.w.WireGuardStats().Peers[0].Endpoint; ep != natAddr {
		t.Errorf("B's endpoint of A %v, want the NAT's %v", ep, natAddr)
	}
	if st := b.w.WireGuardStats(); st.ListenPort != bAddr.Port() || st.DatagramsReceived == 0 {
		t.Errorf("B's stats: port %d, %d datagrams", st.ListenPort, st.DatagramsReceived)
	}
}

package wireguard

import (
	"fmt"
	"net"
	"net/netip"
	"sync"
	"testing"

	"golang.zx2c4.com/wireguard/conn"

	"tunnel-agent/dataplane"
	"tunnel-agent/dataplane/dptest"
)

// switchboard joins any number of in-memory binds, each known by a port
// (its endpoint is 127.0.0.1:port): bindtest joins only two.
type switchboard struct {
	mu    sync.Mutex
	ports map[uint16]*swBind
}

type swDatagram struct {
	b    []byte
	from uint16
}

type swBind struct {
	sb     *switchboard
	port   uint16
	rx     chan swDatagram
	mu     sync.Mutex
	closed chan struct{}
}

type swEndpoint uint16

func (e swEndpoint) ClearSrc()           {}
func (e swEndpoint) SrcToString() string { return "" }
func (e swEndpoint) DstToString() string { return fmt.Sprintf("127.0.0.1:%d", uint16(e)) }
func (e swEndpoint) DstToBytes() []byte  { return []byte{byte(e >> 8), byte(e)} }
func (e swEndpoint) DstIP() netip.Addr   { return netip.AddrFrom4([4]byte{127, 0, 0, 1}) }
func (e swEndpoint) SrcIP() netip.Addr   { return netip.Addr{} }

func (sb *switchboard) bind(port uint16) *swBind {
	b := &swBind{sb: sb, port: port, rx: make(chan swDatagram, 1024)}
	sb.mu.Lock()
	defer sb.mu.Unlock()
	if sb.ports == nil {
		sb.ports = map[uint16]*swBind{}
	}
	sb.ports[port] = b
	return b
}

func (b *swBind) Open(uint16) ([]conn.ReceiveFunc, uint16, error) {
	b.mu.Lock()
	closed := make(chan struct{})
	b.closed = closed
	b.mu.Unlock()
	return []conn.ReceiveFunc{func(bufs [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
		select {
		case d := <-b.rx:
			sizes[0] = copy(bufs[0], d.b)
			eps[0] = swEndpoint(d.from)
			return 1, nil
		case <-closed:
			return 0, net.ErrClosed
		}
	}}, b.port, nil
}

func (b *swBind) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed != nil {
		close(b.closed)
		b.closed = nil
	}
	return nil
}

func (b *swBind) SetMark(uint32) error { return nil }
func (b *swBind) BatchSize() int       { return 1 }

func (b *swBind) Send(bufs [][]byte, ep conn.Endpoint) error {
	b.sb.mu.Lock()
	dst := b.sb.ports[uint16(ep.(swEndpoint))]
	b.sb.mu.Unlock()
	if dst == nil {
		return net.ErrClosed
	}
	for _, p := range bufs {
		select {
		case dst.rx <- swDatagram{append([]byte(nil), p...), b.port}:
		default: // a full queue drops, as a socket does
		}
	}
	return nil
}

func (b *swBind) ParseEndpoint(s string) (conn.Endpoint, error) {
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return nil, err
	}
	return swEndpoint(ap.Port()), nil
}

// TestWireGuardRelay: a hub with Relay forwards between two spokes:
// decrypted from one, checked (the source against that peer's prefixes,
// the router hop), encrypted to the other; a packet that fails the hop
// check gets its ICMP error back through the tunnel.
func TestWireGuardRelay(t *testing.T) {
	var sb switchboard
	kh, k1, k2 := mustKey(t), mustKey(t), mustKey(t)
	ep := func(port int) netip.AddrPort {
		return netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port))
	}
	hub := startWG(t, sb.bind(1), kh, PeerKeys{Public: Key(k1.PublicKey())}, dataplane.Config{
		LocalPrefixes: wgPfx("10.0.0.0/24"), ICMPSource: netip.MustParseAddr("10.0.0.1"), Relay: true,
		Peers: []dataplane.PeerConfig{{Name: "s1", Endpoint: ep(2), Prefixes: wgPfx("10.1.0.0/24")},
			{Name: "s2", Endpoint: ep(3), Prefixes: wgPfx("10.2.0.0/24")}},
	}, PeerKeys{Public: Key(k2.PublicKey())})
	s1 := startWG(t, sb.bind(2), k1, PeerKeys{Public: Key(kh.PublicKey())}, dataplane.Config{
		LocalPrefixes: wgPfx("10.1.0.0/24"), ICMPSource: netip.MustParseAddr("10.1.0.1"),
		Peers: []dataplane.PeerConfig{{Name: "hub", Endpoint: ep(1), Prefixes: wgPfx("10.0.0.0/24", "10.2.0.0/24")}},
	})
	s2 := startWG(t, sb.bind(3), k2, PeerKeys{Public: Key(kh.PublicKey())}, dataplane.Config{
		LocalPrefixes: wgPfx("10.2.0.0/24"), ICMPSource: netip.MustParseAddr("10.2.0.1"),
		Peers: []dataplane.PeerConfig{{Name: "hub", Endpoint: ep(1), Prefixes: wgPfx("10.0.0.0/24", "10.1.0.0/24")}},
	})
	a, b := netip.MustParseAddr("10.1.0.5"), netip.MustParseAddr("10.2.0.7")
	s1.cap.Send(dptest.EchoRequest(a, b, 1, 1, 56))
	got := mustRecv(t, s2.inj)
	if got[8] != 62 || netip.AddrFrom4([4]byte(got[12:16])) != a || netip.AddrFrom4([4]byte(got[16:20])) != b {
		t.Errorf("s2 got TTL %d %v -> %v, want 62 (two hops) %v -> %v", got[8], got[12:16], got[16:20], a, b)
	}
	s2.cap.Send(dptest.EchoRequest(b, a, 1, 1, 56))
	mustRecv(t, s1.inj)
	st := hub.w.Stats()
	if st.Peers[0].RxPackets != 1 || st.Peers[0].TxPackets != 1 || st.Peers[1].RxPackets != 1 || st.Peers[1].TxPackets != 1 {
		t.Errorf("hub's peer counters %+v", st.Peers)
	}
	if len(hub.inj.Out()) != 0 {
		t.Error("the hub injected a relayed packet into its own LAN")
	}
	// TTL 2 leaves s1 with 1 and expires at the hub: time exceeded from
	// the hub's ICMP source comes back to the sender through the tunnel.
	expiring := dptest.IPv4{Src: a, Dst: b, TTL: 2, Proto: 17}.Marshal(make([]byte, 8))
	s1.cap.Send(expiring)
	icmp := mustRecv(t, s1.inj)
	if icmp[20] != 11 || netip.AddrFrom4([4]byte(icmp[12:16])) != netip.MustParseAddr("10.0.0.1") {
		t.Errorf("s1 got ICMP type %d from %v, want time exceeded from the hub", icmp[20], icmp[12:16])
	}
	if d := hub.w.Stats().Drops; d["ttl_expired"] != 1 {
		t.Errorf("hub drops %v", d)
	}
	// Without Relay the hub refuses the same packet.
	cfg := hub.w.cfg
	cfg.LAN.Relay = false
	if err := hub.w.Reconfigure(cfg); err != nil {
		t.Fatal(err)
	}
	s1.cap.Send(dptest.EchoRequest(a, b, 1, 2, 56))
	s1.cap.Send(dptest.EchoRequest(a, netip.MustParseAddr("10.0.0.9"), 1, 3, 56)) // to the hub's LAN: the marker
	if got := mustRecv(t, hub.inj); netip.AddrFrom4([4]byte(got[16:20])) != netip.MustParseAddr("10.0.0.9") {
		t.Errorf("hub injected a packet to %v", got[16:20])
	}
	if d := hub.w.Stats().Drops; d["dst_not_allowed"] != 1 {
		t.Errorf("hub without relay: drops %v", d)
	}
}

// TestRelayZeroAllocs: relaying through wgTUN (Write queues, Read hands
// over) allocates nothing per packet, and relayed packets take outbound
// credit as captured ones do.
func TestRelayZeroAllocs(t *testing.T) {
	inj := dptest.NewInjector()
	lan, err := dataplane.NewRouter(dataplane.Config{LocalPrefixes: wgPfx("10.0.0.0/16"), Relay: true,
		Peers: []dataplane.PeerConfig{{Name: "a", Prefixes: wgPfx("10.1.0.0/16")}, {Name: "b", Prefixes: wgPfx("10.2.0.0/16")}}}, inj)
	if err != nil {
		t.Fatal(err)
	}
	tun := newWGTUN(lan, newWGCounters(), dptest.NewCapture(), inj, 1420)
	t.Cleanup(func() { tun.Close() })
	pkt := dptest.EchoRequest(netip.MustParseAddr("10.1.0.5"), netip.MustParseAddr("10.2.0.7"), 1, 1, 56)
	const off = 16
	in := [][]byte{make([]byte, off+len(pkt))}
	out, sizes := [][]byte{make([]byte, off+2048), make([]byte, off+2048)}, make([]int, 2)
	run := func() {
		copy(in[0][off:], pkt) // a fresh TTL each time
		if _, err := tun.Write(in, off); err != nil {
			t.Fatal(err)
		}
		if n, err := tun.Read(out, sizes, off); n != 1 || err != nil || sizes[0] != len(pkt) {
			t.Fatalf("Read: %d, %v, size %d", n, err, sizes[0])
		}
	}
	run()
	// The relayed packet is charged to the outbound credit like a captured
	// one; the next Read finds its buffer not kept (the test reuses it)
	// and releases it.
	if f := tun.ctr.out.InFlight(); f != 1 {
		t.Errorf("outbound in flight after a relayed packet: %d, want 1", f)
	}
	if n := testing.AllocsPerRun(100, run); n != 0 {
		t.Errorf("%v allocations per relayed packet", n)
	}
	if f := tun.ctr.out.InFlight(); f > 1 {
		t.Errorf("outbound in flight after 101 relayed packets: %d, want at most 1", f)
	}
	if st := lan.Stats(); st.Peers[1].TxPackets != 102 {
		t.Errorf("relayed to b: %d, want 102", st.Peers[1].TxPackets)
	}
}

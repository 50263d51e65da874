package wireguard

import (
	"crypto/rand"
	"encoding/binary"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/conn/bindtest"

	"tunnel-agent/dataplane"
	"tunnel-agent/dataplane/dptest"
	"tunnel-agent/internal/wgflood"
)

// tapBind is an in-memory bind that keeps a copy of the first datagram of
// each kind it receives (initiation, data) and takes datagrams injected
// by the test through one more receive function, as if from the peer.
type tapBind struct {
	conn.Bind
	inject chan []byte
	from   conn.Endpoint
	mu     sync.Mutex
	first  map[byte][]byte // by message type
	closed chan struct{}
}

func newTapBind(b conn.Bind, from conn.Endpoint) *tapBind {
	return &tapBind{Bind: b, inject: make(chan []byte, 64), from: from, first: map[byte][]byte{}}
}

func (b *tapBind) Open(port uint16) ([]conn.ReceiveFunc, uint16, error) {
	fns, actual, err := b.Bind.Open(port)
	if err != nil {
		return nil, 0, err
	}
	for i, fn := range fns {
		fns[i] = func(bufs [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
			n, err := fn(bufs, sizes, eps)
			for j := range n {
				b.keep(bufs[j][:sizes[j]])
			}
			return n, err
		}
	}
	closed := make(chan struct{})
	b.mu.Lock()
	b.closed = closed
	b.mu.Unlock()
	fns = append(fns, func(bufs [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
		select {
		case m := <-b.inject:
			sizes[0] = copy(bufs[0], m)
			eps[0] = b.from
			return 1, nil
		case <-closed:
			return 0, net.ErrClosed
		}
	})
	return fns, actual, nil
}

func (b *tapBind) Close() error {
	b.mu.Lock()
	if b.closed != nil {
		close(b.closed)
		b.closed = nil
	}
	b.mu.Unlock()
	return b.Bind.Close()
}

// keep copies the first initiation and the first data message.
func (b *tapBind) keep(m []byte) {
	if len(m) == 0 || !(len(m) == wgflood.InitiationSize && m[0] == wgMsgInitiation || len(m) > 32 && m[0] == wgMsgTransport) {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.first[m[0]] == nil {
		b.first[m[0]] = append([]byte(nil), m...)
	}
}

func (b *tapBind) get(t *testing.T, msgType byte) []byte {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.first[msgType] == nil {
		t.Fatalf("no message of type %d seen", msgType)
	}
	return append([]byte(nil), b.first[msgType]...)
}

// TestWireGuardEveryDatagramCounted sends B each kind of datagram it must
// refuse, after a real exchange, and checks that each is counted under
// its reason and that the outcomes add up to the datagrams received.
func TestWireGuardEveryDatagramCounted(t *testing.T) {
	ka, kb := mustKey(t), mustKey(t)
	binds := bindtest.NewChannelBinds()
	tap := newTapBind(binds[1], bindtest.ChannelEndpoint(1))
	a := startWG(t, binds[0], ka, PeerKeys{Public: Key(kb.PublicKey())}, dataplane.Config{
		LocalPrefixes: wgPfx("192.168.111.0/24"), ICMPSource: netip.MustParseAddr("192.168.111.1"),
		Peers: []dataplane.PeerConfig{{Name: "b", Endpoint: netip.MustParseAddrPort("127.0.0.1:1"), Prefixes: wgPfx("11.11.11.0/24")}},
	})
	b := startWG(t, tap, kb, PeerKeys{Public: Key(ka.PublicKey())}, dataplane.Config{
		LocalPrefixes: wgPfx("11.11.11.0/25"), ICMPSource: netip.MustParseAddr("11.11.11.1"),
		Peers: []dataplane.PeerConfig{{Name: "a", Prefixes: wgPfx("192.168.111.0/24")}},
	})
	a.cap.Send(dptest.EchoRequest(netip.MustParseAddr("192.168.111.2"), netip.MustParseAddr("11.11.11.100"), 1, 1, 56))
	mustRecv(t, b.inj)
	initiation, data := tap.get(t, wgMsgInitiation), tap.get(t, wgMsgTransport)
	// Nothing of the real exchange is rejected, but a transport message is
	// inferred rejected until its Write has counted it delivered, which
	// happens just after the injection mustRecv saw: wait for that.
	before := b.w.WireGuardStats()
	for end := time.Now().Add(5 * time.Second); before.TransportRejected != 0 && time.Now().Before(end); {
		time.Sleep(10 * time.Millisecond)
		before = b.w.WireGuardStats()
	}

	badMAC := make([]byte, wgflood.InitiationSize)
	_, _ = rand.Read(badMAC)
	copy(badMAC, []byte{1, 0, 0, 0})
	unknownSession := append([]byte(nil), data...)
	binary.LittleEndian.PutUint32(unknownSession[4:], ^binary.LittleEndian.Uint32(data[4:]))
	tampered := append([]byte(nil), data...)
	tampered[len(tampered)-1] ^= 1
	cookie := make([]byte, 64)
	cookie[0] = wgMsgCookie
	send := [][]byte{
		[]byte("a plain-mode datagram"),                 // not WireGuard
		append([]byte{1, 0, 0, 0}, make([]byte, 96)...), // handshake malformed
		{4, 0, 0, 0, 1, 2, 3},                           // transport malformed
		badMAC,                                          // bad MAC1
		wgflood.Initiation(kb.PublicKey()),              // valid MAC1, does not decrypt: unknown key
		initiation,                                      // replay
		unknownSession,                                  // no such receiver index
		data,                                            // transport replay
		tampered,                                        // authentication fails
		cookie,                                          // a cookie reply for no handshake of ours
	}
	for _, m := range send {
		tap.inject <- m
	}
	want := func(s Stats) map[string]uint64 {
		return map[string]uint64{
			"received": s.DatagramsReceived, "not_wireguard": s.NotWireGuard,
			"hs_malformed": s.HandshakeRejectedMalformed, "tr_malformed": s.TransportMalformed,
			"bad_mac": s.HandshakeRejectedBadMAC, "unknown_key": s.HandshakeRejectedUnknownKey,
			"replay": s.HandshakeRejectedReplay, "unknown_session": s.TransportUnknownSession,
			"tr_rejected": s.TransportRejected, "silent": s.HandshakeRejectedRateLimited,
		}
	}
	wantDelta := map[string]uint64{"received": 10, "not_wireguard": 1, "hs_malformed": 1, "tr_malformed": 1, "bad_mac": 1,
		"unknown_key": 1, "replay": 1, "unknown_session": 1, "tr_rejected": 2, "silent": 1}
	var after Stats
	ok := false
	for end := time.Now().Add(5 * time.Second); !ok && time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		after = b.w.WireGuardStats()
		w0, w1 := want(before), want(after)
		ok = true
		for k, d := range wantDelta {
			if w1[k]-w0[k] != d {
				ok = false
			}
		}
	}
	if !ok {
		t.Errorf("counters did not move as expected:\nbefore %+v\nafter  %+v", want(before), want(after))
	}
	if got := after.NotWireGuard + after.HandshakeReceived + after.TransportReceived; got != after.DatagramsReceived {
		t.Errorf("received %d, outcomes sum to %d: %+v", after.DatagramsReceived, got, after)
	}
	if got := after.HandshakesCompleted + after.CookieRepliesReceived + after.HandshakeRejected; got != after.HandshakeReceived {
		t.Errorf("handshake messages %d, outcomes sum to %d: %+v", after.HandshakeReceived, got, after)
	}
	if got := after.TransportMalformed + after.TransportUnknownSession + after.TransportDelivered + after.KeepalivesReceived +
		after.TransportDisallowed + after.TransportRejected; got != after.TransportReceived {
		t.Errorf("transport messages %d, outcomes sum to %d: %+v", after.TransportReceived, got, after)
	}
	if after.HandshakesInitiated != 0 || after.HandshakesCompleted == 0 || a.w.WireGuardStats().HandshakesInitiated == 0 {
		t.Errorf("B initiated %d and completed %d handshakes, A initiated %d; want 0, ≥1, ≥1",
			after.HandshakesInitiated, after.HandshakesCompleted, a.w.WireGuardStats().HandshakesInitiated)
	}
	// What wireguard-go refused without a word is never released; its
	// credit is forgiven once it leaves the window (flight.go).
	drained := false
	for end := time.Now().Add(5 * time.Second); !drained && time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		after = b.w.WireGuardStats()
		drained = after.InFlightInbound == 0 && after.InFlightOutbound == 0 && after.InFlightForgiven >= after.TransportRejected
	}
	if !drained {
		t.Errorf("credit not given back: %d in, %d out in flight, %d forgiven for %d rejected",
			after.InFlightInbound, after.InFlightOutbound, after.InFlightForgiven, after.TransportRejected)
	}
}

// fakeRecv is a bind whose receive function returns the same batch of
// transport messages every time (as a device that skipped them all would
// see it) and whose Send discards.
type fakeRecv struct {
	conn.Bind
	msg []byte
	ep  conn.Endpoint
}

func (f *fakeRecv) Open(uint16) ([]conn.ReceiveFunc, uint16, error) {
	return []conn.ReceiveFunc{func(bufs [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
		for i := range bufs {
			sizes[i] = copy(bufs[i], f.msg)
			eps[i] = f.ep
		}
		return len(bufs), nil
	}}, 1, nil
}
func (f *fakeRecv) Send([][]byte, conn.Endpoint) error { return nil }
func (f *fakeRecv) BatchSize() int                     { return 32 }

// TestWireGuardZeroAllocs: our part of wireguard-go's packet path (the
// TUN read and write, the bind's receive wrapper and Send, the UDP bind's
// endpoint lookup) allocates nothing per batch.
func TestWireGuardZeroAllocs(t *testing.T) {
	out := dptest.EchoRequest(netip.MustParseAddr("192.168.111.2"), netip.MustParseAddr("11.11.11.100"), 1, 1, 1372)
	w := loopTunnel(t, out)
	bufs, sizes := newBuffers(32, 65535), make([]int, 32)
	if n := testing.AllocsPerRun(100, func() { _, _ = w.tun.Read(bufs, sizes, 16) }); n != 0 {
		t.Errorf("TUN read: %v allocs", n)
	}
	in := newBuffers(32, 16+len(out))
	if n := testing.AllocsPerRun(100, func() { _, _ = w.tun.Write(in, 16) }); n != 0 {
		t.Errorf("TUN write: %v allocs", n)
	}

	data := make([]byte, 32+1400)
	data[0] = wgMsgTransport
	b := &countingBind{Bind: &fakeRecv{msg: data, ep: &udpEndpoint{}}, ctr: newWGCounters()}
	fns, _, _ := b.Open(0)
	eps := make([]conn.Endpoint, 32)
	if n := testing.AllocsPerRun(100, func() { _, _ = fns[0](bufs, sizes, eps) }); n != 0 {
		t.Errorf("bind receive: %v allocs", n)
	}
	if n := testing.AllocsPerRun(100, func() { _ = b.Send(bufs[:32], eps[0]) }); n != 0 {
		t.Errorf("bind send: %v allocs", n)
	}
}

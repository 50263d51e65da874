package wireguard

import (
	"net/netip"
	"testing"

	"golang.zx2c4.com/wireguard/conn"

	"tunnel-agent/dataplane"
	"tunnel-agent/dataplane/dptest"
)

// loopCapture hands out the same packet forever, without copying it
// through a channel, so that a benchmark measures wgTUN alone.
type loopCapture struct{ pkt []byte }

func (c *loopCapture) ReadBatch(bufs [][]byte, sizes []int) (int, error) {
	for i := range bufs {
		sizes[i] = copy(bufs[i], c.pkt)
	}
	return len(bufs), nil
}
func (c *loopCapture) Close() error { return nil }

// newBuffers returns n buffers of size bytes, carved from one allocation
// as the engine's are.
func newBuffers(n, size int) [][]byte {
	block := make([]byte, n*size)
	bufs := make([][]byte, n)
	for i := range bufs {
		bufs[i] = block[i*size : (i+1)*size : (i+1)*size]
	}
	return bufs
}

func benchTUN(b *testing.B, pkt []byte) *wgTUN { return loopTunnel(b, pkt).tun }

// loopTunnel is a tunnel (not running) whose capture returns pkt forever
// and whose injector discards.
func loopTunnel(tb testing.TB, pkt []byte) *Tunnel {
	tb.Helper()
	w, err := New(Config{PrivateKey: Key{1}, PeerKeys: []PeerKeys{{Public: Key{2}}},
		LAN: dataplane.Config{LocalPrefixes: wgPfx("192.168.111.0/24"), Peers: []dataplane.PeerConfig{{Name: "b", Prefixes: wgPfx("11.11.11.0/24")}}}},
		&loopCapture{pkt: pkt}, dptest.Discard{})
	if err != nil {
		tb.Fatal(err)
	}
	return w
}

// BenchmarkWireGuardTUNRead is the LAN→tunnel half of our part: capture,
// hop checks, TTL decrement; per packet (batches of 128).
func BenchmarkWireGuardTUNRead(b *testing.B) {
	pkt := dptest.EchoRequest(netip.MustParseAddr("192.168.111.2"), netip.MustParseAddr("11.11.11.100"), 1, 1, 1372)
	t := benchTUN(b, pkt)
	bufs, sizes := newBuffers(128, 65535), make([]int, 128)
	b.ReportAllocs()
	b.SetBytes(int64(len(pkt) * 128))
	for b.Loop() {
		// The loop capture refills the original TTL, so this never expires.
		if n, _ := t.Read(bufs, sizes, 16); n != 128 || sizes[0] != len(pkt) {
			b.Fatalf("read %d, size %d", n, sizes[0])
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*128), "ns/packet")
}

// BenchmarkWireGuardTUNWrite is the tunnel→LAN half: admission checks and
// injection of a batch of 128 decrypted packets.
func BenchmarkWireGuardTUNWrite(b *testing.B) {
	pkt := dptest.EchoRequest(netip.MustParseAddr("11.11.11.100"), netip.MustParseAddr("192.168.111.2"), 1, 1, 1372)
	t := benchTUN(b, nil)
	bufs := newBuffers(128, 16+len(pkt))
	for i := range bufs {
		copy(bufs[i][16:], pkt)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(pkt) * 128))
	for b.Loop() {
		if n, _ := t.Write(bufs, 16); n != 128 {
			b.Fatalf("wrote %d", n)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*128), "ns/packet")
}

// FuzzWireGuardTUN feeds arbitrary bytes to both halves of wgTUN and to
// the bind's receive wrapper: never a panic, whatever is handed on is a
// prefix of what came in, and every datagram is counted once.
func FuzzWireGuardTUN(f *testing.F) {
	f.Add(dptest.EchoRequest(netip.MustParseAddr("192.168.111.2"), netip.MustParseAddr("11.11.11.100"), 1, 1, 8))
	f.Add(dptest.EchoRequest(netip.MustParseAddr("11.11.11.100"), netip.MustParseAddr("192.168.111.2"), 1, 1, 8))
	f.Add([]byte{4, 0, 0, 0})
	f.Add([]byte{0x60})
	f.Add(append([]byte{1, 0, 0, 0}, make([]byte, 144)...)) // an initiation's shape
	f.Add(append([]byte{3, 0, 0, 0}, make([]byte, 60)...))  // a cookie reply's
	f.Fuzz(func(t *testing.T, pkt []byte) {
		lc := &loopCapture{pkt: pkt}
		w, err := New(Config{PrivateKey: Key{1}, PeerKeys: []PeerKeys{{Public: Key{2}}},
			LAN: dataplane.Config{LocalPrefixes: wgPfx("192.168.111.0/24"), ICMPSource: netip.MustParseAddr("192.168.111.1"),
				Peers: []dataplane.PeerConfig{{Name: "b", Prefixes: wgPfx("11.11.11.0/24")}}}}, lc, dptest.Discard{})
		if err != nil {
			t.Fatal(err)
		}
		bufs, sizes := newBuffers(2, 65535), make([]int, 2)
		n, _ := w.tun.Read(bufs, sizes, 16)
		for i := range n {
			if sizes[i] > len(pkt) {
				t.Fatalf("handed on %d bytes of %d", sizes[i], len(pkt))
			}
		}
		wb := [][]byte{append(make([]byte, 16), pkt...)}
		if n, err := w.tun.Write(wb, 16); n != 1 || err != nil {
			t.Fatalf("Write = %d, %v", n, err)
		}
		rb := &countingBind{Bind: &fakeRecv{msg: pkt, ep: &udpEndpoint{}}, ctr: w.ctr}
		fns, _, _ := rb.Open(0)
		for range 2 { // the second call settles the first
			n, _ := fns[0](bufs, sizes, make([]conn.Endpoint, len(bufs)))
			for i := range n {
				if sizes[i] != 0 && sizes[i] != len(pkt) {
					t.Fatalf("bind handed on %d bytes of %d", sizes[i], len(pkt))
				}
			}
		}
		st := w.WireGuardStats()
		if got := st.NotWireGuard + st.HandshakeReceived + st.TransportReceived; got != st.DatagramsReceived {
			t.Fatalf("received %d, outcomes sum to %d", st.DatagramsReceived, got)
		}
	})
}

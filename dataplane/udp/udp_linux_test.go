package udp

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"tunnel-agent/dataplane"
	"tunnel-agent/dataplane/afpacket"
	"tunnel-agent/dataplane/internal/mmsg"
	"tunnel-agent/dataplane/internal/vethtest"
	"tunnel-agent/internal/nstest"
	"tunnel-agent/internal/parked"
)

// Transport is the engine's production Transport.
var _ dataplane.Transport = (*Transport)(nil)

// listenUDPIn opens a transport with the default options in ns.
func listenUDPIn(t testing.TB, ns *nstest.NS, addr netip.AddrPort) *Transport {
	t.Helper()
	return listenWith(t, ns, addr, Options{})
}

// listenWith opens a transport with options opt in ns.
func listenWith(t testing.TB, ns *nstest.NS, addr netip.AddrPort, opt Options) *Transport {
	t.Helper()
	var tr *Transport
	if err := ns.Do(func() (err error) {
		tr, err = Listen(addr, opt)
		return err
	}); err != nil {
		t.Fatalf("Listen(%v, %+v) in %s: %v", addr, opt, ns.Name, err)
	}
	t.Cleanup(func() { tr.Close() })
	return tr
}

type datagram struct {
	from    netip.AddrPort
	payload string
}

// readDatagrams reads until count datagrams have arrived; tr is closed
// (failing the read) if that takes longer than d.
func readDatagrams(t testing.TB, tr *Transport, count, bufSize int, d time.Duration) []datagram {
	t.Helper()
	timer := time.AfterFunc(d, func() { tr.Close() })
	defer timer.Stop()
	bufs, sizes := vethtest.Bufs(16, bufSize)
	from := make([]netip.AddrPort, len(bufs))
	var got []datagram
	for len(got) < count {
		n, err := tr.ReadBatch(bufs, sizes, from)
		if err != nil {
			t.Fatalf("ReadBatch after %d of %d datagrams: %v", len(got), count, err)
		}
		for i := range n {
			got = append(got, datagram{from[i], string(bufs[i][:sizes[i]])})
		}
	}
	return got
}

func TestUDPTransportRoundTrip(t *testing.T) {
	topo := vethtest.New(t, 1500)
	ta := listenUDPIn(t, topo.A, netip.AddrPortFrom(topo.AddrA, 0))
	tb := listenUDPIn(t, topo.B, netip.AddrPortFrom(topo.AddrB, 0))
	if ta.LocalAddr().Addr() != topo.AddrA || ta.LocalAddr().Port() == 0 {
		t.Fatalf("LocalAddr() = %v", ta.LocalAddr())
	}

	for _, dir := range []struct {
		name     string
		from, to *Transport
	}{{"A->B", ta, tb}, {"B->A", tb, ta}} {
		t.Run(dir.name, func(t *testing.T) {
			var bufs [][]byte
			var to []netip.AddrPort
			for i := range 5 {
				bufs = append(bufs, []byte(fmt.Sprintf("%s #%d %s", dir.name, i, bytes.Repeat([]byte{'x'}, i*300))))
				to = append(to, dir.to.LocalAddr())
			}
			n, err := dir.from.WriteBatch(bufs, to)
			if n != len(bufs) || err != nil {
				t.Fatalf("WriteBatch = %d, %v", n, err)
			}
			got := readDatagrams(t, dir.to, len(bufs), 2048, 5*time.Second)
			for i, g := range got {
				if g.from != dir.from.LocalAddr() || g.payload != string(bufs[i]) {
					t.Fatalf("datagram %d: %q from %v, want %q from %v", i, g.payload, g.from, bufs[i], dir.from.LocalAddr())
				}
			}
		})
	}
}

func TestUDPTransportLargeBatch(t *testing.T) {
	topo := vethtest.New(t, 1500)
	ta := listenUDPIn(t, topo.A, netip.AddrPortFrom(topo.AddrA, 0))
	tb := listenUDPIn(t, topo.B, netip.AddrPortFrom(topo.AddrB, 0))
	// Resolve ARP first: until then the kernel queues only ~200 KiB of
	// skbs (unres_qlen_bytes), which a burst of a thousand would overflow.
	if n, err := ta.WriteBatch([][]byte{[]byte("warm-up")}, []netip.AddrPort{tb.LocalAddr()}); n != 1 {
		t.Fatalf("warm-up: %v", err)
	}
	readDatagrams(t, tb, 1, 64, 5*time.Second)

	const count = mmsg.MaxBatch + 100 // more than one sendmmsg
	bufs := make([][]byte, count)
	to := make([]netip.AddrPort, count)
	for i := range bufs {
		bufs[i] = binary.BigEndian.AppendUint32(nil, uint32(i))
		to[i] = tb.LocalAddr()
	}
	if n, err := ta.WriteBatch(bufs, to); n != count || err != nil {
		t.Fatalf("WriteBatch = %d, %v", n, err)
	}
	got := readDatagrams(t, tb, count, 64, 10*time.Second)
	for i, g := range got {
		if binary.BigEndian.Uint32([]byte(g.payload)) != uint32(i) {
			t.Fatalf("datagram %d out of order or lost", i)
		}
	}
}

func TestUDPTransportDropsOversized(t *testing.T) {
	topo := vethtest.New(t, 1500)
	ta := listenUDPIn(t, topo.A, netip.AddrPortFrom(topo.AddrA, 0))
	tb := listenUDPIn(t, topo.B, netip.AddrPortFrom(topo.AddrB, 0))
	bufs := [][]byte{make([]byte, 500), []byte("fits"), make([]byte, 101), []byte("fits too")}
	to := []netip.AddrPort{tb.LocalAddr(), tb.LocalAddr(), tb.LocalAddr(), tb.LocalAddr()}
	if n, err := ta.WriteBatch(bufs, to); n != 4 || err != nil {
		t.Fatalf("WriteBatch = %d, %v", n, err)
	}
	got := readDatagrams(t, tb, 2, 100, 5*time.Second)
	if got[0].payload != "fits" || got[1].payload != "fits too" {
		t.Fatalf("got %v, want the two that fit", got)
	}
	if tb.Truncated() != 2 {
		t.Fatalf("Truncated() = %d, want 2", tb.Truncated())
	}
}

// TestUDPTransportDFCleared captures the outer packets in B with an
// afpacket.Capture: they leave A with DF clear, and one larger than the MTU
// is fragmented by A's kernel and reassembled in B.
func TestUDPTransportDFCleared(t *testing.T) {
	topo := vethtest.New(t, 1500)
	ta := listenUDPIn(t, topo.A, netip.AddrPortFrom(topo.AddrA, 0))
	tb := listenUDPIn(t, topo.B, netip.AddrPortFrom(topo.AddrB, 0))
	var c *afpacket.Capture
	if err := topo.B.Do(func() (err error) {
		c, err = afpacket.Open(topo.IfB, []netip.Prefix{netip.PrefixFrom(topo.AddrB, 32)}, afpacket.Options{})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })

	big := bytes.Repeat([]byte("0123456789"), 300)
	n, err := ta.WriteBatch([][]byte{[]byte("small"), big}, []netip.AddrPort{tb.LocalAddr(), tb.LocalAddr()})
	if n != 2 || err != nil {
		t.Fatalf("WriteBatch = %d, %v", n, err)
	}
	got := readDatagrams(t, tb, 2, 4096, 5*time.Second)
	if got[0].payload != "small" || got[1].payload != string(big) {
		t.Fatal("datagrams not received intact")
	}
	// small, then the fragments of big (3000+8 bytes over 1480-byte pieces).
	var frames [][]byte
	bufs, sizes := vethtest.Bufs(8, afpacket.BufferSize)
	for len(frames) < 4 {
		n := vethtest.Read(t, c, bufs, sizes, 5*time.Second)
		for i := range n {
			frames = append(frames, bytes.Clone(bufs[i][:sizes[i]]))
		}
	}
	for i, f := range frames[:4] {
		flags := binary.BigEndian.Uint16(f[6:8])
		if flags&0x4000 != 0 {
			t.Errorf("outer packet %d has DF set (flags/offset %#04x)", i, flags)
		}
		if i > 0 && i < 3 && flags&0x2000 == 0 {
			t.Errorf("outer packet %d: want a non-final fragment, flags/offset %#04x", i, flags)
		}
	}
}

func TestUDPTransportCloseUnblocksRead(t *testing.T) {
	ns := nstest.New(t, "dpu")
	tr := listenUDPIn(t, ns, netip.MustParseAddrPort("127.0.0.1:0"))
	done := parked.Run(t, parked.IOWait, func() error {
		bufs, sizes := vethtest.Bufs(2, 100)
		_, err := tr.ReadBatch(bufs, sizes, make([]netip.AddrPort, 2))
		return err
	})
	tr.Close()
	select {
	case err := <-done:
		var oe *net.OpError
		if !errors.Is(err, net.ErrClosed) || !errors.As(err, &oe) || oe.Op != "read" {
			t.Fatalf("ReadBatch after Close: %v, want a read *net.OpError wrapping net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("ReadBatch still blocked 5s after Close")
	}
}

func TestUDPTransportWrongFamily(t *testing.T) {
	ns := nstest.New(t, "dpu")
	tr := listenUDPIn(t, ns, netip.MustParseAddrPort("127.0.0.1:0"))
	peer := listenUDPIn(t, ns, netip.MustParseAddrPort("127.0.0.1:0"))
	n, err := tr.WriteBatch([][]byte{[]byte("a"), []byte("b")},
		[]netip.AddrPort{peer.LocalAddr(), netip.MustParseAddrPort("[2001:db8::1]:9")})
	if n != 1 || !errors.Is(err, unix.EAFNOSUPPORT) {
		t.Fatalf("WriteBatch to an IPv6 peer on an IPv4 socket = %d, %v", n, err)
	}
	// An IPv4-mapped destination is fine on an IPv4 socket.
	mapped := netip.AddrPortFrom(netip.AddrFrom16(peer.LocalAddr().Addr().As16()), peer.LocalAddr().Port())
	if n, err := tr.WriteBatch([][]byte{[]byte("c")}, []netip.AddrPort{mapped}); n != 1 || err != nil {
		t.Fatalf("WriteBatch to %v = %d, %v", mapped, n, err)
	}
	got := readDatagrams(t, peer, 2, 100, 5*time.Second)
	if got[0].payload != "a" || got[1].payload != "c" || got[0].from != tr.LocalAddr() {
		t.Fatalf("got %v", got)
	}
}

func TestUDPTransportSocketOptions(t *testing.T) {
	ns := nstest.New(t, "dpu")
	tr := listenUDPIn(t, ns, netip.MustParseAddrPort("127.0.0.1:0"))
	var pmtud, rcv, snd int
	var gerr error
	tr.rc.Control(func(fd uintptr) {
		pmtud, gerr = unix.GetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_MTU_DISCOVER)
		rcv, _ = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF)
		snd, _ = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUF)
	})
	if gerr != nil || pmtud != unix.IP_PMTUDISC_DONT {
		t.Errorf("IP_MTU_DISCOVER = %d, %v; want IP_PMTUDISC_DONT", pmtud, gerr)
	}
	// As root the *FORCE options apply: the kernel reports double the size.
	if rcv < mmsg.SocketBuffer || snd < mmsg.SocketBuffer {
		t.Errorf("SO_RCVBUF = %d, SO_SNDBUF = %d; want at least %d", rcv, snd, mmsg.SocketBuffer)
	}
}

func TestUDPTransportZeroAllocs(t *testing.T) {
	topo := vethtest.New(t, 1500)
	ta := listenUDPIn(t, topo.A, netip.AddrPortFrom(topo.AddrA, 0))
	tb := listenUDPIn(t, topo.B, netip.AddrPortFrom(topo.AddrB, 0))
	vethtest.Watchdog(t, time.Minute, tb)
	const batch = 8
	out := make([][]byte, batch)
	to := make([]netip.AddrPort, batch)
	for i := range out {
		out[i] = make([]byte, 1000)
		to[i] = tb.LocalAddr()
	}
	bufs, sizes := vethtest.Bufs(batch, 2048)
	from := make([]netip.AddrPort, batch)
	roundTrip := func() {
		if _, err := ta.WriteBatch(out, to); err != nil {
			t.Fatal(err)
		}
		for got := 0; got < batch; {
			n, err := tb.ReadBatch(bufs, sizes, from)
			if err != nil {
				t.Fatal(err)
			}
			got += n
		}
	}
	roundTrip() // warm up (ARP)
	if allocs := testing.AllocsPerRun(100, roundTrip); allocs != 0 {
		t.Fatalf("WriteBatch+ReadBatch allocate %v times per batch, want 0", allocs)
	}
}

func BenchmarkUDPTransportBatch(b *testing.B) {
	topo := vethtest.New(b, 1500)
	ta := listenUDPIn(b, topo.A, netip.AddrPortFrom(topo.AddrA, 0))
	tb := listenUDPIn(b, topo.B, netip.AddrPortFrom(topo.AddrB, 0))
	vethtest.Watchdog(b, 5*time.Minute, tb)
	const batch = 32
	out := make([][]byte, batch)
	to := make([]netip.AddrPort, batch)
	for i := range out {
		out[i] = make([]byte, 1400)
		to[i] = tb.LocalAddr()
	}
	bufs, sizes := vethtest.Bufs(batch, 2048)
	from := make([]netip.AddrPort, batch)
	b.SetBytes(batch * 1400)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ta.WriteBatch(out, to); err != nil {
			b.Fatal(err)
		}
		for got := 0; got < batch; {
			n, err := tb.ReadBatch(bufs, sizes, from)
			if err != nil {
				b.Fatal(err)
			}
			got += n
		}
	}
}

func TestPathMTU(t *testing.T) {
	topo := vethtest.New(t, 1400)
	// A route with its own MTU attribute.
	linkA, err := topo.A.NL.LinkByName(topo.IfA)
	if err != nil {
		t.Fatal(err)
	}
	if err := topo.A.NL.RouteAdd(&netlink.Route{
		Dst: &net.IPNet{IP: net.IP{10, 77, 0, 0}, Mask: net.CIDRMask(16, 32)},
		Gw:  topo.AddrB.AsSlice(), LinkIndex: linkA.Attrs().Index, MTU: 1300,
	}); err != nil {
		t.Fatalf("route with MTU: %v", err)
	}
	for _, tc := range []struct {
		ns   *nstest.NS
		dst  string
		want int
	}{
		{topo.A, "198.18.0.2", 1400}, // on-link over the veth
		{topo.B, "198.19.1.5", 1400}, // via a gateway over the veth
		{topo.A, "10.77.1.1", 1300},  // route MTU attribute
		{topo.A, "::ffff:198.18.0.2", 1400},
	} {
		var mtu int
		err := tc.ns.Do(func() (err error) {
			mtu, err = PathMTU(netip.MustParseAddr(tc.dst))
			return err
		})
		if err != nil || mtu != tc.want {
			t.Errorf("PathMTU(%s) in %s = %d, %v; want %d", tc.dst, tc.ns.Name, mtu, err, tc.want)
		}
	}
	err = topo.A.Do(func() error {
		_, err := PathMTU(netip.MustParseAddr("10.255.255.1")) // no route
		return err
	})
	var oe *net.OpError
	if !errors.Is(err, syscall.ENETUNREACH) || !errors.As(err, &oe) {
		t.Fatalf("PathMTU without a route: %v, want a *net.OpError wrapping ENETUNREACH", err)
	}
}

package udp

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"tunnel-agent/dataplane/internal/vethtest"
	"tunnel-agent/internal/nstest"
)

// listenGRO opens a transport with UDP_GRO asked for or not.
func listenGRO(t testing.TB, ns *nstest.NS, addr netip.AddrPort, gro bool) *Transport {
	t.Helper()
	tr := listenWith(t, ns, addr, Options{DisableGRO: !gro})
	if st := tr.GROStats(); st.Enabled != gro {
		t.Fatalf("GROStats().Enabled = %v, want %v (kernel refused UDP_GRO?)", st.Enabled, gro)
	}
	return tr
}

// segmentCmsg is a UDP_SEGMENT control message for segments of size bytes.
func segmentCmsg(size uint16) []byte {
	return udpCmsg(unix.UDP_SEGMENT, binary.NativeEndian.AppendUint16(nil, size))
}

// groSend is one send of the GRO scenario: payload from one of two
// sockets, as a super-datagram cut every seg bytes when seg > 0.
type groSend struct {
	gso     bool // from the UDP_SEGMENT socket, else the plain one
	payload []byte
	seg     int
}

func groScenario() []groSend {
	return []groSend{
		{true, numbered("a", 40*1400+100), 1400},
		{false, []byte("plain-0"), 0},
		{false, nil, 0},
		{true, numbered("b", 3*500), 500}, // no shorter tail
		{false, numbered("c", 1200), 0},
		{false, nil, 0},
		{true, numbered("d", 20*1000+1), 1000},
		{false, []byte("plain-1"), 0},
	}
}

// groExpected is what the receiver must get from each sender, in order.
func groExpected(sends []groSend) (gso, plain []string) {
	for _, s := range sends {
		if !s.gso {
			plain = append(plain, string(s.payload))
			continue
		}
		for _, d := range refSplit(simMsg{data: s.payload, seg: s.seg}) {
			gso = append(gso, string(d.data))
		}
	}
	return gso, plain
}

// sendScenario sends sends from the two sockets to dst.
func sendScenario(t testing.TB, gsoConn, plainConn *net.UDPConn, dst netip.AddrPort, sends []groSend) {
	t.Helper()
	for i, s := range sends {
		var err error
		if s.gso {
			_, _, err = gsoConn.WriteMsgUDPAddrPort(s.payload, segmentCmsg(uint16(s.seg)), dst)
		} else {
			_, err = plainConn.WriteToUDPAddrPort(s.payload, dst)
		}
		if err != nil {
			t.Fatalf("send %d (%d bytes, segment %d): %v", i, len(s.payload), s.seg, err)
		}
	}
}

// readBatches reads until count datagrams arrived, batch buffers of size
// bytes at a time; tr is closed (failing the read) after d.
func readBatches(t testing.TB, tr *Transport, count, batch, size int, d time.Duration) []datagram {
	t.Helper()
	timer := time.AfterFunc(d, func() { tr.Close() })
	defer timer.Stop()
	bufs, sizes := vethtest.Bufs(batch, size)
	from := make([]netip.AddrPort, batch)
	var got []datagram
	for len(got) < count {
		n, err := tr.ReadBatch(bufs, sizes, from)
		if err != nil {
			t.Fatalf("ReadBatch after %d of %d datagrams: %v", len(got), count, err)
		}
		if n < 1 || n > batch {
			t.Fatalf("ReadBatch returned %d of %d", n, batch)
		}
		for i := range n {
			got = append(got, datagram{from[i], string(bufs[i][:sizes[i]])})
		}
	}
	return got
}

// checkSender checks that the datagrams of got from src are want, in order.
func checkSender(t *testing.T, got []datagram, src netip.AddrPort, want []string) {
	t.Helper()
	var mine []string
	for _, g := range got {
		if g.from == src {
			mine = append(mine, g.payload)
		}
	}
	if len(mine) != len(want) {
		t.Fatalf("%d datagrams from %v, want %d", len(mine), src, len(want))
	}
	for i := range want {
		if mine[i] != want[i] {
			t.Fatalf("datagram %d from %v: %d bytes %.12q, want %d bytes %.12q", i, src, len(mine[i]), mine[i], len(want[i]), want[i])
		}
	}
}

// fitting drops the payloads longer than size and returns how many.
func fitting(payloads []string, size int) (kept []string, dropped int) {
	for _, p := range payloads {
		if len(p) > size {
			dropped++
		} else {
			kept = append(kept, p)
		}
	}
	return kept, dropped
}

// groAddrs are the addresses of one family: receiver listen address,
// receiver address as the senders see it, and the senders' address.
type groAddrs struct {
	listen, dst netip.AddrPort
	src         netip.Addr
}

func groFamilies(t *testing.T, topo *vethtest.Topo) map[string]groAddrs {
	topo.AddIPv6(t)
	a6, b6 := vethtest.AddrA6, vethtest.AddrB6
	return map[string]groAddrs{
		"ipv4": {netip.AddrPortFrom(topo.AddrB, 0), netip.AddrPortFrom(topo.AddrB, 0), topo.AddrA},
		"ipv6": {netip.AddrPortFrom(b6, 0), netip.AddrPortFrom(b6, 0), a6},
		"dual": {netip.MustParseAddrPort("[::]:0"), netip.AddrPortFrom(topo.AddrB, 0), topo.AddrA},
	}
}

// TestUDPTransportGRO sends super-datagrams (UDP_SEGMENT) mixed with plain
// and zero-length datagrams from another socket across a veth, and reads
// them with a small batch: with UDP_GRO and without, into buffers that
// hold any message, into smaller ones, and into ones too small for some
// datagrams (dropped and counted). Every datagram must come in order with
// its size and sender.
func TestUDPTransportGRO(t *testing.T) {
	topo := vethtest.New(t, 1500)
	sends := groScenario()
	wantGSO, wantPlain := groExpected(sends)
	for fam, addrs := range groFamilies(t, topo) {
		for _, gro := range []bool{true, false} {
			for _, size := range []int{groBufSize, 2048, 1000} {
				t.Run(fmt.Sprintf("%s/gro=%v/buf%d", fam, gro, size), func(t *testing.T) {
					tr := listenGRO(t, topo.B, addrs.listen, gro)
					dst := netip.AddrPortFrom(addrs.dst.Addr(), tr.LocalAddr().Port())
					gsoConn := vethtest.UDPIn(t, topo.A, netip.AddrPortFrom(addrs.src, 0))
					plainConn := vethtest.UDPIn(t, topo.A, netip.AddrPortFrom(addrs.src, 0))
					sendScenario(t, gsoConn, plainConn, dst, []groSend{{false, []byte("warm-up"), 0}})
					readBatches(t, tr, 1, 8, size, 5*time.Second) // neighbour resolved
					sendScenario(t, gsoConn, plainConn, dst, sends)
					g, gDrop := fitting(wantGSO, size)
					p, pDrop := fitting(wantPlain, size)
					got := readBatches(t, tr, len(g)+len(p), 8, size, 5*time.Second)
					checkSender(t, got, gsoConn.LocalAddr().(*net.UDPAddr).AddrPort(), g)
					checkSender(t, got, plainConn.LocalAddr().(*net.UDPAddr).AddrPort(), p)
					if tr.Truncated() != uint64(gDrop+pDrop) {
						t.Errorf("Truncated() = %d, want %d", tr.Truncated(), gDrop+pDrop)
					}
					st := tr.GROStats()
					t.Logf("GROStats %+v", st)
					if gro && st.Messages < 3 {
						t.Errorf("%d coalesced messages, want the 3 super-datagrams to arrive whole", st.Messages)
					}
				})
			}
		}
	}
}

// TestUDPTransportGROPending: datagrams staged for the next ReadBatch are
// returned before anything read later, and without blocking.
func TestUDPTransportGROPending(t *testing.T) {
	topo := vethtest.New(t, 1500)
	tr := listenGRO(t, topo.B, netip.AddrPortFrom(topo.AddrB, 0), true)
	c := vethtest.UDPIn(t, topo.A, netip.AddrPortFrom(topo.AddrA, 0))
	sendScenario(t, c, c, tr.LocalAddr(), []groSend{{false, []byte("warm-up"), 0}})
	readBatches(t, tr, 1, 8, groBufSize, 5*time.Second)
	payload := numbered("p", 40*1400+100)
	sendScenario(t, c, c, tr.LocalAddr(), []groSend{{true, payload, 1400}})
	got := readBatches(t, tr, 8, 8, groBufSize, 5*time.Second)
	// 33 more are staged: five more batches come without a new datagram.
	for range 5 {
		got = append(got, readBatches(t, tr, 1, 8, groBufSize, time.Second)...)
	}
	if len(got) != 41 || got[40].payload != string(payload[40*1400:]) {
		t.Fatalf("got %d datagrams, want 41 ending with the tail", len(got))
	}
	if st := tr.GROStats(); st.Messages != 1 || st.Segments != 41 {
		t.Fatalf("GROStats %+v, want one message of 41 datagrams", st)
	}
}

func TestUDPTransportGROZeroAllocs(t *testing.T) {
	topo := vethtest.New(t, 1500)
	ta := listenUDPIn(t, topo.A, netip.AddrPortFrom(topo.AddrA, 0))
	tb := listenGRO(t, topo.B, netip.AddrPortFrom(topo.AddrB, 0), true)
	vethtest.Watchdog(t, time.Minute, tb)
	out, to := gsoRun(40, 1400, tb.LocalAddr())
	bufs, sizes := vethtest.Bufs(8, groBufSize)
	from := make([]netip.AddrPort, len(bufs))
	roundTrip := func() {
		if _, err := ta.WriteBatch(out, to); err != nil {
			t.Fatal(err)
		}
		for got := 0; got < len(out); {
			n, err := tb.ReadBatch(bufs, sizes, from)
			if err != nil {
				t.Fatal(err)
			}
			got += n
		}
	}
	roundTrip() // warm up (ARP, staging arrays)
	if allocs := testing.AllocsPerRun(100, roundTrip); allocs != 0 {
		t.Fatalf("WriteBatch+ReadBatch with GRO allocate %v times per batch, want 0", allocs)
	}
	if st := tb.GROStats(); st.Messages == 0 {
		t.Fatalf("no coalesced message: %+v", st)
	}
}

// gsoRun is n datagrams of size bytes to dst, as the engine hands them to
// WriteBatch (which sends them as UDP_SEGMENT super-datagrams).
func gsoRun(n, size int, dst netip.AddrPort) ([][]byte, []netip.AddrPort) {
	out := make([][]byte, n)
	to := make([]netip.AddrPort, n)
	for i := range out {
		out[i] = bytes.Repeat([]byte{byte(i)}, size)
		to[i] = dst
	}
	return out, to
}

// BenchmarkUDPTransportGRO: gateway A's transport sends batches of 64
// datagrams of 1400 bytes (UDP_SEGMENT super-datagrams) across a veth,
// gateway B's reads them in batches of 32, with UDP_GRO and without. ns/op
// is per batch of 64, both ends; rx-ns/datagram the time in ReadBatch.
func BenchmarkUDPTransportGRO(b *testing.B) {
	for _, gro := range []bool{true, false} {
		b.Run(fmt.Sprintf("gro=%v", gro), func(b *testing.B) {
			topo := vethtest.New(b, 1500)
			ta := listenUDPIn(b, topo.A, netip.AddrPortFrom(topo.AddrA, 0))
			tb := listenGRO(b, topo.B, netip.AddrPortFrom(topo.AddrB, 0), gro)
			vethtest.Watchdog(b, 5*time.Minute, tb)
			out, to := gsoRun(64, 1400, tb.LocalAddr())
			bufs, sizes := vethtest.Bufs(32, groBufSize)
			from := make([]netip.AddrPort, len(bufs))
			var rx time.Duration
			var reads int
			b.SetBytes(int64(len(out) * 1400))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := ta.WriteBatch(out, to); err != nil {
					b.Fatal(err)
				}
				start := time.Now()
				for got := 0; got < len(out); reads++ {
					n, err := tb.ReadBatch(bufs, sizes, from)
					if err != nil {
						b.Fatal(err)
					}
					got += n
				}
				rx += time.Since(start)
			}
			datagrams := float64(b.N * len(out))
			b.ReportMetric(float64(rx.Nanoseconds())/datagrams, "rx-ns/datagram")
			b.ReportMetric(float64(reads)/float64(b.N), "reads/op")
			b.ReportMetric(float64(tb.GROStats().Messages)/float64(b.N), "gro-msgs/op")
		})
	}
}

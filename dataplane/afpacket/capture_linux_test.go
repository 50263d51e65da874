package afpacket

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"tunnel-agent/dataplane"
	"tunnel-agent/dataplane/internal/vethtest"
	"tunnel-agent/dataplane/udp"
	"tunnel-agent/internal/nstest"
	"tunnel-agent/internal/parked"
)

// captureModes are the receive paths the capture tests run on.
var captureModes = []struct {
	name string
	opt  Options
}{{"socket", Options{}}, {"ring", Options{Ring: true}}}

// forCaptureModes runs test once per receive path.
func forCaptureModes(t *testing.T, test func(t *testing.T, opt Options)) {
	for _, m := range captureModes {
		t.Run(m.name, func(t *testing.T) { test(t, m.opt) })
	}
}

func openCaptureIn(t testing.TB, ns *nstest.NS, ifname string, prefixes ...string) *Capture {
	t.Helper()
	return openCaptureWithIn(t, ns, ifname, Options{}, prefixes...)
}

func openCaptureWithIn(t testing.TB, ns *nstest.NS, ifname string, opt Options, prefixes ...string) *Capture {
	t.Helper()
	var pfx []netip.Prefix
	for _, s := range prefixes {
		pfx = append(pfx, netip.MustParsePrefix(s))
	}
	var c *Capture
	err := ns.Do(func() (err error) {
		c, err = Open(ifname, pfx, opt)
		return err
	})
	if err != nil {
		t.Fatalf("Open(%s, %v, %+v): %v", ifname, pfx, opt, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// ipv4Dst returns the destination address of an IPv4 packet.
func ipv4Dst(pkt []byte) netip.Addr { return netip.AddrFrom4([4]byte(pkt[16:20])) }

// udpPayload returns the UDP payload of an IPv4/UDP packet.
func udpPayload(t testing.TB, pkt []byte) []byte {
	t.Helper()
	if len(pkt) < 28 || pkt[0]>>4 != 4 || pkt[9] != unix.IPPROTO_UDP {
		t.Fatalf("not an IPv4/UDP packet: % x", pkt[:min(len(pkt), 40)])
	}
	ihl := int(pkt[0]&0x0f) * 4
	return pkt[ihl+8:]
}

func TestCaptureInboundMatchedOnly(t *testing.T) { forCaptureModes(t, testCaptureInboundMatchedOnly) }

func testCaptureInboundMatchedOnly(t *testing.T, opt Options) {
	topo := vethtest.New(t, 1500)
	c := openCaptureWithIn(t, topo.A, topo.IfA, opt, "198.19.1.0/24", "198.19.7.7/32")
	sender := vethtest.UDPIn(t, topo.B, netip.AddrPortFrom(topo.AddrB, 0))

	// Unmatched first: if the filter let it through it would be read first.
	vethtest.SendTo(t, sender, "198.19.2.5:4000", []byte("unmatched"))
	vethtest.SendTo(t, sender, "198.19.1.5:4000", []byte("matched-1"))
	vethtest.SendTo(t, sender, "198.19.3.3:4000", []byte("unmatched"))
	vethtest.SendTo(t, sender, "198.19.7.7:4000", []byte("matched-2"))

	bufs, sizes := vethtest.Bufs(8, BufferSize)
	var got []string
	deadline := time.Now().Add(5 * time.Second)
	for len(got) < 2 && time.Now().Before(deadline) {
		n := vethtest.Read(t, c, bufs, sizes, time.Until(deadline))
		for i := range n {
			pkt := bufs[i][:sizes[i]]
			if int(binary.BigEndian.Uint16(pkt[2:4])) != sizes[i] {
				t.Errorf("size %d != IPv4 total length %d", sizes[i], binary.BigEndian.Uint16(pkt[2:4]))
			}
			got = append(got, ipv4Dst(pkt).String()+" "+string(udpPayload(t, pkt)))
		}
	}
	want := []string{"198.19.1.5 matched-1", "198.19.7.7 matched-2"}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("captured %q, want %q", got, want)
	}
	if c.Truncated() != 0 {
		t.Errorf("Truncated() = %d, want 0", c.Truncated())
	}
}

func TestCaptureIgnoresOutgoing(t *testing.T) { forCaptureModes(t, testCaptureIgnoresOutgoing) }

func testCaptureIgnoresOutgoing(t *testing.T, opt Options) {
	topo := vethtest.New(t, 1500)
	// 198.18.0.2/32 (B) matches the packets A sends out on veth-a.
	c := openCaptureWithIn(t, topo.A, topo.IfA, opt, "198.18.0.2/32", "198.19.1.0/24")
	fromA := vethtest.UDPIn(t, topo.A, netip.AddrPortFrom(topo.AddrA, 0))
	inB := vethtest.UDPIn(t, topo.B, netip.AddrPortFrom(topo.AddrB, 5000))

	vethtest.SendTo(t, fromA, "198.18.0.2:5000", []byte("outgoing"))
	inB.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 100)
	if n, err := inB.Read(buf); err != nil || string(buf[:n]) != "outgoing" {
		t.Fatalf("B did not receive A's packet (so it did not leave veth-a): %q, %v", buf[:n], err)
	}
	// Now an inbound marker: it must be the first thing captured.
	vethtest.SendTo(t, inB, "198.19.1.9:4000", []byte("inbound"))
	bufs, sizes := vethtest.Bufs(4, BufferSize)
	n := vethtest.Read(t, c, bufs, sizes, 5*time.Second)
	if p := udpPayload(t, bufs[0][:sizes[0]]); string(p) != "inbound" || n != 1 {
		t.Fatalf("first capture = %q (n=%d), want only the inbound marker", p, n)
	}
}

func TestCaptureJumboWholeAndTruncated(t *testing.T) {
	forCaptureModes(t, testCaptureJumboWholeAndTruncated)
}

func testCaptureJumboWholeAndTruncated(t *testing.T, opt Options) {
	topo := vethtest.New(t, 9000)
	c := openCaptureWithIn(t, topo.A, topo.IfA, opt, "198.19.0.0/16")
	sender := vethtest.UDPIn(t, topo.B, netip.AddrPortFrom(topo.AddrB, 0))

	jumbo := make([]byte, 9000-28)
	for i := range jumbo {
		jumbo[i] = byte(i * 7)
	}
	vethtest.SendTo(t, sender, "198.19.1.1:4000", jumbo)
	bufs, sizes := vethtest.Bufs(4, BufferSize)
	n := vethtest.Read(t, c, bufs, sizes, 5*time.Second)
	if n != 1 || sizes[0] != 9000 {
		t.Fatalf("captured n=%d size=%d, want one 9000-byte packet", n, sizes[0])
	}
	pkt := bufs[0][:sizes[0]]
	if binary.BigEndian.Uint16(pkt[6:8])&0x3fff != 0 {
		t.Fatalf("jumbo arrived fragmented: flags/offset %#x", binary.BigEndian.Uint16(pkt[6:8]))
	}
	if !bytes.Equal(udpPayload(t, pkt), jumbo) {
		t.Fatal("jumbo payload differs")
	}

	// Buffers of 2048 bytes: the 9000-byte frame is dropped and counted,
	// the small one behind it is returned (possibly in the same batch,
	// moved down into bufs[0]).
	small, ssizes := vethtest.Bufs(4, 2048)
	vethtest.SendTo(t, sender, "198.19.1.1:4000", jumbo)
	vethtest.SendTo(t, sender, "198.19.1.1:4000", []byte("small"))
	n = vethtest.Read(t, c, small, ssizes, 5*time.Second)
	if n != 1 || string(udpPayload(t, small[0][:ssizes[0]])) != "small" {
		t.Fatalf("after truncation: n=%d first=%q, want the small packet", n, small[0][:ssizes[0]])
	}
	if got := c.Truncated(); got != 1 {
		t.Fatalf("Truncated() = %d, want 1", got)
	}
}

func TestCaptureBatch(t *testing.T) { forCaptureModes(t, testCaptureBatch) }

func testCaptureBatch(t *testing.T, opt Options) {
	topo := vethtest.New(t, 1500)
	c := openCaptureWithIn(t, topo.A, topo.IfA, opt, "198.19.0.0/16")
	sender := vethtest.UDPIn(t, topo.B, netip.AddrPortFrom(topo.AddrB, 0))
	const count = 50
	for i := range count {
		vethtest.SendTo(t, sender, "198.19.1.1:4000", []byte{byte(i)})
	}
	bufs, sizes := vethtest.Bufs(16, BufferSize)
	next := 0
	deadline := time.Now().Add(5 * time.Second)
	for next < count && time.Now().Before(deadline) {
		n := vethtest.Read(t, c, bufs, sizes, time.Until(deadline))
		for i := range n {
			p := udpPayload(t, bufs[i][:sizes[i]])
			if len(p) != 1 || int(p[0]) != next {
				t.Fatalf("packet %d: payload %v", next, p)
			}
			next++
		}
	}
	if next != count {
		t.Fatalf("captured %d of %d packets", next, count)
	}
}

func TestCaptureCloseUnblocksRead(t *testing.T) { forCaptureModes(t, testCaptureCloseUnblocksRead) }

func testCaptureCloseUnblocksRead(t *testing.T, opt Options) {
	topo := vethtest.New(t, 1500)
	c := openCaptureWithIn(t, topo.A, topo.IfA, opt, "198.19.0.0/16")
	done := parked.Run(t, parked.IOWait, func() error {
		bufs, sizes := vethtest.Bufs(2, BufferSize)
		_, err := c.ReadBatch(bufs, sizes)
		return err
	})
	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	select {
	case err := <-done:
		var oe *net.OpError
		if !errors.Is(err, net.ErrClosed) || !errors.As(err, &oe) || oe.Op != "read" {
			t.Fatalf("ReadBatch after Close: %v, want a read *net.OpError wrapping net.ErrClosed", err)
		}
		if oe.Addr == nil || oe.Addr.String() != topo.IfA {
			t.Errorf("error does not name the interface: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("ReadBatch still blocked 5s after Close")
	}
	bufs, sizes := vethtest.Bufs(1, 64)
	if _, err := c.ReadBatch(bufs, sizes); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("ReadBatch on closed capture: %v", err)
	}
}

func TestCaptureWakeUnblocksRead(t *testing.T) { forCaptureModes(t, testCaptureWakeUnblocksRead) }

// testCaptureWakeUnblocksRead: Wake makes a blocked ReadBatch return (0,
// nil) (and a Wake before the read, the next one); the capture then reads
// packets as before, blocking again when there are none.
func testCaptureWakeUnblocksRead(t *testing.T, opt Options) {
	topo := vethtest.New(t, 1500)
	c := openCaptureWithIn(t, topo.A, topo.IfA, opt, "198.19.0.0/16")
	var _ dataplane.WakeableCapture = c
	type result struct {
		n   int
		err error
	}
	readBatch := func() result {
		bufs, sizes := vethtest.Bufs(2, BufferSize)
		n, err := c.ReadBatch(bufs, sizes)
		return result{n, err}
	}
	read := func() <-chan result {
		done := make(chan result, 1)
		go func() { done <- readBatch() }()
		return done
	}
	wait := func(done <-chan result, what string) result {
		t.Helper()
		select {
		case r := <-done:
			return r
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: ReadBatch still blocked after 5s", what)
			return result{}
		}
	}
	done := parked.Run(t, parked.IOWait, readBatch)
	c.Wake()
	if r := wait(done, "Wake during the read"); r.n != 0 || r.err != nil {
		t.Fatalf("woken ReadBatch returned %d, %v; want 0, nil", r.n, r.err)
	}
	c.Wake()
	if r := wait(read(), "Wake before the read"); r.n != 0 || r.err != nil {
		t.Fatalf("ReadBatch after a Wake returned %d, %v; want 0, nil", r.n, r.err)
	}
	done = read()
	sender := vethtest.UDPIn(t, topo.B, netip.AddrPortFrom(topo.AddrB, 0))
	vethtest.SendTo(t, sender, "198.19.1.5:4000", []byte("after the wakes"))
	if r := wait(done, "a packet after the wakes"); r.n != 1 || r.err != nil {
		t.Fatalf("ReadBatch returned %d, %v; want the packet", r.n, r.err)
	}
}

func TestCaptureOpenErrors(t *testing.T) {
	ns := nstest.New(t, "dpe")
	err := ns.Do(func() error {
		_, err := Open("no-such-if", []netip.Prefix{vethtest.Remote}, Options{})
		return err
	})
	var oe *net.OpError
	if !errors.As(err, &oe) || oe.Op != "listen" || oe.Addr.String() != "no-such-if" {
		t.Fatalf("Open(no-such-if) = %v, want a listen *net.OpError naming the interface", err)
	}
	err = ns.Do(func() error {
		_, err := Open("lo", []netip.Prefix{netip.MustParsePrefix("::ffff:10.0.0.0/104")}, Options{})
		return err
	})
	if err == nil {
		t.Fatal("Open with an IPv4-mapped prefix succeeded; want an error")
	}
}

// TestCaptureZeroAllocs checks that a steady-state capture read allocates
// nothing (the sender, a plain UDP socket, is alloc-free too).
func TestCaptureZeroAllocs(t *testing.T) { forCaptureModes(t, testCaptureZeroAllocs) }

func testCaptureZeroAllocs(t *testing.T, opt Options) {
	topo := vethtest.New(t, 1500)
	c := openCaptureWithIn(t, topo.A, topo.IfA, opt, "198.19.0.0/16")
	sender := vethtest.UDPIn(t, topo.B, netip.AddrPortFrom(topo.AddrB, 0))
	dst := netip.MustParseAddrPort("198.19.1.1:4000")
	payload := make([]byte, 100)
	bufs, sizes := vethtest.Bufs(8, BufferSize)
	vethtest.Watchdog(t, time.Minute, c)
	// Warm up (ARP, buffers).
	sender.WriteToUDPAddrPort(payload, dst)
	vethtest.Read(t, c, bufs, sizes, 5*time.Second)
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := sender.WriteToUDPAddrPort(payload, dst); err != nil {
			t.Fatal(err)
		}
		if _, err := c.ReadBatch(bufs, sizes); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("send+capture allocates %v times per packet, want 0", allocs)
	}
}

func BenchmarkCaptureReadBatch(b *testing.B) {
	topo := vethtest.New(b, 1500)
	c := openCaptureIn(b, topo.A, topo.IfA, "198.19.0.0/16")
	// One datagram per packet: with GSO the 32 would cross the veth as one
	// super-packet, and the capture would see one 45 KB frame.
	var tr *udp.Transport
	if err := topo.B.Do(func() (err error) {
		tr, err = udp.Listen(netip.AddrPortFrom(topo.AddrB, 0), udp.Options{DisableGSO: true})
		return err
	}); err != nil {
		b.Fatal(err)
	}
	defer tr.Close()
	vethtest.Watchdog(b, 5*time.Minute, c)
	const batch = 32
	out := make([][]byte, batch)
	to := make([]netip.AddrPort, batch)
	for i := range out {
		out[i] = make([]byte, 1400)
		to[i] = netip.MustParseAddrPort("198.19.1.1:4000")
	}
	bufs, sizes := vethtest.Bufs(batch, BufferSize)
	b.SetBytes(batch * (1400 + 28))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := tr.WriteBatch(out, to); err != nil {
			b.Fatal(err)
		}
		for got := 0; got < batch; {
			n, err := c.ReadBatch(bufs, sizes)
			if err != nil {
				b.Fatal(err)
			}
			got += n
		}
	}
}

// TestReadErrorInterfaceDown: a read that fails with ENETDOWN tells the
// engine the interface went down (dataplane.ErrInterfaceDown) and keeps
// the errno; after Close a read error is net.ErrClosed.
func TestReadErrorInterfaceDown(t *testing.T) {
	c := &Capture{ifname: "lan0"}
	err := c.readError(os.NewSyscallError("recvmmsg", unix.ENETDOWN))
	if !errors.Is(err, dataplane.ErrInterfaceDown) || !errors.Is(err, unix.ENETDOWN) {
		t.Errorf("ENETDOWN: %v does not wrap both ErrInterfaceDown and ENETDOWN", err)
	}
	if err := c.readError(os.NewSyscallError("recvmmsg", unix.ENOBUFS)); errors.Is(err, dataplane.ErrInterfaceDown) {
		t.Errorf("ENOBUFS: %v wraps ErrInterfaceDown", err)
	}
	c.closed.Store(true)
	if err := c.readError(os.NewSyscallError("recvmmsg", unix.ENETDOWN)); !errors.Is(err, net.ErrClosed) || errors.Is(err, dataplane.ErrInterfaceDown) {
		t.Errorf("after Close: %v, want net.ErrClosed only", err)
	}
}

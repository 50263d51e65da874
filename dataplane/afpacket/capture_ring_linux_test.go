package afpacket

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"tunnel-agent/dataplane/internal/vethtest"
)

// smallRing is the smallest ring: two 128 KiB blocks, about 860 frames of
// 200 bytes, so that a test wraps around it many times.
var smallRing = Options{Ring: true, RingBlockSize: MinRingBlockSize, RingBlocks: 2}

// TestRingWholeInOrderAcrossWrap sends many more frames than the ring
// holds and reads them in batches much smaller than a block (so batches
// end mid-block): every frame must arrive whole and in order.
//
// The sender sends bursts smaller than a block and waits for the reader
// to take each whole burst, so that the ring never fills. Even so, every
// retire timeout hands over a block however little it holds, so a slow
// sender spreads a burst over many blocks, and a reader that falls behind
// by as many timeouts as there are blocks finds the ring full
// (TestRingKernelDrops): 16 blocks leave room for a scheduler hiccup.
func TestRingWholeInOrderAcrossWrap(t *testing.T) {
	topo := vethtest.New(t, 1500)
	opt := smallRing
	opt.RingBlocks = 16 // 16 × 442 frames of 200 bytes when full
	c := openCaptureWithIn(t, topo.A, topo.IfA, opt, "198.19.0.0/16")
	sender := vethtest.UDPIn(t, topo.B, netip.AddrPortFrom(topo.AddrB, 0))
	vethtest.Watchdog(t, 30*time.Second, c)
	const count, burst, payloadLen = 10000, 250, 172 // 200-byte IPv4 packets
	var received atomic.Int64
	done := make(chan error, 1)
	go func() { done <- sendBursts(sender, count, burst, payloadLen, &received) }()

	bufs, sizes := vethtest.Bufs(7, BufferSize)
	for next := 0; next < count; {
		n, err := c.ReadBatch(bufs, sizes)
		if err != nil {
			t.Fatalf("after %d frames: %v (kernel %+v)", next, err, c.KernelStats())
		}
		for i := range n {
			p := udpPayload(t, bufs[i][:sizes[i]])
			if len(p) != payloadLen || int(binary.BigEndian.Uint32(p)) != next || p[payloadLen-1] != byte(next) {
				t.Fatalf("frame %d: got %d bytes, sequence %d (kernel %+v)", next, len(p), binary.BigEndian.Uint32(p), c.KernelStats())
			}
			next++
		}
		received.Store(int64(next))
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if st := c.KernelStats(); st.Drops != 0 || st.Packets != count {
		t.Errorf("kernel stats %+v, want %d packets and no drops", st, count)
	}
	if c.Truncated() != 0 || c.rx.w.bad != 0 {
		t.Errorf("truncated %d, bad blocks %d", c.Truncated(), c.rx.w.bad)
	}
}

// sendBursts sends count numbered datagrams to 198.19.1.1 in bursts,
// each once received has caught up with the previous one, within 20
// seconds.
func sendBursts(conn *net.UDPConn, count, burst, size int, received *atomic.Int64) error {
	payload := make([]byte, size)
	dst := netip.MustParseAddrPort("198.19.1.1:4000")
	deadline := time.Now().Add(20 * time.Second)
	for i := 0; i < count; i++ {
		for i%burst == 0 && received.Load() < int64(i) {
			if time.Now().After(deadline) {
				return errors.New("reader stalled")
			}
			time.Sleep(100 * time.Microsecond)
		}
		binary.BigEndian.PutUint32(payload, uint32(i))
		payload[size-1] = byte(i)
		if _, err := conn.WriteToUDPAddrPort(payload, dst); err != nil {
			return err
		}
	}
	return nil
}

// TestRingKernelDrops fills a ring nobody reads: the kernel drops and
// freezes, KernelStats says so, and the frames kept are still returned
// whole and in order.
func TestRingKernelDrops(t *testing.T) {
	topo := vethtest.New(t, 1500)
	c := openCaptureWithIn(t, topo.A, topo.IfA, smallRing, "198.19.0.0/16")
	sender := vethtest.UDPIn(t, topo.B, netip.AddrPortFrom(topo.AddrB, 0))
	payload := make([]byte, 1372)
	for i := range 400 { // 400 × 1.5 KB: three times the ring
		binary.BigEndian.PutUint32(payload, uint32(i))
		vethtest.SendTo(t, sender, "198.19.1.1:4000", payload)
	}
	st := waitKernelPackets(t, c, KernelStats{}, 400)
	if st.Drops == 0 || st.QueueFreezes == 0 || st.Packets != 400 {
		t.Fatalf("kernel stats %+v: want 400 packets, drops and freezes", st)
	}
	bufs, sizes := vethtest.Bufs(64, BufferSize)
	got := 0
	for last := -1; got < int(st.Packets-st.Drops); {
		n := vethtest.Read(t, c, bufs, sizes, 5*time.Second)
		for i := range n {
			seq := int(binary.BigEndian.Uint32(udpPayload(t, bufs[i][:sizes[i]])))
			if seq <= last {
				t.Fatalf("frame %d after %d", seq, last)
			}
			last = seq
		}
		got += n
	}
	if again := c.KernelStats(); again.Packets != st.Packets || again.Drops != st.Drops {
		t.Errorf("stats changed without traffic: %+v then %+v", st, again)
	}
}

// waitKernelPackets waits until the kernel has counted n more packets
// (kept or dropped) on c than in before, the softirq that delivers them
// running later than the sends on a loaded machine; it returns the
// counters then.
func waitKernelPackets(t *testing.T, c *Capture, before KernelStats, n uint64) KernelStats {
	t.Helper()
	st := c.KernelStats()
	for deadline := time.Now().Add(5 * time.Second); st.Packets-before.Packets < n; st = c.KernelStats() {
		if time.Now().After(deadline) {
			t.Fatalf("kernel stats %+v after 5s, want %d packets more than %+v", st, n, before)
		}
		time.Sleep(time.Millisecond)
	}
	return st
}

// TestCaptureSetPrefixes swaps the filter of an open capture.
func TestCaptureSetPrefixes(t *testing.T) { forCaptureModes(t, testCaptureSetPrefixes) }

func testCaptureSetPrefixes(t *testing.T, opt Options) {
	topo := vethtest.New(t, 1500)
	c := openCaptureWithIn(t, topo.A, topo.IfA, opt, "198.19.1.0/24")
	sender := vethtest.UDPIn(t, topo.B, netip.AddrPortFrom(topo.AddrB, 0))
	bufs, sizes := vethtest.Bufs(4, BufferSize)
	for _, want := range []string{"198.19.1.1", "198.19.2.1"} {
		vethtest.SendTo(t, sender, "198.19.2.1:4000", []byte("two"))
		vethtest.SendTo(t, sender, "198.19.1.1:4000", []byte("one"))
		vethtest.SendTo(t, sender, "198.19.3.1:4000", []byte("three"))
		n := vethtest.Read(t, c, bufs, sizes, 5*time.Second)
		if got := ipv4Dst(bufs[0][:sizes[0]]).String(); n != 1 || got != want {
			t.Fatalf("captured %d frames, first to %s; want one to %s", n, got, want)
		}
		if err := c.SetPrefixes([]netip.Prefix{netip.MustParsePrefix("198.19.2.0/24")}); err != nil {
			t.Fatalf("SetPrefixes: %v", err)
		}
	}
}

// TestRingCloseWhileReading closes a ring capture while a reader is busy
// with a flood: the reader must get net.ErrClosed, never touch the
// unmapped ring (a crash), and later reads must fail the same way.
func TestRingCloseWhileReading(t *testing.T) {
	topo := vethtest.New(t, 1500)
	sender := vethtest.UDPIn(t, topo.B, netip.AddrPortFrom(topo.AddrB, 0))
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() { flood(sender, stop) })
	defer func() { close(stop); wg.Wait() }()
	for round := range 20 {
		c := openCaptureWithIn(t, topo.A, topo.IfA, smallRing, "198.19.0.0/16")
		errc := make(chan error, 1)
		go func() {
			bufs, sizes := vethtest.Bufs(8, BufferSize)
			for {
				if _, err := c.ReadBatch(bufs, sizes); err != nil {
					errc <- err
					return
				}
			}
		}()
		time.Sleep(time.Duration(round%5) * time.Millisecond)
		if err := c.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		select {
		case err := <-errc:
			if !errors.Is(err, net.ErrClosed) {
				t.Fatalf("round %d: reader got %v, want net.ErrClosed", round, err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("round %d: reader still running 5s after Close", round)
		}
		bufs, sizes := vethtest.Bufs(1, BufferSize)
		if _, err := c.ReadBatch(bufs, sizes); !errors.Is(err, net.ErrClosed) {
			t.Fatalf("ReadBatch after Close: %v", err)
		}
	}
}

// flood sends small datagrams to 198.19.1.1 until stop is closed (at most
// 30 seconds).
func flood(conn *net.UDPConn, stop <-chan struct{}) {
	dst := netip.MustParseAddrPort("198.19.1.1:4000")
	payload := make([]byte, 64)
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); {
		select {
		case <-stop:
			return
		default:
		}
		conn.WriteToUDPAddrPort(payload, dst)
	}
}

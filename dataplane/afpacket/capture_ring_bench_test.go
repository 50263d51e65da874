package afpacket

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"tunnel-agent/dataplane/internal/header"
	"tunnel-agent/dataplane/internal/vethtest"
)

// benchModes are the receive paths and ring geometries the capture
// benchmarks compare: the socket, the default ring (8 MiB) and two
// smaller ones.
var benchModes = []struct {
	name string
	opt  Options
}{
	{"socket", Options{}},
	{"ring", Options{Ring: true}},
	{"ring-256Kx16", Options{Ring: true, RingBlockSize: 256 << 10, RingBlocks: 16}},
	{"ring-128Kx16", Options{Ring: true, RingBlockSize: 128 << 10, RingBlocks: 16}},
}

// BenchmarkCaptureDrained is the reader's cost per packet: each round
// queues a chunk of packets with no reader running (untimed), then times
// ReadBatch taking them all. One op is one packet.
func BenchmarkCaptureDrained(b *testing.B) {
	for _, size := range []int{64, 1400} {
		for _, m := range benchModes {
			b.Run(fmt.Sprintf("%s/%dB", m.name, size), func(b *testing.B) { benchDrained(b, m.opt, size) })
		}
	}
}

func benchDrained(b *testing.B, opt Options, size int) {
	topo := vethtest.New(b, 1500)
	c := openCaptureWithIn(b, topo.A, topo.IfA, opt, "198.19.0.0/16")
	s := newRawSender(b, topo, size)
	vethtest.Watchdog(b, 5*time.Minute, c)
	bufs, sizes := vethtest.Bufs(64, BufferSize)
	const chunk = 512 // fits every ring of benchModes and the socket buffer
	b.ReportAllocs()
	b.ResetTimer()
	for done := 0; done < b.N; {
		b.StopTimer()
		want := s.queue(b, c, min(chunk, b.N-done))
		if want == 0 {
			b.Fatal("no packet reached the capture")
		}
		b.StartTimer()
		for got := 0; got < want; {
			n, err := c.ReadBatch(bufs, sizes)
			if err != nil {
				b.Fatal(err)
			}
			got += n
		}
		done += want
	}
}

// BenchmarkCaptureStream reads while a sender goroutine floods the veth
// (both share the machine's CPUs): ns/op is wall time per packet read;
// drop% is the share of packets the kernel dropped because the capture
// did not keep up.
func BenchmarkCaptureStream(b *testing.B) {
	for _, size := range []int{64, 1400} {
		for _, m := range benchModes {
			b.Run(fmt.Sprintf("%s/%dB", m.name, size), func(b *testing.B) { benchStream(b, m.opt, size) })
		}
	}
}

func benchStream(b *testing.B, opt Options, size int) {
	topo := vethtest.New(b, 1500)
	c := openCaptureWithIn(b, topo.A, topo.IfA, opt, "198.19.0.0/16")
	s := newRawSender(b, topo, size)
	vethtest.Watchdog(b, 5*time.Minute, c)
	bufs, sizes := vethtest.Bufs(64, BufferSize)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() { s.flood(stop) })
	defer func() { close(stop); wg.Wait() }()
	before := c.KernelStats()
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for got := 0; got < b.N; {
		n, err := c.ReadBatch(bufs, sizes)
		if err != nil {
			b.Fatal(err)
		}
		got += n
	}
	b.StopTimer()
	st := c.KernelStats()
	if p := st.Packets - before.Packets; p > 0 {
		b.ReportMetric(100*float64(st.Drops-before.Drops)/float64(p), "drop%")
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "pkts/s")
}

// rawSender writes one IPv4/UDP packet of a given size to 198.19.1.1 out
// of veth-b with an AF_PACKET socket (no UDP stack, no qdisc), the
// cheapest sender there is.
type rawSender struct {
	fd  int
	sa  *unix.SockaddrLinklayer
	pkt []byte
}

func newRawSender(b testing.TB, topo *vethtest.Topo, size int) *rawSender {
	linkA, err := topo.A.NL.LinkByName(topo.IfA)
	if err != nil {
		b.Fatal(err)
	}
	linkB, err := topo.B.NL.LinkByName(topo.IfB)
	if err != nil {
		b.Fatal(err)
	}
	s := &rawSender{pkt: benchUDPPacket(size)}
	s.sa = &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_IP), Ifindex: linkB.Attrs().Index, Halen: 6}
	copy(s.sa.Addr[:], linkA.Attrs().HardwareAddr)
	err = topo.B.Do(func() (err error) {
		s.fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err == nil {
			err = unix.SetsockoptInt(s.fd, unix.SOL_PACKET, unix.PACKET_QDISC_BYPASS, 1)
		}
		return err
	})
	if err != nil {
		b.Fatalf("raw sender in %s: %v", topo.B.Name, err)
	}
	b.Cleanup(func() { unix.Close(s.fd) })
	return s
}

// benchUDPPacket is an IPv4/UDP packet of size bytes from 198.18.0.2 to
// 198.19.1.1 with valid checksums.
func benchUDPPacket(size int) []byte {
	pkt := make([]byte, size)
	pkt[0], pkt[8], pkt[9] = 0x45, 64, unix.IPPROTO_UDP
	binary.BigEndian.PutUint16(pkt[2:], uint16(size))
	copy(pkt[12:], net.IPv4(198, 18, 0, 2).To4())
	copy(pkt[16:], net.IPv4(198, 19, 1, 1).To4())
	binary.BigEndian.PutUint16(pkt[10:], header.Checksum(pkt[:20], 0))
	binary.BigEndian.PutUint16(pkt[20:], 40000)
	binary.BigEndian.PutUint16(pkt[22:], 4000)
	binary.BigEndian.PutUint16(pkt[24:], uint16(size-20))
	return pkt
}

// queue sends n packets and waits for them to be queued for c (the ring's
// last block is handed over by its retire timer); it returns how many
// the kernel kept.
func (s *rawSender) queue(b *testing.B, c *Capture, n int) int {
	before := c.KernelStats()
	for range n {
		if err := unix.Sendto(s.fd, s.pkt, 0, s.sa); err != nil {
			b.Fatalf("send: %v", err)
		}
	}
	time.Sleep(10 * time.Millisecond)
	st := c.KernelStats()
	return int((st.Packets - before.Packets) - (st.Drops - before.Drops))
}

// flood sends until stop is closed, for at most 5 minutes.
func (s *rawSender) flood(stop <-chan struct{}) {
	for deadline := time.Now().Add(5 * time.Minute); time.Now().Before(deadline); {
		select {
		case <-stop:
			return
		default:
		}
		for range 64 {
			_ = unix.Sendto(s.fd, s.pkt, 0, s.sa)
		}
	}
}

// BenchmarkCaptureLatency is the time from sending one packet to
// ReadBatch returning it, with one packet in flight at a time (a ping):
// the ring hands a block over when it is full or when its retire timer
// fires, so a lone packet waits for the timer.
func BenchmarkCaptureLatency(b *testing.B) {
	for _, m := range captureModes {
		b.Run(m.name, func(b *testing.B) {
			topo := vethtest.New(b, 1500)
			c := openCaptureWithIn(b, topo.A, topo.IfA, m.opt, "198.19.0.0/16")
			s := newRawSender(b, topo, 64)
			vethtest.Watchdog(b, 5*time.Minute, c)
			bufs, sizes := vethtest.Bufs(8, BufferSize)
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if err := unix.Sendto(s.fd, s.pkt, 0, s.sa); err != nil {
					b.Fatal(err)
				}
				if _, err := c.ReadBatch(bufs, sizes); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkCaptureTCPBurst captures a TCP stream with the veth's offloads
// on (so it arrives as 64 KiB super-packets) sent as fast as the
// namespaces allow: one op is one 16 MB transfer. drop% is the share of
// frames the kernel dropped because the capture did not keep up, gsodrop%
// the share dropped by the super-packet cutting (TCP itself loses
// nothing: the capture only watches A's own traffic).
func BenchmarkCaptureTCPBurst(b *testing.B) {
	for _, m := range benchModes {
		b.Run(m.name, func(b *testing.B) {
			topo := vethtest.New(b, 1500)
			c := openCaptureWithIn(b, topo.A, topo.IfA, m.opt, netip.PrefixFrom(topo.AddrA, 32).String())
			vethtest.Watchdog(b, 5*time.Minute, c)
			ln := tcpSink(b, topo)
			bufs, sizes := vethtest.Bufs(64, BufferSize)
			before := c.KernelStats()
			b.ResetTimer()
			for b.Loop() {
				stop := make(chan struct{})
				var wg sync.WaitGroup
				wg.Go(func() { tcpBurst(b, topo, ln, 16<<20, stop) })
				drainUntilMarker(b, c, bufs, sizes)
				close(stop)
				wg.Wait()
			}
			st := c.KernelStats()
			frames := float64(max(st.Packets-before.Packets, 1))
			b.ReportMetric(100*float64(st.Drops-before.Drops)/frames, "drop%")
			b.ReportMetric(100*float64(c.GSODropped())/frames, "gsodrop%")
		})
	}
}

// tcpSink listens on A's address and discards what every connection
// sends.
func tcpSink(b testing.TB, topo *vethtest.Topo) net.Listener {
	var ln net.Listener
	if err := topo.A.Do(func() (err error) { ln, err = net.Listen("tcp4", topo.AddrA.String()+":0"); return err }); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	go func() {
		for {
			s, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				s.SetDeadline(time.Now().Add(time.Minute))
				io.Copy(io.Discard, s)
				s.Close()
			}()
		}
	}()
	return ln
}

// tcpSend sends n bytes from B to addr over one connection.
func tcpSend(topo *vethtest.Topo, addr string, n int) error {
	var conn net.Conn
	if err := topo.B.Do(func() (err error) { conn, err = net.DialTimeout("tcp4", addr, 5*time.Second); return err }); err != nil {
		return err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(time.Minute))
	_, err := io.CopyN(conn, zeroReader{}, int64(n))
	return err
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// drainUntilMarker reads from c until it sees a UDP packet (tcpBurst's
// marker, sent every 10ms once the transfer is done).
func drainUntilMarker(b *testing.B, c *Capture, bufs [][]byte, sizes []int) {
	for {
		n, err := c.ReadBatch(bufs, sizes)
		if err != nil {
			b.Fatal(err)
		}
		for i := range n {
			if p := bufs[i][:sizes[i]]; len(p) > 9 && p[9] == unix.IPPROTO_UDP {
				return
			}
		}
	}
}

// tcpBurst sends n bytes over TCP from B to ln, then UDP markers to A
// until stop is closed.
func tcpBurst(b *testing.B, topo *vethtest.Topo, ln net.Listener, n int, stop <-chan struct{}) {
	if err := tcpSend(topo, ln.Addr().String(), n); err != nil {
		b.Error(err)
	}
	marker := vethtest.UDPIn(b, topo.B, netip.AddrPortFrom(topo.AddrB, 0))
	dst := netip.AddrPortFrom(topo.AddrA, 9)
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); {
		marker.WriteToUDPAddrPort([]byte("end"), dst)
		select {
		case <-stop:
			return
		case <-time.After(10 * time.Millisecond):
		}
	}
}

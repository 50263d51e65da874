package dataplane

import (
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"tunnel-agent/internal/nstest"
)

// With TSO/GSO on at the sending end of the veth (its default), a TCP
// stream reaches the capture as super-packets; ReadBatch must return them
// cut to the MTU with valid checksums.
func TestCaptureSegmentsTCPSuperPackets(t *testing.T) {
	forCaptureModes(t, testCaptureSegmentsTCPSuperPackets)
}

func testCaptureSegmentsTCPSuperPackets(t *testing.T, opt CaptureOptions) {
	nstest.RequireRoot(t)
	const mtu = 1500
	topo := newVethTopo(t, mtu)
	c := openCaptureWithIn(t, topo.A, topo.IfA, opt, netip.PrefixFrom(topo.AddrA, 32).String())
	dst := netip.AddrPortFrom(topo.AddrA, 5201)
	var ln net.Listener
	if err := topo.A.Do(func() (err error) { ln, err = net.Listen("tcp4", dst.String()); return err }); err != nil {
		t.Fatalf("listen in %s: %v", topo.A.Name, err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		if s, err := ln.Accept(); err == nil {
			s.SetDeadline(time.Now().Add(10 * time.Second))
			io.Copy(io.Discard, s)
			s.Close()
		}
	}()
	var conn net.Conn
	if err := topo.B.Do(func() (err error) { conn, err = net.DialTimeout("tcp4", dst.String(), 5*time.Second); return err }); err != nil {
		t.Fatalf("dial from %s: %v", topo.B.Name, err)
	}
	t.Cleanup(func() { conn.Close() })
	go func() {
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		chunk := make([]byte, 256<<10)
		for range 16 {
			if _, err := conn.Write(chunk); err != nil {
				return
			}
		}
	}()
	bufs, sizes := makeBufs(64, CaptureBufferSize)
	seen, payload := false, 0
	for deadline := time.Now().Add(10 * time.Second); payload < 256<<10 && time.Now().Before(deadline); {
		n := readCapture(t, c, bufs, sizes, 5*time.Second)
		seen = seen || c.g.seen
		for i := range n {
			pkt := bufs[i][:sizes[i]]
			if len(pkt) > mtu || pkt[9] != 6 || !validL4Checksum(pkt) {
				t.Fatalf("captured a %d-byte packet (protocol %d) that is too big or has a bad checksum", len(pkt), pkt[9])
			}
			payload += len(pkt) - 20 - int(pkt[32]>>4)*4
		}
	}
	if !seen {
		t.Error("no super-packet arrived: is TSO off on the veth?")
	}
	if payload < 256<<10 {
		t.Errorf("captured %d payload bytes of a 4 MB stream", payload)
	}
}

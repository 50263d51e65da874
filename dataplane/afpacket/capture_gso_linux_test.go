package afpacket

import (
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"tunnel-agent/dataplane/internal/header"
	"tunnel-agent/dataplane/internal/vethtest"
	"tunnel-agent/internal/nstest"
)

// With TSO/GSO on at the sending end of the veth (its default), a TCP
// stream reaches the capture as super-packets; ReadBatch must return them
// cut to the MTU with valid checksums.
func TestCaptureSegmentsTCPSuperPackets(t *testing.T) {
	forCaptureModes(t, func(t *testing.T, opt Options) { testCaptureSegmentsTCPSuperPackets(t, opt, false) })
}

// TestCaptureSegmentsTCPSuperPackets6 is the same over IPv6.
func TestCaptureSegmentsTCPSuperPackets6(t *testing.T) {
	forCaptureModes(t, func(t *testing.T, opt Options) { testCaptureSegmentsTCPSuperPackets(t, opt, true) })
}

func testCaptureSegmentsTCPSuperPackets(t *testing.T, opt Options, v6 bool) {
	nstest.RequireRoot(t)
	const mtu = 1500
	topo := vethtest.New(t, mtu)
	addr, bits, ipLen, protoOff, network := topo.AddrA, 32, 20, header.IPv4OffProto, "tcp4"
	if v6 {
		topo.AddIPv6(t)
		addr, bits, ipLen, protoOff, network = vethtest.AddrA6, 128, 40, header.IPv6OffNextHeader, "tcp6"
	}
	c := openCaptureWithIn(t, topo.A, topo.IfA, opt, netip.PrefixFrom(addr, bits).String())
	dst := netip.AddrPortFrom(addr, 5201)
	var ln net.Listener
	if err := topo.A.Do(func() (err error) { ln, err = net.Listen(network, dst.String()); return err }); err != nil {
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
	if err := topo.B.Do(func() (err error) { conn, err = net.DialTimeout(network, dst.String(), 5*time.Second); return err }); err != nil {
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
	bufs, sizes := vethtest.Bufs(64, BufferSize)
	seen, payload := false, 0
	for deadline := time.Now().Add(10 * time.Second); payload < 256<<10 && time.Now().Before(deadline); {
		n := vethtest.Read(t, c, bufs, sizes, 5*time.Second)
		seen = seen || c.g.seen
		for i := range n {
			pkt := bufs[i][:sizes[i]]
			if len(pkt) > mtu || pkt[protoOff] != header.ProtoTCP || !validTransport(pkt) {
				t.Fatalf("captured a %d-byte packet that is not TCP, too big or has a bad checksum", len(pkt))
			}
			payload += len(pkt) - ipLen - int(pkt[ipLen+12]>>4)*4
		}
	}
	if !seen {
		t.Error("no super-packet arrived: is TSO off on the veth?")
	}
	if payload < 256<<10 {
		t.Errorf("captured %d payload bytes of a 4 MB stream", payload)
	}
}

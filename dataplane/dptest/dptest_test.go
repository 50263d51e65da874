package dptest

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"tunnel-agent/internal/parked"
)

func bufs(n, size int) ([][]byte, []int) {
	b := make([][]byte, n)
	for i := range b {
		b[i] = make([]byte, size)
	}
	return b, make([]int, n)
}

func TestCaptureBatchesAndDropsOversized(t *testing.T) {
	c := NewCapture()
	for _, p := range [][]byte{{1}, {2, 2}, make([]byte, 9), {3}, {4}} {
		c.Send(p)
	}
	b, sizes := bufs(3, 8)
	n, err := c.ReadBatch(b, sizes)
	if err != nil || n != 3 || sizes[2] != 1 || b[2][0] != 3 || c.Dropped.Load() != 1 {
		t.Fatalf("n %d err %v sizes %v dropped %d", n, err, sizes, c.Dropped.Load())
	}
	if n, _ := c.ReadBatch(b, sizes); n != 1 || b[0][0] != 4 {
		t.Fatalf("second batch %d", n)
	}
	c.Close()
	if _, err := c.ReadBatch(b, sizes); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("after close: %v", err)
	}
	if c.Send([]byte{1}) {
		t.Fatal("Send after close")
	}
}

func TestCaptureCloseUnblocksAndFail(t *testing.T) {
	c := NewCapture()
	boom := errors.New("boom")
	done := parked.Run(t, parked.Select, func() error {
		b, sizes := bufs(1, 8)
		_, err := c.ReadBatch(b, sizes)
		return err
	})
	c.Fail(boom)
	if err := <-done; !errors.Is(err, boom) {
		t.Fatalf("got %v", err)
	}
}

func TestNetworkDeliversAndNATs(t *testing.T) {
	nw := NewNetwork()
	a, z := nw.Listen(netip.MustParseAddrPort("192.0.2.1:1")), nw.Listen(netip.MustParseAddrPort("192.0.2.2:2"))
	pkt := []byte{1, 2, 3}
	if n, err := a.WriteBatch([][]byte{pkt, pkt}, []netip.AddrPort{z.LocalAddr(), netip.MustParseAddrPort("192.0.2.9:9")}); n != 2 || err != nil {
		t.Fatalf("write %d %v", n, err)
	}
	pkt[0] = 9 // the fake copied it
	b, sizes := bufs(4, 8)
	from := make([]netip.AddrPort, 4)
	n, err := z.ReadBatch(b, sizes, from)
	if n != 1 || err != nil || from[0] != a.LocalAddr() || !bytes.Equal(b[0][:sizes[0]], []byte{1, 2, 3}) || nw.Lost.Load() != 1 {
		t.Fatalf("read %d %v from %v lost %d", n, err, from[0], nw.Lost.Load())
	}

	outside := netip.MustParseAddrPort("203.0.113.1:5")
	nw.SetNAT(a.LocalAddr(), outside)
	a.WriteBatch([][]byte{{7}}, []netip.AddrPort{z.LocalAddr()})
	if d, err := z.Recv(time.Second); err != nil || d.From != outside {
		t.Fatalf("NAT: %+v %v", d, err)
	}
	z.WriteBatch([][]byte{{8}}, []netip.AddrPort{outside})
	if d, err := a.Recv(time.Second); err != nil || d.Data[0] != 8 {
		t.Fatalf("NAT return: %+v %v", d, err)
	}

	a.SetWriteError(errors.New("down"))
	if n, err := a.WriteBatch([][]byte{{1}}, []netip.AddrPort{z.LocalAddr()}); n != 0 || err == nil {
		t.Fatal("write error not returned")
	}
	z.Close()
	if _, err := z.ReadBatch(b, sizes, from); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("after close: %v", err)
	}
}

func TestInjector(t *testing.T) {
	i := NewInjector()
	if n, err := i.WriteBatch([][]byte{{1}, {2}}); n != 2 || err != nil {
		t.Fatal(n, err)
	}
	if p, _ := i.Recv(time.Second); p[0] != 1 {
		t.Fatal(p)
	}
	i.SetError(errors.New("x"))
	if _, err := i.WriteBatch([][]byte{{1}}); err == nil {
		t.Fatal("no error")
	}
	i.SetError(nil)
	i.Close()
	if _, err := i.WriteBatch([][]byte{{1}}); !errors.Is(err, net.ErrClosed) {
		t.Fatal(err)
	}
}

// TestBuilders checks the packet builders against known values.
func TestBuilders(t *testing.T) {
	p := EchoRequest(netip.MustParseAddr("192.168.111.2"), netip.MustParseAddr("11.11.11.100"), 40, 1, 56)
	if len(p) != 84 || Checksum(p[:20]) != 0 || Checksum(p[20:]) != 0 || p[6] != 0x40 || p[8] != 64 {
		t.Fatalf("echo % x", p)
	}
	u := UDP(IPv4{Src: netip.MustParseAddr("10.0.0.1"), Dst: netip.MustParseAddr("10.0.0.2"), TTL: 1, Options: []byte{1, 1, 1, 1}}, 1, 2, []byte("x"))
	if len(u) != 24+9 || u[0] != 0x46 || u[9] != ProtoUDP || Checksum(u[:24]) != 0 {
		t.Fatalf("udp % x", u)
	}
}

package rawip

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"tunnel-agent/dataplane"
	"tunnel-agent/dataplane/internal/vethtest"
	"tunnel-agent/internal/nstest"
)

// tcsum is a test-local Internet checksum (RFC 1071) over b, starting
// from the partial sum sum.
// Injector is the engine's production Injector.
var _ dataplane.Injector = (*Injector)(nil)

func tcsum(b []byte, sum uint32) uint16 {
	for len(b) >= 2 {
		sum += uint32(b[0])<<8 | uint32(b[1])
		b = b[2:]
	}
	if len(b) == 1 {
		sum += uint32(b[0]) << 8
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

// buildUDP4 hand-builds an IPv4/UDP packet with correct checksums.
func buildUDP4(src, dst netip.AddrPort, df bool, payload []byte) []byte {
	pkt := make([]byte, 28+len(payload))
	pkt[0] = 0x45
	binary.BigEndian.PutUint16(pkt[2:], uint16(len(pkt)))
	binary.BigEndian.PutUint16(pkt[4:], 0x1234)
	if df {
		pkt[6] = 0x40
	}
	pkt[8] = 64
	pkt[9] = syscall.IPPROTO_UDP
	s, d := src.Addr().As4(), dst.Addr().As4()
	copy(pkt[12:16], s[:])
	copy(pkt[16:20], d[:])
	binary.BigEndian.PutUint16(pkt[10:], tcsum(pkt[:20], 0))

	udp := pkt[20:]
	binary.BigEndian.PutUint16(udp[0:], src.Port())
	binary.BigEndian.PutUint16(udp[2:], dst.Port())
	binary.BigEndian.PutUint16(udp[4:], uint16(len(udp)))
	copy(udp[8:], payload)
	var pseudo uint32
	for _, a := range [][4]byte{s, d} {
		pseudo += (uint32(a[0])<<8 | uint32(a[1])) + (uint32(a[2])<<8 | uint32(a[3]))
	}
	pseudo += syscall.IPPROTO_UDP + uint32(len(udp))
	c := tcsum(udp, pseudo)
	if c == 0 {
		c = 0xffff
	}
	binary.BigEndian.PutUint16(udp[6:], c)
	return pkt
}

func openInjectorIn(t testing.TB, ns *nstest.NS) *Injector {
	t.Helper()
	var inj *Injector
	if err := ns.Do(func() (err error) {
		inj, err = Open()
		return err
	}); err != nil {
		t.Fatalf("rawip.Open: %v", err)
	}
	t.Cleanup(func() { inj.Close() })
	return inj
}

func TestInjectorDelivers(t *testing.T) {
	topo := vethtest.New(t, 1500)
	inj := openInjectorIn(t, topo.A)
	rx := vethtest.UDPIn(t, topo.B, netip.AddrPortFrom(topo.AddrB, 7777))

	// As if decapsulated from the tunnel: a remote source, a LAN
	// destination reached through veth-a.
	src := netip.MustParseAddrPort("198.19.1.5:1234")
	dst := netip.AddrPortFrom(topo.AddrB, 7777)
	pkts := [][]byte{
		buildUDP4(src, dst, true, []byte("inject-1")),
		buildUDP4(src, dst, false, []byte("inject-2")),
	}
	n, err := inj.WriteBatch(pkts)
	if n != 2 || err != nil {
		t.Fatalf("WriteBatch = %d, %v; want 2, nil", n, err)
	}
	rx.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 1500)
	for _, want := range []string{"inject-1", "inject-2"} {
		n, from, err := rx.ReadFromUDPAddrPort(buf)
		if err != nil {
			t.Fatalf("receive %s: %v", want, err)
		}
		if string(buf[:n]) != want || from != src {
			t.Fatalf("received %q from %v, want %q from %v", buf[:n], from, want, src)
		}
	}
}

func TestInjectorErrors(t *testing.T) {
	topo := vethtest.New(t, 1500)
	inj := openInjectorIn(t, topo.A)
	rx := vethtest.UDPIn(t, topo.B, netip.AddrPortFrom(topo.AddrB, 7777))
	src := netip.MustParseAddrPort("198.19.1.5:1234")
	dst := netip.AddrPortFrom(topo.AddrB, 7777)
	ok := buildUDP4(src, dst, false, []byte("ok"))

	// The kernel does not fragment IP_HDRINCL packets: one larger than the
	// route MTU fails with EMSGSIZE, DF or not.
	big := buildUDP4(src, dst, false, make([]byte, 1600))
	n, err := inj.WriteBatch([][]byte{ok, big, ok})
	if n != 1 || !errors.Is(err, syscall.EMSGSIZE) {
		t.Fatalf("WriteBatch(ok, oversized, ok) = %d, %v; want 1, EMSGSIZE", n, err)
	}
	var oe *net.OpError
	if !errors.As(err, &oe) || oe.Op != "write" {
		t.Fatalf("error %v is not a write *net.OpError", err)
	}

	v6 := make([]byte, 39) // shorter than an IPv6 header
	v6[0] = 0x60
	for _, tc := range []struct {
		name string
		pkt  []byte
	}{
		{"empty", nil},
		{"short", ok[:19]},
		{"short IPv6", v6},
		{"version 0", make([]byte, 40)},
	} {
		n, err := inj.WriteBatch([][]byte{ok, tc.pkt, ok})
		if n != 1 || err == nil {
			t.Errorf("%s: WriteBatch = %d, %v; want 1 and an error", tc.name, n, err)
		}
	}
	// Only the "ok" packets arrived (1 from the EMSGSIZE batch + 4).
	rx.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 2000)
	for i := range 5 {
		if n, err := rx.Read(buf); err != nil || string(buf[:n]) != "ok" {
			t.Fatalf("packet %d: %q, %v", i, buf[:n], err)
		}
	}
	if err := inj.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := inj.WriteBatch([][]byte{ok}); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("WriteBatch after Close: %v, want net.ErrClosed", err)
	}
}

func TestInjectorZeroAllocs(t *testing.T) {
	topo := vethtest.New(t, 1500)
	inj := openInjectorIn(t, topo.A)
	vethtest.UDPIn(t, topo.B, netip.AddrPortFrom(topo.AddrB, 7777)) // a sink; never read
	src := netip.MustParseAddrPort("198.19.1.5:1234")
	pkts := make([][]byte, 16)
	for i := range pkts {
		pkts[i] = buildUDP4(src, netip.AddrPortFrom(topo.AddrB, 7777), false, make([]byte, 100))
	}
	inj.WriteBatch(pkts) // warm up
	allocs := testing.AllocsPerRun(50, func() {
		if _, err := inj.WriteBatch(pkts); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("WriteBatch allocates %v times per batch, want 0", allocs)
	}
}

func BenchmarkInjectorWriteBatch(b *testing.B) {
	topo := vethtest.New(b, 1500)
	inj := openInjectorIn(b, topo.A)
	vethtest.UDPIn(b, topo.B, netip.AddrPortFrom(topo.AddrB, 7777)) // a sink; never read
	src := netip.MustParseAddrPort("198.19.1.5:1234")
	const batch = 32
	pkts := make([][]byte, batch)
	for i := range pkts {
		pkts[i] = buildUDP4(src, netip.AddrPortFrom(topo.AddrB, 7777), false, make([]byte, 1400))
	}
	b.SetBytes(batch * 1428)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := inj.WriteBatch(pkts); err != nil {
			b.Fatal(err)
		}
	}
}

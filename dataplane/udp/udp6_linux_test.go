package udp

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"tunnel-agent/internal/nstest"
)

// TestUDPTransportDualStack: a transport on [::] talks to an IPv4 and an
// IPv6 peer at once, in one batch, and sees the IPv4 peer unmapped.
func TestUDPTransportDualStack(t *testing.T) {
	ns := nstest.New(t, "dp6")
	tr := listenUDPIn(t, ns, netip.MustParseAddrPort("[::]:0"))
	var p4, p6 *net.UDPConn
	if err := ns.Do(func() (err error) {
		if p4, err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}); err != nil {
			return err
		}
		p6, err = net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p4.Close(); p6.Close() })
	port := tr.LocalAddr().Port()
	if _, err := p4.WriteToUDP([]byte("from4"), &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: int(port)}); err != nil {
		t.Fatal(err)
	}
	if _, err := p6.WriteToUDP([]byte("from6"), &net.UDPAddr{IP: net.IPv6loopback, Port: int(port)}); err != nil {
		t.Fatal(err)
	}
	a4, a6 := p4.LocalAddr().(*net.UDPAddr).AddrPort(), p6.LocalAddr().(*net.UDPAddr).AddrPort()
	got := map[string]netip.AddrPort{}
	for _, d := range readDatagrams(t, tr, 2, 2048, 5*time.Second) {
		got[d.payload] = d.from
	}
	if got["from4"] != a4 || got["from6"] != a6 {
		t.Fatalf("senders %v, want from4 %v and from6 %v", got, a4, a6)
	}
	n, err := tr.WriteBatch([][]byte{[]byte("to4"), []byte("to6")}, []netip.AddrPort{a4, a6})
	if n != 2 || err != nil {
		t.Fatalf("WriteBatch to both families = %d, %v", n, err)
	}
	buf := make([]byte, 64)
	for _, c := range []*net.UDPConn{p4, p6} {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, from, err := c.ReadFromUDPAddrPort(buf)
		if err != nil || from.Port() != port {
			t.Fatalf("reply: %q from %v, %v", buf[:n], from, err)
		}
	}
}

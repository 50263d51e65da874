package rawip

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"tunnel-agent/dataplane/dptest"
	"tunnel-agent/internal/nstest"
)

// TestInjectorMixedFamilies: one batch alternating IPv4 and IPv6 packets
// goes out through both raw sockets, every packet to its destination.
func TestInjectorMixedFamilies(t *testing.T) {
	ns := nstest.New(t, "dpi6")
	inj := openInjectorIn(t, ns)
	var r4, r6 *net.UDPConn
	if err := ns.Do(func() (err error) {
		if r4, err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 7001}); err != nil {
			return err
		}
		r6, err = net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback, Port: 7002})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r4.Close(); r6.Close() })
	lo4, lo6 := netip.MustParseAddr("127.0.0.1"), netip.IPv6Loopback()
	v4 := func(s string) []byte {
		return dptest.UDP(dptest.IPv4{Src: lo4, Dst: lo4, TTL: 64}, 9, 7001, []byte(s))
	}
	v6 := func(s string) []byte {
		return dptest.UDP6(dptest.IPv6{Src: lo6, Dst: lo6, HopLimit: 64}, 9, 7002, []byte(s))
	}
	pkts := [][]byte{v4("a"), v6("b"), v6("c"), v4("d"), v6("e")}
	if n, err := inj.WriteBatch(pkts); n != len(pkts) || err != nil {
		t.Fatalf("WriteBatch = %d, %v", n, err)
	}
	for c, want := range map[*net.UDPConn]string{r4: "ad", r6: "bce"} {
		got := ""
		buf := make([]byte, 16)
		for len(got) < len(want) {
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			n, err := c.Read(buf)
			if err != nil {
				t.Fatalf("after %q: %v", got, err)
			}
			got += string(buf[:n])
		}
		if got != want {
			t.Errorf("received %q, want %q", got, want)
		}
	}
}

package probe

import (
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"tunnel-agent/internal/nstest"
)

// chain is A – R – B: A 198.18.1.1/24 – 198.18.1.2/24 R 198.18.2.1/24 –
// 198.18.2.2/24 B, the R–B link with MTU 1400, R forwarding.
type chain struct{ a, r, b *nstest.NS }

var (
	addrA  = netip.MustParseAddr("198.18.1.1")
	addrRa = netip.MustParseAddr("198.18.1.2")
	addrRb = netip.MustParseAddr("198.18.2.1")
	addrB  = netip.MustParseAddr("198.18.2.2")
)

func newChain(t *testing.T) *chain {
	t.Helper()
	c := &chain{a: nstest.New(t, "tpra"), r: nstest.New(t, "tprr"), b: nstest.New(t, "tprb")}
	veth(t, c.a, "p0", addrA, c.r, "a0", addrRa, 1500)
	veth(t, c.r, "b0", addrRb, c.b, "p0", addrB, 1400)
	route(t, c.a, addrRa)
	route(t, c.b, addrRb)
	if err := c.r.Do(func() error { return os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1"), 0) }); err != nil {
		t.Fatal(err)
	}
	return c
}

func veth(t *testing.T, x *nstest.NS, xn string, xa netip.Addr, y *nstest.NS, yn string, ya netip.Addr, mtu int) {
	t.Helper()
	la := netlink.NewLinkAttrs()
	la.Name, la.MTU = xn, mtu
	v := netlink.NewVeth(la)
	v.PeerName, v.PeerNamespace = yn, netlink.NsFd(int(y.Handle))
	if err := x.NL.LinkAdd(v); err != nil {
		t.Fatalf("veth %s/%s: %v", x.Name, xn, err)
	}
	for _, e := range []struct {
		ns   *nstest.NS
		name string
		addr netip.Addr
	}{{x, xn, xa}, {y, yn, ya}} {
		l, err := e.ns.NL.LinkByName(e.name)
		if err == nil {
			err = e.ns.NL.AddrAdd(l, &netlink.Addr{IPNet: &net.IPNet{IP: e.addr.AsSlice(), Mask: net.CIDRMask(24, 32)}})
		}
		if err == nil {
			err = e.ns.NL.LinkSetUp(l)
		}
		if err != nil {
			t.Fatalf("set up %s/%s: %v", e.ns.Name, e.name, err)
		}
	}
}

func route(t *testing.T, ns *nstest.NS, gw netip.Addr) {
	t.Helper()
	r := &netlink.Route{Dst: &net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)}, Gw: gw.AsSlice()}
	if err := ns.NL.RouteAdd(r); err != nil {
		t.Fatalf("route in %s: %v", ns.Name, err)
	}
}

func TestProbes(t *testing.T) {
	nstest.RequireRoot(t)
	c := newChain(t)

	t.Run("ping", func(t *testing.T) {
		r, err := Ping(c.a.Handle, addrB, 5, 10*time.Millisecond, time.Second, 0)
		if err != nil {
			t.Fatal(err)
		}
		if r.Sent != 5 || r.Received != 5 || r.Corrupted != 0 || len(r.RTTs) != 5 {
			t.Fatalf("ping: %+v", r)
		}
		if r.Min <= 0 || r.Min > r.Avg || r.Avg > r.Max || r.P99 != r.Max {
			t.Fatalf("rtt stats: %+v", r)
		}
		if r.PathMTU != 1500 {
			t.Errorf("path MTU %d, want 1500 (A's link)", r.PathMTU)
		}
	})

	t.Run("ping unanswered is bounded", func(t *testing.T) {
		start := time.Now()
		r, err := PingWith(c.a.Handle, netip.MustParseAddr("198.18.2.99"), PingOptions{Count: 2, Interval: 10 * time.Millisecond, Timeout: 200 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		if r.Received != 0 || r.Loss() != 1 {
			t.Fatalf("ping to nobody: %+v", r)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("took %v", d)
		}
	})

	t.Run("large ping fragments without DF", func(t *testing.T) {
		r, err := PingWith(c.b.Handle, addrA, PingOptions{Count: 2, Interval: 10 * time.Millisecond, Size: 3000})
		if err != nil {
			t.Fatal(err)
		}
		if r.Received != 2 {
			t.Fatalf("ping 3000 without DF: %+v", r)
		}
	})

	t.Run("DF frag needed", func(t *testing.T) {
		r, err := PingWith(c.a.Handle, addrB, PingOptions{Count: 2, Interval: 100 * time.Millisecond, Timeout: 500 * time.Millisecond, Size: 1500, DF: true})
		if err != nil {
			t.Fatal(err)
		}
		mtu, ok := r.FragNeeded()
		if !ok || mtu != 1400 || r.Errors[0].From != addrRa {
			t.Fatalf("want fragmentation needed (mtu 1400) from %s: %+v", addrRa, r)
		}
		// The second request meets the cached path MTU and fails locally.
		if r.TooBig != 1 || r.Received != 0 || r.PathMTU != 1400 {
			t.Fatalf("after frag needed: %+v", r)
		}
		r, err = PingWith(c.a.Handle, addrB, PingOptions{Size: 1400, DF: true})
		if err != nil || r.Received != 1 {
			t.Fatalf("ping 1400 DF: %+v, %v", r, err)
		}
	})

	t.Run("tcp", func(t *testing.T) {
		r, err := TCPTransfer(c.a.Handle, c.b.Handle, netip.AddrPortFrom(addrB, 0), 8<<20, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if !r.OK() || r.Bytes != 8<<20 || r.Throughput <= 0 || r.Peer.Addr() != addrA || r.Peer != r.Local {
			t.Fatalf("tcp: %+v", r)
		}
	})

	t.Run("tcp until stopped", func(t *testing.T) {
		var got TransferProgress
		stop := make(chan struct{})
		done := make(chan error, 1)
		var r TransferResult
		go func() {
			var err error
			r, err = TCPTransferWith(c.a.Handle, c.b.Handle, netip.AddrPortFrom(addrB, 0),
				TransferOptions{Timeout: 10 * time.Second, Progress: &got, Stop: stop})
			done <- err
		}()
		for deadline := time.Now().Add(5 * time.Second); got.Received.Load() < 4<<20; time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%d bytes received after 5s", got.Received.Load())
			}
		}
		close(stop)
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if !r.OK() || r.Bytes < 4<<20 || got.Received.Load() != r.Bytes || got.Sent.Load() != r.Sent {
			t.Fatalf("tcp until stopped: %+v, progress %d sent %d received", r, got.Sent.Load(), got.Received.Load())
		}
	})

	t.Run("tcp refused", func(t *testing.T) {
		// Nobody listens at A's address in B's namespace... the listener
		// is in B, the sender dials an address of R: refused quickly.
		_, err := TCPTransfer(c.a.Handle, c.b.Handle, netip.AddrPortFrom(addrRb, 0), 1000, 2*time.Second)
		if err == nil {
			t.Fatal("transfer to a host without the listener succeeded")
		}
	})

	t.Run("udp", func(t *testing.T) {
		src := netip.AddrPortFrom(addrA, 40001)
		r, err := UDPBurstWith(c.a.Handle, c.b.Handle, netip.AddrPortFrom(addrB, 0), UDPOptions{Count: 500, Payload: 1000, Rate: 20000, Timeout: 5 * time.Second, Src: src})
		if err != nil {
			t.Fatal(err)
		}
		if r.Sent != 500 || r.Received != 500 || r.Duplicates != 0 || r.Corrupted != 0 {
			t.Fatalf("udp: %+v", r)
		}
		if len(r.Sources) != 1 || r.Sources[0] != src || r.Local != src {
			t.Fatalf("sources %v local %v, want %v", r.Sources, r.Local, src)
		}
		if r.Duration < 20*time.Millisecond {
			t.Errorf("500 datagrams at 20000/s took %v", r.Duration)
		}
	})

	t.Run("udp gso", func(t *testing.T) {
		r, err := UDPBurstWith(c.a.Handle, c.b.Handle, netip.AddrPortFrom(addrB, 0), UDPOptions{Count: 100, Payload: 1000, GSO: 8, Timeout: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		if r.Sent != 100 || r.Received != 100 || r.Corrupted != 0 || r.SendErrors != 0 {
			t.Fatalf("udp gso: %+v", r)
		}
		if _, err := UDPBurstWith(c.a.Handle, c.b.Handle, netip.AddrPortFrom(addrB, 0), UDPOptions{Payload: 1000, GSO: 66}); err == nil {
			t.Error("66 segments per write accepted")
		}
	})

	t.Run("udp unlimited and lossy", func(t *testing.T) {
		r, err := UDPBurst(c.a.Handle, c.b.Handle, netip.AddrPortFrom(addrB, 0), 2000, 64, 0, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if r.Sent != 2000 || r.Received == 0 || r.Received > r.Sent {
			t.Fatalf("udp: %+v", r)
		}
		// Nobody answers: the burst ends after the drain time.
		start := time.Now()
		r, err = UDPBurstWith(c.a.Handle, c.b.Handle, netip.AddrPortFrom(netip.MustParseAddr("198.18.2.99"), 0),
			UDPOptions{Count: 10, Timeout: 5 * time.Second, Drain: 100 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		if r.Received != 0 || time.Since(start) > 2*time.Second {
			t.Fatalf("udp to nobody: %+v after %v", r, time.Since(start))
		}
	})
}

func TestSummarize(t *testing.T) {
	var d []time.Duration
	for i := 1; i <= 200; i++ {
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	lo, avg, hi, p99 := summarize(d)
	if lo != time.Millisecond || hi != 200*time.Millisecond || p99 != 198*time.Millisecond || avg != 100500*time.Microsecond {
		t.Fatalf("summarize: %v %v %v %v", lo, avg, hi, p99)
	}
	if checksum([]byte{0x45, 0x00, 0x00, 0x1c}) == 0 {
		t.Fatal("checksum")
	}
}

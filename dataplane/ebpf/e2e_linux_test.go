package ebpf

import (
	"context"
	"encoding/binary"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"tunnel-agent/dataplane"
	"tunnel-agent/dataplane/afpacket"
	"tunnel-agent/dataplane/rawip"
	"tunnel-agent/dataplane/udp"
	"tunnel-agent/internal/ethfeat"
	"tunnel-agent/internal/nstest"
	"tunnel-agent/internal/probe"
)

// The end-to-end tests build two sites in throwaway namespaces, the
// tutorial's addressing with a direct WAN link (198.18.0.0/24):
//
//	hostA eth0 192.168.111.2 -- lan0 .1 gwA wan0 198.18.0.1 -- wan0 198.18.0.2 gwB lan0 11.11.11.1 -- eth0 11.11.11.100 hostB
//
// LAN MTU 1420 as in the tutorial; each gateway has a blackhole route for
// the other site (the userspace path needs it; the programs never let the
// kernel see those packets). Nothing is attached outside these namespaces.

const tunnelPort = 51820

type e2eSite struct {
	gw, host  *nstest.NS
	prefix    netip.Prefix
	gwLAN     netip.Addr
	hostAddr  netip.Addr
	wanAddr   netip.Addr
	hostLinks []string // veth ends of the LAN, for offload changes
}

var (
	siteA = e2eSite{prefix: netip.MustParsePrefix("192.168.111.0/24"), gwLAN: netip.MustParseAddr("192.168.111.1"),
		hostAddr: netip.MustParseAddr("192.168.111.2"), wanAddr: netip.MustParseAddr("198.18.0.1")}
	siteB = e2eSite{prefix: netip.MustParsePrefix("11.11.11.0/24"), gwLAN: netip.MustParseAddr("11.11.11.1"),
		hostAddr: netip.MustParseAddr("11.11.11.100"), wanAddr: netip.MustParseAddr("198.18.0.2")}
)

// buildSites creates the two sites; offloads[i] false switches the rx/tx
// checksum offloads (and with them TSO) off on site i's LAN veths, as the
// tutorial does.
// The WAN veths keep theirs only with wanOffloads.
func buildSites(t testing.TB, offloads [2]bool, wanOffloads bool) (a, b *e2eSite) {
	t.Helper()
	nstest.RequireRoot(t)
	a, b = new(e2eSite), new(e2eSite)
	*a, *b = siteA, siteB
	for i, s := range []*e2eSite{a, b} {
		s.gw, s.host = nstest.New(t, "ebgw"), nstest.New(t, "ebh")
		vethPair(t, s.host, "eth0", netip.PrefixFrom(s.hostAddr, 24), s.gw, "lan0", netip.PrefixFrom(s.gwLAN, 24), 1420)
		route(t, s.host, netip.Prefix{}, s.gwLAN)
		if !offloads[i] {
			checksumOffloadsOff(t, s.host, "eth0")
			checksumOffloadsOff(t, s.gw, "lan0")
		}
	}
	vethPair(t, a.gw, "wan0", netip.PrefixFrom(a.wanAddr, 24), b.gw, "wan0", netip.PrefixFrom(b.wanAddr, 24), 1500)
	if !wanOffloads {
		checksumOffloadsOff(t, a.gw, "wan0")
		checksumOffloadsOff(t, b.gw, "wan0")
	}
	blackhole(t, a.gw, b.prefix)
	blackhole(t, b.gw, a.prefix)
	return a, b
}

// forwardingOn enables IPv4 and IPv6 forwarding in ns (its own sysctls:
// /proc/sys/net is the namespace of the thread that opens it).
func forwardingOn(t testing.TB, ns *nstest.NS) {
	t.Helper()
	err := ns.Do(func() error {
		for _, f := range []string{"/proc/sys/net/ipv4/conf/all/forwarding", "/proc/sys/net/ipv6/conf/all/forwarding"} {
			if err := os.WriteFile(f, []byte("1"), 0); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("forwarding in %s: %v", ns.Name, err)
	}
}

// vethPair links x's xn (address xa) with y's yn (address ya).
func vethPair(t testing.TB, x *nstest.NS, xn string, xa netip.Prefix, y *nstest.NS, yn string, ya netip.Prefix, mtu int) {
	t.Helper()
	la := netlink.NewLinkAttrs()
	la.Name, la.MTU = xn, mtu
	if err := x.NL.LinkAdd(&netlink.Veth{LinkAttrs: la, PeerName: yn, PeerNamespace: netlink.NsFd(int(y.Handle))}); err != nil {
		t.Fatalf("veth %s: %v", xn, err)
	}
	for _, e := range []struct {
		ns   *nstest.NS
		name string
		a    netip.Prefix
	}{{x, xn, xa}, {y, yn, ya}} {
		l, err := e.ns.NL.LinkByName(e.name)
		if err == nil {
			err = e.ns.NL.LinkSetMTU(l, mtu)
		}
		if err == nil {
			err = e.ns.NL.AddrAdd(l, &netlink.Addr{IPNet: prefixNet(e.a)})
		}
		if err == nil {
			err = e.ns.NL.LinkSetUp(l)
		}
		if err != nil {
			t.Fatalf("set up %s in %s: %v", e.name, e.ns.Name, err)
		}
	}
}

// route adds dst (zero: default) via gw.
func route(t testing.TB, ns *nstest.NS, dst netip.Prefix, gw netip.Addr) {
	t.Helper()
	r := &netlink.Route{Gw: gw.AsSlice()}
	if dst.IsValid() {
		r.Dst = prefixNet(dst)
	}
	if err := ns.NL.RouteAdd(r); err != nil {
		t.Fatalf("route in %s: %v", ns.Name, err)
	}
}

func blackhole(t testing.TB, ns *nstest.NS, dst netip.Prefix) {
	t.Helper()
	if err := ns.NL.RouteAdd(&netlink.Route{Dst: prefixNet(dst), Type: unix.RTN_BLACKHOLE}); err != nil {
		t.Fatalf("blackhole in %s: %v", ns.Name, err)
	}
}

// checksumOffloadsOff is `ethtool --offload LINK rx off tx off`.
func checksumOffloadsOff(t testing.TB, ns *nstest.NS, link string) {
	t.Helper()
	err := ns.Do(func() error {
		et, err := ethfeat.Open()
		if err != nil {
			return err
		}
		defer et.Close()
		st, err := et.Features(link)
		if err != nil {
			return err
		}
		want := map[string]bool{}
		for name, s := range st {
			if (name == "rx-checksum" || strings.HasPrefix(name, "tx-checksum-")) && s.Available {
				want[name] = false
			}
		}
		return et.Change(link, want)
	})
	if err != nil {
		t.Fatalf("offloads off on %s in %s: %v", link, ns.Name, err)
	}
}

// gateway is one site's tunnel end: the programs and, for what they hand
// over, the userspace engine on their exceptions and a UDP socket, as the
// agent will run them.
type gateway struct {
	d   *Dataplane
	eng *dataplane.Engine
}

// startEBPF runs the programs (attached with mode) and the exception
// engine at site s, towards peer site p.
func startEBPF(t testing.TB, s, p *e2eSite, mode AttachMode, pathMTU int) *gateway {
	t.Helper()
	g := &gateway{}
	err := s.gw.Do(func() error {
		d, err := Load(Config{ListenPort: tunnelPort, LocalPrefixes: []netip.Prefix{s.prefix}, HostAddrs: []netip.Addr{s.gwLAN}})
		if err != nil {
			return err
		}
		t.Cleanup(func() { d.Close() })
		g.d = d
		if err := d.SetPeers([]Peer{{Name: "peer", Endpoint: netip.AddrPortFrom(p.wanAddr, tunnelPort),
			Prefixes: []netip.Prefix{p.prefix}, PathMTU: pathMTU}}); err != nil {
			return err
		}
		a, err := d.Attach("lan0", "wan0", mode)
		if err != nil {
			return err
		}
		t.Cleanup(func() {
			if err := a.Detach(); err != nil {
				t.Errorf("detach: %v", err)
			}
		})
		if mode != AttachAuto && a.Hooks[0].Mode != mode {
			t.Errorf("attached with %v, asked %v", a.Hooks[0].Mode, mode)
		}
		exc, err := d.Exceptions(0)
		if err != nil {
			return err
		}
		g.eng, err = startUserspace(t, s, p, exc, pathMTU)
		return err
	})
	if err != nil {
		t.Fatalf("ebpf gateway in %s: %v", s.gw.Name, err)
	}
	return g
}

// startUserspace runs the userspace engine at site s (on the calling
// thread's namespace) over capture c, or over an AF_PACKET capture of
// lan0 when c is nil: the agent's plain mode.
func startUserspace(t testing.TB, s, p *e2eSite, c dataplane.Capture, pathMTU int) (*dataplane.Engine, error) {
	t.Helper()
	peers := []dataplane.PeerConfig{{Name: "peer", Endpoint: netip.AddrPortFrom(p.wanAddr, tunnelPort),
		Prefixes: []netip.Prefix{p.prefix}, PathMTU: pathMTU}}
	if c == nil {
		pc, err := afpacket.Open("lan0", []netip.Prefix{p.prefix}, afpacket.Options{})
		if err != nil {
			return nil, err
		}
		c = pc
	}
	tr, err := udp.Listen(netip.AddrPortFrom(netip.IPv4Unspecified(), tunnelPort), udp.Options{})
	if err != nil {
		return nil, err
	}
	inj, err := rawip.Open()
	if err != nil {
		return nil, err
	}
	eng, err := dataplane.New(dataplane.Config{Peers: peers, LocalPrefixes: []netip.Prefix{s.prefix}, ICMPSource: s.gwLAN}, c, tr, inj)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- eng.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("engine in %s: %v", s.gw.Name, err)
		}
	})
	return eng, nil
}

// startPlain runs only the userspace engine at site s.
func startPlain(t *testing.T, s, p *e2eSite) *dataplane.Engine {
	t.Helper()
	var eng *dataplane.Engine
	err := s.gw.Do(func() error {
		var err error
		eng, err = startUserspace(t, s, p, nil, 1500)
		return err
	})
	if err != nil {
		t.Fatalf("userspace gateway in %s: %v", s.gw.Name, err)
	}
	return eng
}

// checkTraffic pings both ways and moves 4 MB each way over TCP, SHA-256
// verified.
func checkTraffic(t *testing.T, a, b *e2eSite) {
	t.Helper()
	for _, c := range []struct{ from, to *e2eSite }{{a, b}, {b, a}} {
		if _, err := probe.PingEventually(c.from.host.Handle, c.to.hostAddr, 15*time.Second); err != nil {
			t.Fatalf("ping %v -> %v: %v", c.from.hostAddr, c.to.hostAddr, err)
		}
		res, err := probe.Ping(c.from.host.Handle, c.to.hostAddr, 20, 10*time.Millisecond, 2*time.Second, 0)
		if err != nil || res.Loss() > 0 {
			t.Errorf("ping %v -> %v: %+v, %v", c.from.hostAddr, c.to.hostAddr, res, err)
		}
		tr, err := probe.TCPTransfer(c.from.host.Handle, c.to.host.Handle, netip.AddrPortFrom(c.to.hostAddr, 5001), 4<<20, 20*time.Second)
		if err != nil || !tr.OK() {
			t.Fatalf("TCP %v -> %v: %+v, %v", c.from.hostAddr, c.to.hostAddr, tr, err)
		}
		t.Logf("TCP %v -> %v: %.0f Mbit/s", c.from.hostAddr, c.to.hostAddr, tr.Throughput/1e6)
	}
}

// peerStats returns the programs' counters for the peer.
func (g *gateway) peerStats(t *testing.T) PeerStats {
	t.Helper()
	st, err := g.d.Stats()
	if err != nil || len(st.Peers) != 1 {
		t.Fatalf("stats: %+v, %v", st, err)
	}
	return st.Peers[0]
}

func TestTwoSitesEBPF(t *testing.T) {
	for _, c := range []struct {
		name     string
		mode     AttachMode
		offloads [2]bool // LAN offloads at site A, B
		// forwarding on the gateways: the programs' route lookup
		// (bpf_fib_lookup) answers and the next hop goes to
		// bpf_redirect_neigh; off (the namespaces' default), the lookup
		// refuses and bpf_redirect_neigh routes by itself.
		forwarding bool
	}{
		{"tcx", AttachTCX, [2]bool{}, false},
		{"tcx-forwarding", AttachTCX, [2]bool{}, true},
		{"tcx-offloads", AttachTCX, [2]bool{true, true}, false},
		{"tcx-offloads-forwarding", AttachTCX, [2]bool{true, true}, true},
		{"tcx-offloads-one-side", AttachTCX, [2]bool{true, false}, false},
		{"clsact", AttachClsact, [2]bool{}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			a, b := buildSites(t, c.offloads, c.offloads[0])
			if c.forwarding {
				forwardingOn(t, a.gw)
				forwardingOn(t, b.gw)
			}
			ga := startEBPF(t, a, b, c.mode, 1500)
			gb := startEBPF(t, b, a, c.mode, 1500)
			t.Cleanup(func() {
				if t.Failed() {
					for _, g := range []*gateway{ga, gb} {
						st, _ := g.d.Stats()
						t.Logf("programs: %+v\nengine: %+v", st, g.eng.Stats())
					}
				}
			})
			checkTraffic(t, a, b)
			for _, g := range []*gateway{ga, gb} {
				if ps := g.peerStats(t); ps.TxPackets < 1000 || ps.RxPackets < 1000 {
					t.Errorf("the programs carried little: %+v", ps)
				}
			}
			checkForged(t, a, b, ga)
		})
	}
}

// checkForged sends datagrams from b's endpoint (raw socket, so the source
// port is the tunnel's) whose inner source is not b's, and whose inner
// destination is not a's: gateway ga must drop and count them.
func checkForged(t *testing.T, a, b *e2eSite, ga *gateway) {
	t.Helper()
	before, err := ga.d.Stats()
	if err != nil {
		t.Fatal(err)
	}
	spoofed := echoRequest(netip.MustParseAddr("10.66.0.1"), a.hostAddr)
	elsewhere := echoRequest(b.hostAddr, netip.MustParseAddr("10.77.0.1"))
	err = b.gw.Do(func() error {
		for range 5 {
			for _, inner := range [][]byte{spoofed, elsewhere} {
				if err := sendRaw(b.wanAddr, a.wanAddr, tunnelPort, tunnelPort, inner); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, err := ga.d.Stats()
		if err != nil {
			t.Fatal(err)
		}
		src := st.Drops["src_not_allowed"] - before.Drops["src_not_allowed"]
		dst := st.Drops["dst_not_allowed"] - before.Drops["dst_not_allowed"]
		if src == 5 && dst == 5 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("forged datagrams counted: src_not_allowed %d, dst_not_allowed %d, want 5 and 5", src, dst)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// echoRequest is a minimal ICMP echo request from src to dst.
func echoRequest(src, dst netip.Addr) []byte {
	p := []byte{0x45, 0, 0, 28, 0, 1, 0, 0, 64, 1, 0, 0}
	s, d := src.As4(), dst.As4()
	p = append(append(p, s[:]...), d[:]...)
	binary.BigEndian.PutUint16(p[10:], dptestChecksum(p, 0))
	icmp := []byte{8, 0, 0, 0, 0, 1, 0, 1}
	binary.BigEndian.PutUint16(icmp[2:], dptestChecksum(icmp, 0))
	return append(p, icmp...)
}

// sendRaw sends one UDP datagram with any source through a raw socket of
// the calling thread's namespace.
func sendRaw(src, dst netip.Addr, sport, dport uint16, payload []byte) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_RAW)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	udp := make([]byte, 8, 8+len(payload))
	binary.BigEndian.PutUint16(udp, sport)
	binary.BigEndian.PutUint16(udp[2:], dport)
	binary.BigEndian.PutUint16(udp[4:], uint16(8+len(payload)))
	udp = append(udp, payload...)
	ip := []byte{0x45, 0, 0, 0, 0, 0, 0, 0, 64, 17, 0, 0}
	binary.BigEndian.PutUint16(ip[2:], uint16(20+len(udp)))
	s, d := src.As4(), dst.As4()
	ip = append(append(ip, s[:]...), d[:]...)
	binary.BigEndian.PutUint16(ip[10:], dptestChecksum(ip, 0))
	return unix.Sendto(fd, append(ip, udp...), 0, &unix.SockaddrInet4{Addr: d})
}

// TestInteropWithUserspace runs the programs at site A and the agent's
// userspace plain mode (AF_PACKET capture, UDP socket, raw injection) at
// site B: the wire format is the same.
func TestInteropWithUserspace(t *testing.T) {
	for _, c := range []struct {
		name     string
		offloads [2]bool
	}{{"offloads-off", [2]bool{}}, {"lan-offloads-on", [2]bool{true, true}}} {
		t.Run(c.name, func(t *testing.T) {
			// WAN veth offloads stay off here: with them, a datagram's
			// checksums cross the veth unfinished (CHECKSUM_PARTIAL),
			// and a UDP socket hands the userspace engine an inner
			// packet whose checksum nobody completes (see the report).
			a, b := buildSites(t, c.offloads, false)
			ga := startEBPF(t, a, b, AttachAuto, 1500)
			gb := startPlain(t, b, a)
			t.Cleanup(func() {
				if t.Failed() {
					st, _ := ga.d.Stats()
					t.Logf("A programs: %+v\nA engine: %+v\nB engine: %+v", st, ga.eng.Stats(), gb.Stats())
				}
			})
			checkTraffic(t, a, b)
			if ps := ga.peerStats(t); ps.TxPackets < 1000 || ps.RxPackets < 1000 {
				t.Errorf("the programs carried little: %+v", ps)
			}
		})
	}
}

// TestExceptionsAnsweredByEngine: a DF packet too big for the peer's path
// MTU goes from lan_ingress to the userspace engine through the
// exceptions buffer, and the engine answers "fragmentation needed" with
// the tunnel's MTU, as in userspace mode.
func TestExceptionsAnsweredByEngine(t *testing.T) {
	a, b := buildSites(t, [2]bool{}, false)
	ga := startEBPF(t, a, b, AttachAuto, 1400)
	startEBPF(t, b, a, AttachAuto, 1400)
	if _, err := probe.PingEventually(a.host.Handle, b.hostAddr, 15*time.Second); err != nil {
		t.Fatal(err)
	}
	res, err := probe.PingWith(a.host.Handle, b.hostAddr, probe.PingOptions{Count: 3, Size: 1400, DF: true, Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if mtu, ok := res.FragNeeded(); !ok || mtu != 1400-28 {
		t.Fatalf("want fragmentation needed with MTU 1372 from the gateway, got %+v", res)
	}
	st, err := ga.d.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.ToUserspace["too_big"] == 0 || st.Drops["exception_lost"] != 0 {
		t.Errorf("exceptions: %+v", st)
	}
	if es := ga.eng.Stats(); es.ICMPSent == 0 || es.Drops["too_big"] == 0 {
		t.Errorf("engine did not answer: %+v", es)
	}
}

package topo

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"tunnel-agent/internal/nstest"
	"tunnel-agent/internal/nsutil"
	"tunnel-agent/internal/probe"
)

func build(t *testing.T, o Options) *Topology {
	t.Helper()
	nstest.RequireRoot(t)
	if o.Prefix == "" {
		o.Prefix = nstest.UniqueName("tt")
	}
	topo, err := Build(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := topo.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
		assertGone(t, o.Prefix)
	})
	return topo
}

// assertGone fails unless no namespace under /run/netns starts with prefix.
func assertGone(t *testing.T, prefix string) {
	t.Helper()
	left, _ := filepath.Glob(filepath.Join(netnsDir, prefix+"*"))
	if len(left) > 0 {
		t.Errorf("namespaces left behind: %v", left)
	}
}

type linkWant struct {
	ns, link string
	addr     netip.Prefix
	mtu      int
}

func checkLinks(t *testing.T, topo *Topology, want []linkWant, offloads bool) {
	t.Helper()
	for _, w := range want {
		nl := topo.Netlink(w.ns)
		if nl == nil {
			t.Fatalf("no netlink handle for %s", w.ns)
		}
		l, err := nl.LinkByName(w.link)
		if err != nil {
			t.Fatalf("%s/%s: %v", w.ns, w.link, err)
		}
		if l.Type() != "veth" || l.Attrs().MTU != w.mtu || l.Attrs().Flags&unix.IFF_UP == 0 {
			t.Errorf("%s/%s: type %s mtu %d flags %v, want an up veth with mtu %d", w.ns, w.link, l.Type(), l.Attrs().MTU, l.Attrs().Flags, w.mtu)
		}
		addrs, err := nl.AddrList(l, netlink.FAMILY_V4)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, a := range addrs {
			got = append(got, a.IPNet.String())
		}
		if len(got) != 1 || got[0] != w.addr.String() {
			t.Errorf("%s/%s: addresses %v, want %s", w.ns, w.link, got, w.addr)
		}
		f, err := topo.ChecksumOffloads(w.ns, w.link)
		if err != nil {
			t.Fatal(err)
		}
		if f["rx-checksum"] != offloads || f["tx-checksum-ip-generic"] != offloads {
			t.Errorf("%s/%s: checksum offloads %v, want all %v", w.ns, w.link, f, offloads)
		}
		if v, _ := topo.Sysctl(w.ns, "net/ipv4/conf/"+w.link+"/rp_filter"); v != "0" {
			t.Errorf("%s/%s: rp_filter %q", w.ns, w.link, v)
		}
	}
}

func checkSysctls(t *testing.T, topo *Topology) {
	t.Helper()
	for _, ns := range topo.Namespaces() {
		wantFwd := "1"
		if ns == topo.Client {
			wantFwd = "0"
		}
		for key, want := range map[string]string{
			"net/ipv4/ip_forward":             wantFwd,
			"net/ipv4/conf/all/rp_filter":     "0",
			"net/ipv4/conf/default/rp_filter": "0",
		} {
			if v, err := topo.Sysctl(ns, key); err != nil || v != want {
				t.Errorf("%s: %s = %q (%v), want %s", ns, key, v, err, want)
			}
		}
	}
}

func defaultGW(t *testing.T, topo *Topology, ns string) netip.Addr {
	t.Helper()
	routes, err := topo.Netlink(ns).RouteList(nil, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range routes {
		if r.Dst == nil || r.Dst.IP.IsUnspecified() {
			a, _ := netip.AddrFromSlice(r.Gw)
			return a.Unmap()
		}
	}
	return netip.Addr{}
}

func TestBuildNAT(t *testing.T) {
	topo := build(t, Options{Prefix: nstest.UniqueName("tt"), NAT: true})

	for _, ns := range []string{topo.Client, topo.GatewayA, topo.NAT, topo.GatewayB} {
		if _, err := os.Stat(filepath.Join(netnsDir, ns)); err != nil || !strings.HasPrefix(ns, topo.Prefix) {
			t.Fatalf("namespace %q: %v", ns, err)
		}
	}
	checkLinks(t, topo, []linkWant{
		{topo.Client, ClientLink, ClientAddr, DefaultLANMTU},
		{topo.GatewayA, GatewayALANLink, GatewayALANAddr, DefaultLANMTU},
		{topo.GatewayA, GatewayAWANLink, GatewayAWANAddr, WANMTU},
		{topo.NAT, NATInLink, NATInsideAddr, WANMTU},
		{topo.NAT, NATOutLink, NATOutsideAddr, WANMTU},
		{topo.GatewayB, GatewayBWANLink, GatewayBWANAddr, WANMTU},
	}, false)
	checkSysctls(t, topo)
	if gw := defaultGW(t, topo, topo.Client); gw != GatewayALANAddr.Addr() {
		t.Errorf("client default gateway %v", gw)
	}
	if gw := defaultGW(t, topo, topo.GatewayA); gw != NATInsideAddr.Addr() {
		t.Errorf("gateway A default gateway %v", gw)
	}
	if topo.GatewayAPublic != NATOutsideAddr.Addr() || topo.SiteBHost.String() != "11.11.11.100/24" || topo.SiteALAN.String() != "192.168.111.0/24" {
		t.Errorf("addresses: %+v", topo)
	}

	cli, gwa, gwb := topo.Handle(topo.Client), topo.Handle(topo.GatewayA), topo.Handle(topo.GatewayB)
	bAddr := topo.GatewayBWAN.Addr()

	t.Run("ping", func(t *testing.T) {
		for _, c := range []struct {
			from string
			dst  netip.Addr
		}{{topo.Client, topo.GatewayALAN.Addr()}, {topo.GatewayA, topo.ClientAddr.Addr()},
			{topo.GatewayA, topo.NATInside.Addr()}, {topo.GatewayA, bAddr}, {topo.GatewayB, topo.NATOutside.Addr()}} {
			if _, err := probe.PingEventually(topo.Handle(c.from), c.dst, 10*time.Second); err != nil {
				t.Errorf("from %s: %v", c.from, err)
			}
		}
		// The LAN MTU: a full-size DF ping from the client fits exactly.
		r, err := probe.PingWith(cli, topo.GatewayALAN.Addr(), probe.PingOptions{Count: 3, Timeout: 5 * time.Second, Size: DefaultLANMTU, DF: true})
		if err != nil || r.Received == 0 || r.TooBig > 0 {
			t.Errorf("ping %d DF: %+v, %v", DefaultLANMTU, r, err)
		}
		// Site A's LAN is not reachable from outside except through a tunnel.
		r, err = probe.PingWith(cli, bAddr, probe.PingOptions{Timeout: 300 * time.Millisecond})
		if err != nil || r.Received != 0 {
			t.Errorf("client reached gateway B natively: %+v, %v", r, err)
		}
	})

	t.Run("tcp through NAT", func(t *testing.T) {
		r, err := probe.TCPTransfer(gwa, gwb, netip.AddrPortFrom(bAddr, 0), 1<<20, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if r.Peer.Addr() != topo.NATOutside.Addr() || r.Local.Addr() != topo.GatewayAWAN.Addr() {
			t.Fatalf("gateway B saw %v (sender %v), want the NAT's %v", r.Peer, r.Local, topo.NATOutside.Addr())
		}
	})

	t.Run("udp, mappings, flush and port range", func(t *testing.T) {
		src := netip.AddrPortFrom(topo.GatewayAWAN.Addr(), 60000)
		dst := netip.AddrPortFrom(bAddr, 50000)
		burst := func() probe.UDPResult {
			t.Helper()
			r, err := probe.UDPBurstWith(gwa, gwb, dst, probe.UDPOptions{Count: 50, Payload: 200, Rate: 10000, Timeout: 3 * time.Second, Src: src})
			if err != nil || r.Received != 50 || len(r.Sources) != 1 {
				t.Fatalf("udp burst: %+v, %v", r, err)
			}
			return r
		}
		r := burst()
		if r.Sources[0].Addr() != topo.NATOutside.Addr() {
			t.Fatalf("gateway B saw %v, want the NAT's address", r.Sources[0])
		}
		m := findMapping(t, topo, src)
		if m == nil || m.Outside != r.Sources[0] || m.Remote != dst || m.Proto != unix.IPPROTO_UDP {
			t.Fatalf("mapping of %v: %+v (seen %v)", src, m, r.Sources[0])
		}

		if err := topo.FlushNAT(); err != nil {
			t.Fatal(err)
		}
		if m := findMapping(t, topo, src); m != nil {
			t.Fatalf("mapping survived the flush: %+v", m)
		}

		if err := topo.SetNATPorts(40000, 40099); err != nil {
			t.Fatal(err)
		}
		if lo, hi := topo.NATPorts(); lo != 40000 || hi != 40099 {
			t.Fatalf("NATPorts %d-%d", lo, hi)
		}
		r = burst()
		if p := r.Sources[0].Port(); r.Sources[0].Addr() != topo.NATOutside.Addr() || p < 40000 || p > 40099 {
			t.Fatalf("after SetNATPorts gateway B saw %v", r.Sources[0])
		}
		if err := topo.SetNATPorts(0, 0); err != nil {
			t.Fatal(err)
		}
		if r = burst(); r.Sources[0].Port() != 60000 {
			t.Fatalf("after resetting the port range gateway B saw %v", r.Sources[0])
		}
		if err := topo.SetNATPorts(5, 4); err == nil {
			t.Fatal("bad range accepted")
		}
	})
}

func findMapping(t *testing.T, topo *Topology, inside netip.AddrPort) *Mapping {
	t.Helper()
	ms, err := topo.NATMappings()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if m.Inside == inside {
			return &m
		}
	}
	return nil
}

func TestBuildDirect(t *testing.T) {
	topo := build(t, Options{LANMTU: 1500, Offloads: true})
	if topo.NAT != "" || len(topo.Namespaces()) != 3 {
		t.Fatalf("namespaces %v (NAT %q)", topo.Namespaces(), topo.NAT)
	}
	checkLinks(t, topo, []linkWant{
		{topo.Client, ClientLink, ClientAddr, 1500},
		{topo.GatewayA, GatewayALANLink, GatewayALANAddr, 1500},
		{topo.GatewayA, GatewayAWANLink, GatewayADirect, WANMTU},
		{topo.GatewayB, GatewayBWANLink, GatewayBWANAddr, WANMTU},
	}, true)
	checkSysctls(t, topo)
	if gw := defaultGW(t, topo, topo.GatewayA); gw.IsValid() {
		t.Errorf("gateway A has a default route via %v without NAT", gw)
	}
	if topo.GatewayAPublic != GatewayADirect.Addr() {
		t.Errorf("GatewayAPublic %v", topo.GatewayAPublic)
	}
	r, err := probe.TCPTransfer(topo.Handle(topo.GatewayA), topo.Handle(topo.GatewayB), netip.AddrPortFrom(topo.GatewayBWAN.Addr(), 0), 256<<10, 5*time.Second)
	if err != nil || r.Peer.Addr() != GatewayADirect.Addr() {
		t.Fatalf("tcp A→B: %+v, %v", r, err)
	}
	if err := topo.FlushNAT(); !errors.Is(err, ErrNoNAT) {
		t.Errorf("FlushNAT without NAT: %v", err)
	}
	if err := topo.SetNATPorts(1, 2); !errors.Is(err, ErrNoNAT) {
		t.Errorf("SetNATPorts without NAT: %v", err)
	}
}

func TestCloseRemovesEverything(t *testing.T) {
	nstest.RequireRoot(t)
	prefix := nstest.UniqueName("tt")
	topo, err := Build(Options{Prefix: prefix, NAT: true})
	if err != nil {
		t.Fatal(err)
	}
	// An agent's site-B namespace left behind is removed too.
	h, err := nsutil.NewNamed(topo.SiteBNS)
	if err != nil {
		topo.Close()
		t.Fatal(err)
	}
	h.Close()
	if err := topo.Close(); err != nil {
		t.Fatal(err)
	}
	assertGone(t, prefix)
	if err := topo.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if topo.Handle(topo.Client).IsOpen() || topo.Netlink(topo.Client) != nil {
		t.Fatal("handles still offered after Close")
	}
	if err := topo.FlushNAT(); err == nil {
		t.Fatal("FlushNAT after Close succeeded")
	}
}

func TestBuildFailsHalfWayAndCleansUp(t *testing.T) {
	nstest.RequireRoot(t)
	t.Cleanup(func() { testHook = nil })
	var steps []string
	for k := 1; ; k++ {
		prefix := nstest.UniqueName("tt")
		calls := 0
		testHook = func(step string) error {
			calls++
			if calls == k {
				steps = append(steps, step)
				return fmt.Errorf("injected failure at %s", step)
			}
			return nil
		}
		topo, err := Build(Options{Prefix: prefix, NAT: true})
		if err == nil {
			topo.Close()
			break
		}
		if !strings.Contains(err.Error(), "injected failure") || !strings.Contains(err.Error(), prefix) {
			t.Errorf("step %d: error %v", k, err)
		}
		assertGone(t, prefix)
		if k > 50 {
			t.Fatal("Build never succeeds")
		}
	}
	testHook = nil
	if len(steps) < 10 || !strings.HasPrefix(steps[len(steps)-1], "nftables") {
		t.Errorf("steps covered: %v", steps)
	}
}

func TestBuildRefusesExistingPrefix(t *testing.T) {
	topo := build(t, Options{})
	if _, err := Build(Options{Prefix: topo.Prefix}); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("second Build with the same prefix: %v", err)
	}
	// The first topology is untouched.
	for _, ns := range topo.Namespaces() {
		if _, err := os.Stat(filepath.Join(netnsDir, ns)); err != nil {
			t.Fatalf("namespace %s of the first topology: %v", ns, err)
		}
	}
	if _, err := probe.PingEventually(topo.Handle(topo.Client), topo.GatewayALAN.Addr(), 10*time.Second); err != nil {
		t.Fatalf("first topology broken: %v", err)
	}
}

func TestOptionsValidation(t *testing.T) {
	for _, o := range []Options{{}, {Prefix: "bad/name"}, {Prefix: strings.Repeat("x", 33)}, {Prefix: "ok", LANMTU: 100}} {
		if _, err := Build(o); err == nil {
			t.Errorf("Build(%+v) succeeded", o)
		}
	}
}

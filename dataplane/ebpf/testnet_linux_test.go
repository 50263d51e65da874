package ebpf

import (
	"net"
	"net/netip"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"tunnel-agent/internal/nstest"
)

// testNet is one namespace holding a gateway's two interfaces, for the
// BPF_PROG_TEST_RUN tests: the programs' route lookups (bpf_fib_lookup)
// read the routing tables of the namespace the test run happens in, so
// the runs happen in here (ns.Do), never in the caller's namespace. No
// packet is sent: a test run returns the redirect verdict without doing
// it.
type testNet struct {
	ns       *nstest.NS
	lan, wan netlink.Link
	neighMAC net.HardwareAddr // of every neighbour, on both sides
}

// The WAN addresses: this gateway, and the endpoints (on-link neighbours).
var (
	wanAddr4 = netip.MustParsePrefix("198.51.100.254/24")
	wanAddr6 = netip.MustParsePrefix("2001:db8::fe/64")
	lanAddr4 = netip.MustParsePrefix("192.168.111.1/24")
	lanAddr6 = netip.MustParsePrefix("fd00:111::1/64")
)

// newTestNet builds lan0 (peer lanp) and wan0 (peer wanp) in a new
// namespace, with addresses, and neighbour entries with neighMAC for the
// given neighbours on each side.
func newTestNet(t testing.TB, wanNeigh, lanNeigh []netip.Addr) *testNet {
	t.Helper()
	n := &testNet{ns: nstest.New(t, "ebpf"), neighMAC: net.HardwareAddr{2, 0, 0, 0, 0, 0x99}}
	n.lan = n.veth(t, "lan0", "lanp", []netip.Prefix{lanAddr4, lanAddr6}, lanNeigh)
	n.wan = n.veth(t, "wan0", "wanp", []netip.Prefix{wanAddr4, wanAddr6}, wanNeigh)
	return n
}

func (n *testNet) veth(t testing.TB, name, peer string, addrs []netip.Prefix, neigh []netip.Addr) netlink.Link {
	t.Helper()
	nl := n.ns.NL
	la := netlink.NewLinkAttrs()
	la.Name = name
	if err := nl.LinkAdd(&netlink.Veth{LinkAttrs: la, PeerName: peer}); err != nil {
		t.Fatalf("veth %s: %v", name, err)
	}
	l, err := nl.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		addr := &netlink.Addr{IPNet: prefixNet(a), Flags: unix.IFA_F_NODAD}
		if err := nl.AddrAdd(l, addr); err != nil {
			t.Fatalf("address %v on %s: %v", a, name, err)
		}
	}
	for _, ifname := range []string{name, peer} {
		pl, err := nl.LinkByName(ifname)
		if err == nil {
			err = nl.LinkSetUp(pl)
		}
		if err != nil {
			t.Fatalf("up %s: %v", ifname, err)
		}
	}
	for _, a := range neigh {
		fam := unix.AF_INET
		if a.Is6() {
			fam = unix.AF_INET6
		}
		err := nl.NeighAdd(&netlink.Neigh{LinkIndex: l.Attrs().Index, Family: fam, State: netlink.NUD_PERMANENT,
			IP: a.AsSlice(), HardwareAddr: n.neighMAC})
		if err != nil {
			t.Fatalf("neighbour %v on %s: %v", a, name, err)
		}
	}
	l, err = nl.LinkByName(name) // with its MAC and state filled
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func prefixNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

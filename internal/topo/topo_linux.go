package topo

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"tunnel-agent/internal/nsutil"
)

// Link names inside the namespaces.
const (
	ClientLink       = "eth0"  // Client's LAN link (peer of GatewayA's lan0)
	GatewayALANLink  = "lan0"  // GatewayA's LAN link (the tutorial's enp6s0)
	GatewayAWANLink  = "wan0"  // GatewayA's WAN link (to the NAT, or to GatewayB without NAT)
	NATInLink        = "in0"   // NAT's inside link (peer of GatewayA's wan0)
	NATOutLink       = "out0"  // NAT's outside link (peer of GatewayB's eth0)
	GatewayBWANLink  = "eth0"  // GatewayB's WAN link
	SiteBGatewayLink = "veth0" // GatewayB's link to site B's host (created by the agent)
	SiteBHostLink    = "veth1" // site B's host's link in SiteBNS (created by the agent)
)

// DefaultLANMTU is the LAN MTU of the tutorial (1500 less the UDP
// encapsulation overhead, rounded down).
const DefaultLANMTU = 1420

// WANMTU is the MTU of the WAN links (GatewayA–NAT–GatewayB).
const WANMTU = 1500

// The tutorial's addresses, with its public Internet addresses moved into
// the benchmarking range 198.18.0.0/15.
var (
	ClientAddr       = netip.MustParsePrefix("192.168.111.2/24")
	GatewayALANAddr  = netip.MustParsePrefix("192.168.111.1/24")
	GatewayAWANAddr  = netip.MustParsePrefix("192.168.100.5/24") // behind the NAT
	GatewayADirect   = netip.MustParsePrefix("198.18.0.3/24")    // without NAT
	NATInsideAddr    = netip.MustParsePrefix("192.168.100.1/24")
	NATOutsideAddr   = netip.MustParsePrefix("198.18.0.1/24")
	GatewayBWANAddr  = netip.MustParsePrefix("198.18.0.2/24")
	SiteBGatewayAddr = netip.MustParsePrefix("11.11.11.1/24")
	SiteBHostAddr    = netip.MustParsePrefix("11.11.11.100/24")
)

// Options says what Build creates.
type Options struct {
	// Prefix starts every namespace name (unique per run, e.g.
	// "tademo1a2b3c"): 1 to 32 characters of [A-Za-z0-9_.-].
	Prefix string
	// NAT puts GatewayA behind a masquerading NAT router (the tutorial's
	// topology).
	NAT bool
	// LANMTU is the MTU of the Client–GatewayA link; 0 means DefaultLANMTU.
	LANMTU int
	// Offloads leaves the rx/tx checksum offloads of the veths on (by
	// default they are switched off, as in the tutorial).
	Offloads bool
	// IPv6 keeps IPv6 on in the namespaces and adds IPv6 addresses
	// (ipv6_linux.go); by default IPv6 is disabled.
	IPv6 bool
}

// Topology is a built topology. Its fields are read-only. Close removes it.
type Topology struct {
	Prefix string
	NATed  bool // built with Options.NAT
	LANMTU int

	// Namespace names (under /run/netns). NAT is "" without Options.NAT.
	Client, GatewayA, NAT, GatewayB string
	// SiteBNS is the name reserved for site B's host namespace (the
	// tutorial's ns1), which GatewayB's agent creates; Build does not
	// create it, Close removes it if it was left behind.
	SiteBNS string

	// Addresses with their prefix lengths (see the package doc).
	ClientAddr     netip.Prefix // Client eth0
	GatewayALAN    netip.Prefix // GatewayA lan0
	GatewayAWAN    netip.Prefix // GatewayA wan0: 192.168.100.5/24 with NAT, 198.18.0.3/24 without
	NATInside      netip.Prefix // NAT in0 (invalid without NAT)
	NATOutside     netip.Prefix // NAT out0 (invalid without NAT)
	GatewayBWAN    netip.Prefix // GatewayB eth0
	GatewayAPublic netip.Addr   // GatewayA's source address as GatewayB sees it (NAT out0 or wan0)
	SiteALAN       netip.Prefix // 192.168.111.0/24
	SiteBGateway   netip.Prefix // GatewayB veth0, 11.11.11.1/24 (made by the agent)
	SiteBHost      netip.Prefix // SiteBNS veth1, 11.11.11.100/24 (made by the agent)
	SiteBLAN       netip.Prefix // 11.11.11.0/24

	// With Options.IPv6 (ipv6_linux.go); invalid otherwise. The WAN
	// addresses are set only without NAT.
	IPv6                                 bool
	ClientAddr6, GatewayALAN6, SiteALAN6 netip.Prefix
	GatewayAWAN6, GatewayBWAN6           netip.Prefix
	SiteBGateway6, SiteBHost6, SiteBLAN6 netip.Prefix

	mu      sync.Mutex
	closed  bool
	order   []string // namespaces created, in creation order
	nss     map[string]*nsState
	natPort [2]uint16 // masquerade port range; {0, 0} = any
}

type nsState struct {
	name string
	h    netns.NsHandle
	nl   *netlink.Handle
}

// testHook, when set by a test, is called before each build step and
// makes Build fail with its error.
var testHook func(step string) error

const netnsDir = "/run/netns"

// Build creates the topology. On error it removes everything it created
// and returns an error saying which step failed.
func Build(o Options) (_ *Topology, err error) {
	if err := validPrefix(o.Prefix); err != nil {
		return nil, err
	}
	if o.LANMTU == 0 {
		o.LANMTU = DefaultLANMTU
	}
	if o.LANMTU < 576 || o.LANMTU > 65535 {
		return nil, fmt.Errorf("topology: LAN MTU %d out of range (576..65535)", o.LANMTU)
	}
	t := &Topology{
		Prefix:       o.Prefix,
		NATed:        o.NAT,
		LANMTU:       o.LANMTU,
		Client:       o.Prefix + "-cli",
		GatewayA:     o.Prefix + "-gwa",
		GatewayB:     o.Prefix + "-gwb",
		SiteBNS:      o.Prefix + "-ns1",
		ClientAddr:   ClientAddr,
		GatewayALAN:  GatewayALANAddr,
		GatewayBWAN:  GatewayBWANAddr,
		SiteALAN:     ClientAddr.Masked(),
		SiteBGateway: SiteBGatewayAddr,
		SiteBHost:    SiteBHostAddr,
		SiteBLAN:     SiteBHostAddr.Masked(),
		nss:          map[string]*nsState{},
	}
	if o.NAT {
		t.NAT = o.Prefix + "-nat"
		t.GatewayAWAN = GatewayAWANAddr
		t.NATInside = NATInsideAddr
		t.NATOutside = NATOutsideAddr
		t.GatewayAPublic = NATOutsideAddr.Addr()
	} else {
		t.GatewayAWAN = GatewayADirect
		t.GatewayAPublic = GatewayADirect.Addr()
	}
	t.fillIPv6(o)
	defer func() {
		if err != nil {
			if cerr := t.Close(); cerr != nil {
				err = fmt.Errorf("%w (and cleaning up: %v)", err, cerr)
			}
		}
	}()
	if err := t.build(o); err != nil {
		return nil, fmt.Errorf("topology %s: %w", o.Prefix, err)
	}
	return t, nil
}

func validPrefix(p string) error {
	if p == "" || len(p) > 32 {
		return fmt.Errorf("topology: prefix %q must have 1 to 32 characters", p)
	}
	for _, c := range p {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-'
		if !ok {
			return fmt.Errorf("topology: prefix %q may only hold letters, digits, '_', '.' and '-'", p)
		}
	}
	return nil
}

func step(name string) error {
	if testHook != nil {
		return testHook(name)
	}
	return nil
}

func (t *Topology) build(o Options) error {
	names := t.Namespaces()
	if _, err := os.Stat(filepath.Join(netnsDir, t.SiteBNS)); err == nil {
		return fmt.Errorf("namespace %s already exists (prefix in use?)", t.SiteBNS)
	}
	for _, name := range names {
		if err := step("namespace " + name); err != nil {
			return err
		}
		if err := t.newNS(name); err != nil {
			return err
		}
	}

	// Sysctls before any link exists, so that new links inherit them.
	for _, name := range names {
		if err := step("sysctl " + name); err != nil {
			return err
		}
		kv := append([]sysctl{
			{"net/ipv4/conf/all/rp_filter", "0", false},
			{"net/ipv4/conf/default/rp_filter", "0", false},
		}, ipv6Sysctls(o.IPv6, name != t.Client)...)
		if name != t.Client {
			kv = append(kv, sysctl{"net/ipv4/ip_forward", "1", false})
		}
		if err := writeSysctls(t.nss[name].h, kv); err != nil {
			return fmt.Errorf("sysctls in %s: %w", name, err)
		}
	}

	cli, gwa, gwb := t.nss[t.Client], t.nss[t.GatewayA], t.nss[t.GatewayB]
	type end struct {
		ns   *nsState
		link string
		addr netip.Prefix
	}
	type pair struct {
		a, b end
		mtu  int
	}
	pairs := []pair{{end{cli, ClientLink, t.ClientAddr}, end{gwa, GatewayALANLink, t.GatewayALAN}, o.LANMTU}}
	if o.NAT {
		nat := t.nss[t.NAT]
		pairs = append(pairs,
			pair{end{gwa, GatewayAWANLink, t.GatewayAWAN}, end{nat, NATInLink, t.NATInside}, WANMTU},
			pair{end{nat, NATOutLink, t.NATOutside}, end{gwb, GatewayBWANLink, t.GatewayBWAN}, WANMTU})
	} else {
		pairs = append(pairs, pair{end{gwa, GatewayAWANLink, t.GatewayAWAN}, end{gwb, GatewayBWANLink, t.GatewayBWAN}, WANMTU})
	}
	for _, p := range pairs {
		if err := step("veth " + p.a.ns.name + "/" + p.a.link); err != nil {
			return err
		}
		if err := addVeth(p.a.ns, p.a.link, p.b.ns, p.b.link, p.mtu); err != nil {
			return err
		}
		for _, e := range []end{p.a, p.b} {
			if err := setupLink(e.ns, e.link, e.addr, o.Offloads); err != nil {
				return err
			}
		}
	}

	if err := step("routes"); err != nil {
		return err
	}
	if err := addDefaultRoute(cli, t.GatewayALAN.Addr()); err != nil {
		return err
	}
	if err := t.buildIPv6(); err != nil {
		return err
	}
	if o.NAT {
		if err := addDefaultRoute(gwa, t.NATInside.Addr()); err != nil {
			return err
		}
		if err := step("nftables"); err != nil {
			return err
		}
		if err := t.installMasquerade(0, 0); err != nil {
			return fmt.Errorf("masquerade in %s: %w", t.NAT, err)
		}
	}
	return nil
}

// newNS creates the named namespace, a netlink handle inside it, and
// brings its lo up. A namespace is recorded (for Close) as soon as it
// exists.
func (t *Topology) newNS(name string) error {
	path := filepath.Join(netnsDir, name)
	if _, err := os.Stat(path); err == nil {
		return fmt.Errorf("namespace %s already exists (prefix in use?)", name)
	}
	h, err := nsutil.NewNamed(name)
	if err != nil {
		// netns.NewNamed leaves its empty mount-point file behind when the
		// bind mount fails; the file did not exist before, so it is ours.
		_ = os.Remove(path)
		if errors.Is(err, unix.EPERM) {
			return fmt.Errorf("create namespace %s: %w (needs root)", name, err)
		}
		return fmt.Errorf("create namespace %s: %w", name, err)
	}
	s := &nsState{name: name, h: h}
	t.mu.Lock()
	t.order = append(t.order, name)
	t.nss[name] = s
	t.mu.Unlock()
	err = nsutil.Do(h, func() error {
		var err error
		// Opened inside the namespace; ROUTE, and NETFILTER for the NAT
		// router's conntrack table, but not XFRM (see netcfg.NetlinkHost).
		s.nl, err = netlink.NewHandle(unix.NETLINK_ROUTE, unix.NETLINK_NETFILTER)
		return err
	})
	if err != nil {
		return fmt.Errorf("netlink in namespace %s: %w", name, err)
	}
	lo, err := s.nl.LinkByName("lo")
	if err == nil {
		err = s.nl.LinkSetUp(lo)
	}
	if err != nil {
		return fmt.Errorf("bring lo up in %s: %w", name, err)
	}
	return nil
}

// addVeth creates the veth pair aName (in a) – bName (in b), both ends
// with the given MTU, created inside a with the peer placed directly in b.
func addVeth(a *nsState, aName string, b *nsState, bName string, mtu int) error {
	attrs := netlink.NewLinkAttrs()
	attrs.Name = aName
	attrs.MTU = mtu
	v := netlink.NewVeth(attrs)
	v.PeerName = bName
	v.PeerMTU = uint32(mtu)
	v.PeerNamespace = netlink.NsFd(int(b.h))
	if err := a.nl.LinkAdd(v); err != nil {
		return fmt.Errorf("create veth pair %s/%s – %s/%s: %w", a.name, aName, b.name, bName, err)
	}
	return nil
}

// setupLink gives a link its address, switches its checksum offloads off
// (unless offloads), turns its rp_filter off and brings it up.
func setupLink(s *nsState, link string, addr netip.Prefix, offloads bool) error {
	where := s.name + "/" + link
	l, err := s.nl.LinkByName(link)
	if err != nil {
		return fmt.Errorf("link %s: %w", where, err)
	}
	a := &netlink.Addr{IPNet: &net.IPNet{IP: addr.Addr().AsSlice(), Mask: net.CIDRMask(addr.Bits(), 32)}}
	if err := s.nl.AddrAdd(l, a); err != nil {
		return fmt.Errorf("add address %s to %s: %w", addr, where, err)
	}
	if err := writeSysctls(s.h, []sysctl{{"net/ipv4/conf/" + link + "/rp_filter", "0", false}}); err != nil {
		return fmt.Errorf("rp_filter of %s: %w", where, err)
	}
	if !offloads {
		if err := checksumOffloadsOff(s.h, link); err != nil {
			return fmt.Errorf("switch checksum offloads of %s off: %w", where, err)
		}
	}
	if err := s.nl.LinkSetUp(l); err != nil {
		return fmt.Errorf("bring %s up: %w", where, err)
	}
	return nil
}

// AddLink adds one more veth pair between two of the topology's
// namespaces (a second WAN path, for instance): linkA with addrA in nsA,
// linkB with addrB in nsB, WANMTU, set up like the others (checksum
// offloads off unless offloads, rp_filter off, up). Close removes it with
// the namespaces.
func (t *Topology) AddLink(nsA, linkA string, addrA netip.Prefix, nsB, linkB string, addrB netip.Prefix, offloads bool) error {
	t.mu.Lock()
	a, b := t.nss[nsA], t.nss[nsB]
	closed := t.closed
	t.mu.Unlock()
	if a == nil || b == nil || closed {
		return fmt.Errorf("topology %s: no namespaces %q and %q", t.Prefix, nsA, nsB)
	}
	if err := addVeth(a, linkA, b, linkB, WANMTU); err != nil {
		return err
	}
	if err := setupLink(a, linkA, addrA, offloads); err != nil {
		return err
	}
	return setupLink(b, linkB, addrB, offloads)
}

func addDefaultRoute(s *nsState, gw netip.Addr) error {
	r := &netlink.Route{
		Dst: &net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)},
		Gw:  gw.AsSlice(),
	}
	if err := s.nl.RouteAdd(r); err != nil {
		return fmt.Errorf("default route via %s in %s: %w", gw, s.name, err)
	}
	return nil
}

// Namespaces returns the names of the namespaces the topology consists
// of, in creation order (SiteBNS is not among them).
func (t *Topology) Namespaces() []string {
	names := []string{t.Client, t.GatewayA}
	if t.NAT != "" {
		names = append(names, t.NAT)
	}
	return append(names, t.GatewayB)
}

// Handle returns the handle of one of the topology's namespaces (by
// name), for the probes and for netlink.NewHandleAt. It stays owned by
// the topology and is closed by Close. It returns netns.None() for an
// unknown name.
func (t *Topology) Handle(ns string) netns.NsHandle {
	t.mu.Lock()
	defer t.mu.Unlock()
	if s := t.nss[ns]; s != nil && !t.closed {
		return s.h
	}
	return netns.None()
}

// Netlink returns a netlink handle bound to one of the topology's
// namespaces (nil for an unknown name). It is owned by the topology.
func (t *Topology) Netlink(ns string) *netlink.Handle {
	t.mu.Lock()
	defer t.mu.Unlock()
	if s := t.nss[ns]; s != nil && !t.closed {
		return s.nl
	}
	return nil
}

// Do runs fn on a locked OS thread inside namespace ns (see nsutil.Do):
// sockets fn opens stay in that namespace.
func (t *Topology) Do(ns string, fn func() error) error {
	h := t.Handle(ns)
	if !h.IsOpen() {
		return fmt.Errorf("topology %s: no namespace %q", t.Prefix, ns)
	}
	return nsutil.Do(h, fn)
}

// Close removes every namespace Build created (the kernel then removes
// their veths, addresses, routes and nftables tables), and SiteBNS if an
// agent left it behind. It is safe to call more than once; handles from
// Handle and Netlink are invalid afterwards.
func (t *Topology) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil
	}
	t.closed = true
	var errs []error
	for i := len(t.order) - 1; i >= 0; i-- {
		s := t.nss[t.order[i]]
		if s.nl != nil {
			s.nl.Close()
		}
		s.h.Close()
		if err := deleteNamed(s.name); err != nil {
			errs = append(errs, err)
		}
	}
	if _, err := os.Stat(filepath.Join(netnsDir, t.SiteBNS)); err == nil && len(t.order) > 0 {
		if err := deleteNamed(t.SiteBNS); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// deleteNamed removes a named namespace (its bind mount and file).
func deleteNamed(name string) error {
	err := netns.DeleteNamed(name)
	switch {
	case err == nil, errors.Is(err, fs.ErrNotExist):
		return nil
	case errors.Is(err, unix.EINVAL): // a file that is no mount point
		if rerr := os.Remove(filepath.Join(netnsDir, name)); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
			return fmt.Errorf("remove namespace %s: %w", name, rerr)
		}
		return nil
	}
	return fmt.Errorf("remove namespace %s: %w", name, err)
}

package netcfg

import (
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// fakeHost is an in-memory Host that behaves like the kernel where netcfg
// can tell: namespaces hold links, a veth pair dies as a whole (deleting
// either end, or the namespace of either end, deletes both), links hold
// addresses and ethtool features, and each namespace has a main routing
// table keyed as the kernel's is: by destination and metric (a route
// added without a metric gets the family's default, 0 for IPv4 and 1024
// for IPv6), one route per key.
//
// Kernel behaviour it reproduces because Apply and Revert can run into it:
//   - a new namespace has lo, down, without addresses; bringing lo up adds
//     127.0.0.1/8 (which stays when lo goes down again);
//   - an IPv4 address on an up link (other than lo, shorter than /32)
//     brings its connected route (proto kernel, scope link, src the
//     address); bringing the link up adds them, bringing it down flushes
//     every route through the link, and so does deleting its last IPv4
//     address or deleting the link;
//   - a gateway route needs the gateway inside a connected (scope link)
//     route of an up link, and records that link as its dev; a route with
//     a dev needs the dev up;
//   - AddRoute fails with ErrExists when the key is taken; ReplaceRoute
//     replaces the route with the key;
//   - DelRoute matches the type, protocol, gateway, dev and source it is
//     given (zero values match anything) and the scope exactly; an IPv6
//     metric must match unless it is 0 (any), and an IPv4 metric picks
//     the routes from that metric up (the kernel looks for the first
//     route at or above it: `ip route del X proto static` deletes the
//     static route at metric 100);
//   - ethtool: unknown feature names fail the whole request, features the
//     device cannot change are silently ignored (the kernel masks them
//     off), fixed features have Requested false (the kernel's "wanted"
//     bits exclude them), TSO is only active while scatter-gather and a
//     TX checksum are, GSO only while scatter-gather is.
//
// Where it differs: the kernel destroys a deleted namespace (and the
// veths with an end in it) asynchronously, the fake at once.
//
// Not modelled: IPv6 prefix routes (metric 256) and IPv6 address loss on
// link down, secondary address promotion, link carrier, routing tables
// other than main, the "dev lo" the kernel reports for an IPv6 blackhole
// route, several routes with one key (IPv4 TOS, `ip route append`).
//
// Faults: failAt fails the Nth mutating call, failIf fails every call it
// matches (reads too), killAt panics with errKilled at the Nth mutating
// call (before the change, or after it with killAfter) to simulate the
// agent being killed.
type fakeHost struct {
	mu  sync.Mutex
	nss map[string]*fakeNS // "" is the agent's own namespace, always present

	failAt    int
	failIf    func(c call) bool
	killAt    int
	killAfter bool

	mutations int    // mutating calls so far
	calls     []call // every call, in order

	// netns is what NetNS reports; the zero value reports fakeNetNS.
	netns NetNSID
}

// fakeNetNS is the fake's namespace identity unless a test sets another.
var fakeNetNS = NetNSID{Dev: 4, Ino: 4026531840}

// call is one Host method call, as recorded and as seen by failIf.
type call struct {
	Op       string // method name
	NS       string
	Link     string
	Arg      string // the value set, the address, the route...
	Mutating bool
}

func (c call) String() string {
	s := c.Op + " " + nsLabel(c.NS)
	if c.Link != "" {
		s += "/" + c.Link
	}
	if c.Arg != "" {
		s += " " + c.Arg
	}
	return s
}

// errInjected is what failAt and failIf make a call return.
var errInjected = errors.New("injected fault")

// errKilled is the panic value of a simulated kill.
var errKilled = errors.New("killed")

type fakeNS struct {
	links  map[string]*fakeLink
	routes map[routeKey]RouteSpec
}

type fakeLink struct {
	typ      string // "veth", "device", "dummy"
	mtu      int
	up       bool
	features map[string]fakeFeature
	addrs    map[netip.Prefix]bool
	peer     *linkRef // the other end of a veth
}

type linkRef struct{ ns, name string }

type fakeFeature struct {
	requested bool // the "wanted" bit; false for fixed features
	fixed     bool
	fixedOn   bool // the value of a fixed feature
}

// featureDef is a feature a device type has, with its default.
type featureDef struct {
	name  string
	on    bool
	fixed bool
}

// deviceFeatures are the ethtool features of each link type, as the
// kernel reports them on a fresh device (abridged; checked against Linux
// 6.18, except that the veth keeps tx-lockless and netns-local, fixed
// features until Linux 6.12 made them private flags).
var deviceFeatures = map[string][]featureDef{
	"veth": {
		{"rx-checksum", true, false},
		{"tx-checksum-ipv4", false, true},
		{"tx-checksum-ip-generic", true, false},
		{"tx-checksum-ipv6", false, true},
		{"tx-checksum-fcoe-crc", false, true},
		{"tx-checksum-sctp", true, false},
		{"tx-scatter-gather", true, false},
		{"tx-scatter-gather-fraglist", true, false},
		{"tx-tcp-segmentation", true, false},
		{"tx-tcp-ecn-segmentation", true, false},
		{"tx-tcp-mangleid-segmentation", true, false},
		{"tx-tcp6-segmentation", true, false},
		{"tx-generic-segmentation", true, false},
		{"rx-gro", false, false},
		{"rx-lro", false, true},
		{"rx-vlan-hw-parse", true, false},
		{"tx-vlan-hw-insert", true, false},
		{"rx-ntuple-filter", false, true},
		{"rx-hashing", false, true},
		{"highdma", true, false},
		{"tx-lockless", true, true},
		{"netns-local", false, true},
	},
	// A physical NIC.
	"device": {
		{"rx-checksum", true, false},
		{"tx-checksum-ipv4", true, false},
		{"tx-checksum-ip-generic", false, true},
		{"tx-checksum-ipv6", true, false},
		{"tx-checksum-fcoe-crc", false, true},
		{"tx-checksum-sctp", false, true},
		{"tx-scatter-gather", true, false},
		{"tx-scatter-gather-fraglist", false, true},
		{"tx-tcp-segmentation", true, false},
		{"tx-tcp-ecn-segmentation", false, true},
		{"tx-tcp-mangleid-segmentation", false, false},
		{"tx-tcp6-segmentation", true, false},
		{"tx-generic-segmentation", true, false},
		{"rx-gro", true, false},
		{"rx-lro", false, true},
		{"rx-vlan-hw-parse", true, false},
		{"tx-vlan-hw-insert", true, false},
		{"rx-ntuple-filter", false, true},
		{"rx-hashing", true, false},
		{"highdma", true, true},
		{"tx-lockless", false, true},
		{"netns-local", false, true},
	},
	// The loopback device: checksums and scatter-gather are fixed on.
	"loopback": {
		{"rx-checksum", true, true},
		{"tx-checksum-ip-generic", true, true},
		{"tx-checksum-sctp", true, true},
		{"tx-scatter-gather", true, true},
		{"tx-scatter-gather-fraglist", true, true},
		{"tx-tcp-segmentation", true, false},
		{"tx-tcp6-segmentation", true, false},
		{"tx-generic-segmentation", true, false},
		{"rx-gro", true, false},
		{"highdma", true, true},
		{"loopback", true, true},
		{"vlan-challenged", true, true},
	},
}

func init() { deviceFeatures["dummy"] = deviceFeatures["veth"] }

// newFakeHost returns a host with only the agent's namespace and its lo,
// up, as on a booted machine.
func newFakeHost() *fakeHost {
	f := &fakeHost{nss: map[string]*fakeNS{}}
	f.nss[""] = newFakeNS()
	f.nss[""].links["lo"].up = true
	f.nss[""].links["lo"].addrs[netip.MustParsePrefix("127.0.0.1/8")] = true
	return f
}

func newFakeNS() *fakeNS {
	n := &fakeNS{links: map[string]*fakeLink{}, routes: map[routeKey]RouteSpec{}}
	lo := newFakeLink("device", 65536)
	lo.features = defaultFeatures("loopback")
	n.links["lo"] = lo
	return n
}

func newFakeLink(typ string, mtu int) *fakeLink {
	return &fakeLink{typ: typ, mtu: mtu, features: defaultFeatures(typ), addrs: map[netip.Prefix]bool{}}
}

func defaultFeatures(typ string) map[string]fakeFeature {
	m := map[string]fakeFeature{}
	for _, d := range deviceFeatures[typ] {
		if d.fixed {
			m[d.name] = fakeFeature{fixed: true, fixedOn: d.on}
		} else {
			m[d.name] = fakeFeature{requested: d.on}
		}
	}
	return m
}

// active is the kernel's view of whether a feature is on.
func (l *fakeLink) active(name string) bool {
	f, ok := l.features[name]
	switch {
	case !ok:
		return false
	case f.fixed:
		return f.fixedOn
	case !f.requested:
		return false
	case strings.HasPrefix(name, "tx-tcp") && strings.HasSuffix(name, "-segmentation"):
		// TSO needs scatter-gather and a TX checksum.
		return l.active("tx-scatter-gather") &&
			(l.active("tx-checksum-ip-generic") || l.active("tx-checksum-ipv4") || l.active("tx-checksum-ipv6"))
	case name == "tx-generic-segmentation":
		return l.active("tx-scatter-gather")
	}
	return true
}

// ---- Setup helpers (no call recording, no faults) ----

// addLink adds a link of any type, as a test's pre-existing state.
func (f *fakeHost) addLink(t testing.TB, ns, name, typ string, mtu int, up bool) {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	n := f.nss[ns]
	if n == nil {
		t.Fatalf("addLink: no namespace %q", ns)
	}
	if n.links[name] != nil {
		t.Fatalf("addLink: %s exists", name)
	}
	n.links[name] = newFakeLink(typ, mtu)
	if up {
		f.setUpLocked(ns, name, true)
	}
}

// must runs setup steps (Host calls) that are not supposed to fail, then
// forgets them, so that call counts and the call log start at zero.
func (f *fakeHost) must(t testing.TB, errs ...error) {
	t.Helper()
	for _, err := range errs {
		if err != nil {
			t.Fatalf("setup: %v", err)
		}
	}
	f.mutations, f.calls = 0, nil
}

// clearFaults removes every injected fault.
func (f *fakeHost) clearFaults() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failAt, f.failIf, f.killAt, f.killAfter = 0, nil, 0, false
}

// mutatingCalls returns the mutating calls made so far.
func (f *fakeHost) mutatingCalls() []call {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []call
	for _, c := range f.calls {
		if c.Mutating {
			out = append(out, c)
		}
	}
	return out
}

// clone returns a deep copy of the model, without faults or call log.
func (f *fakeHost) clone() *fakeHost {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := &fakeHost{nss: map[string]*fakeNS{}}
	for name, n := range f.nss {
		cn := &fakeNS{links: map[string]*fakeLink{}, routes: maps.Clone(n.routes)}
		for ln, l := range n.links {
			cl := *l
			cl.features = maps.Clone(l.features)
			cl.addrs = maps.Clone(l.addrs)
			if l.peer != nil {
				p := *l.peer
				cl.peer = &p
			}
			cn.links[ln] = &cl
		}
		c.nss[name] = cn
	}
	return c
}

// dump returns the whole model as sorted, canonical text: two equal
// models give equal strings. Features at the device type's default are
// left out, to keep dumps readable.
func (f *fakeHost) dump() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var lines []string
	for _, ns := range sortedKeys(f.nss) {
		n, p := f.nss[ns], nsLabel(ns)
		if ns != "" {
			lines = append(lines, p+" namespace")
		}
		for _, name := range sortedKeys(n.links) {
			l := n.links[name]
			s := fmt.Sprintf("%s link %s %s mtu=%d %s", p, name, l.typ, l.mtu, upDown(l.up))
			if l.peer != nil {
				s += " peer=" + nsLabel(l.peer.ns) + "/" + l.peer.name
			}
			lines = append(lines, s)
			addrs := slices.SortedFunc(maps.Keys(l.addrs), netip.Prefix.Compare)
			for _, a := range addrs {
				lines = append(lines, fmt.Sprintf("%s addr %s %s", p, name, a))
			}
			def := &fakeLink{features: defaultFeatures(l.typ)}
			if name == "lo" {
				def.features = defaultFeatures("loopback")
			}
			for _, fn := range sortedKeys(l.features) {
				req, act := l.features[fn].requested, l.active(fn)
				if fn2, ok := def.features[fn]; ok && fn2.requested == req && def.active(fn) == act &&
					fn2.fixed == l.features[fn].fixed {
					continue
				}
				lines = append(lines, fmt.Sprintf("%s feature %s %s requested=%s active=%s",
					p, name, fn, onOff(req), onOff(act)))
			}
		}
		for _, k := range slices.SortedFunc(maps.Keys(n.routes), compareRouteKeys) {
			lines = append(lines, p+" route "+routeText(n.routes[k]))
		}
	}
	return strings.Join(lines, "\n") + "\n"
}

// nsLabel names a namespace in dumps: "host" for the agent's own.
func nsLabel(ns string) string {
	if ns == "" {
		return "host"
	}
	return ns
}

func upDown(up bool) string {
	if up {
		return "up"
	}
	return "down"
}

func routeText(r RouteSpec) string {
	opt := func(s string, ok bool) string {
		if !ok {
			return "-"
		}
		return s
	}
	return fmt.Sprintf("%s type=%d gw=%s dev=%s proto=%d scope=%d src=%s metric=%d", r.Dst, r.Type,
		opt(r.Gw.String(), r.Gw.IsValid()), opt(r.Dev, r.Dev != ""), r.Protocol, r.Scope,
		opt(r.Src.String(), r.Src.IsValid()), r.Metric)
}

func compareRouteKeys(a, b routeKey) int {
	if c := a.dst.Compare(b.dst); c != 0 {
		return c
	}
	return a.metric - b.metric
}

// ---- Call plumbing ----

// read runs a non-mutating call.
func (f *fakeHost) read(c call, do func() error) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, c)
	if f.failIf != nil && f.failIf(c) {
		return fmt.Errorf("%w: %s", errInjected, c)
	}
	return do()
}

// mutate runs a mutating call, applying failAt, failIf and killAt.
func (f *fakeHost) mutate(c call, do func() error) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	c.Mutating = true
	f.mutations++
	f.calls = append(f.calls, c)
	kill := f.killAt == f.mutations
	if kill && !f.killAfter {
		panic(errKilled)
	}
	if f.failAt == f.mutations || (f.failIf != nil && f.failIf(c)) {
		return fmt.Errorf("%w: %s", errInjected, c)
	}
	err := do()
	if kill {
		panic(errKilled)
	}
	return err
}

func (f *fakeHost) nsLocked(ns string) (*fakeNS, error) {
	n := f.nss[ns]
	if n == nil {
		return nil, fmt.Errorf("namespace %s: %w", ns, ErrNotFound)
	}
	return n, nil
}

func (f *fakeHost) linkLocked(ns, name string) (*fakeNS, *fakeLink, error) {
	n, err := f.nsLocked(ns)
	if err != nil {
		return nil, nil, err
	}
	l := n.links[name]
	if l == nil {
		return nil, nil, fmt.Errorf("link %s%s: %w", name, where(ns), ErrNotFound)
	}
	return n, l, nil
}

// ---- Host ----

var _ Host = (*fakeHost)(nil)

// NetNS identifies the fake's own namespace.
func (f *fakeHost) NetNS() (NetNSID, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.netns == (NetNSID{}) {
		return fakeNetNS, nil
	}
	return f.netns, nil
}

func (f *fakeHost) NamespaceExists(name string) (bool, error) {
	var ok bool
	err := f.read(call{Op: "NamespaceExists", NS: name}, func() error {
		ok = f.nss[name] != nil
		return nil
	})
	return ok, err
}

func (f *fakeHost) CreateNamespace(name string) error {
	return f.mutate(call{Op: "CreateNamespace", NS: name}, func() error {
		if f.nss[name] != nil {
			return fmt.Errorf("namespace %s: %w", name, ErrExists)
		}
		f.nss[name] = newFakeNS()
		return nil
	})
}

func (f *fakeHost) DeleteNamespace(name string) error {
	return f.mutate(call{Op: "DeleteNamespace", NS: name}, func() error {
		if name == "" {
			return errors.New("cannot delete the agent's own namespace")
		}
		n, err := f.nsLocked(name)
		if err != nil {
			return err
		}
		for _, l := range n.links {
			if l.peer != nil && l.peer.ns != name {
				f.removeLinkLocked(l.peer.ns, l.peer.name)
			}
		}
		delete(f.nss, name)
		return nil
	})
}

func (f *fakeHost) Links(ns string) ([]LinkInfo, error) {
	var out []LinkInfo
	err := f.read(call{Op: "Links", NS: ns}, func() error {
		n, err := f.nsLocked(ns)
		if err != nil {
			return err
		}
		for _, name := range sortedKeys(n.links) {
			l := n.links[name]
			out = append(out, LinkInfo{Name: name, Type: l.typ, MTU: l.mtu, Up: l.up})
		}
		return nil
	})
	return out, err
}

// Link is a test helper (not a Host method): one link's LinkInfo.
func (f *fakeHost) Link(ns, name string) (LinkInfo, error) {
	var li LinkInfo
	err := f.read(call{Op: "Link", NS: ns, Link: name}, func() error {
		_, l, err := f.linkLocked(ns, name)
		if err != nil {
			return err
		}
		li = LinkInfo{Name: name, Type: l.typ, MTU: l.mtu, Up: l.up}
		return nil
	})
	return li, err
}

func (f *fakeHost) AddVeth(name, peer, peerNS string) error {
	return f.mutate(call{Op: "AddVeth", Link: name, Arg: peer + where(peerNS)}, func() error {
		if len(name) > 15 || len(peer) > 15 || name == "" || peer == "" {
			return errors.New("invalid argument: bad interface name")
		}
		pn, err := f.nsLocked(peerNS)
		if err != nil {
			return err
		}
		if f.nss[""].links[name] != nil {
			return fmt.Errorf("link %s: %w", name, ErrExists)
		}
		if pn.links[peer] != nil || (peerNS == "" && peer == name) {
			return fmt.Errorf("link %s%s: %w", peer, where(peerNS), ErrExists)
		}
		a, b := newFakeLink("veth", 1500), newFakeLink("veth", 1500)
		a.peer, b.peer = &linkRef{peerNS, peer}, &linkRef{"", name}
		f.nss[""].links[name], pn.links[peer] = a, b
		return nil
	})
}

func (f *fakeHost) DeleteLink(ns, name string) error {
	return f.mutate(call{Op: "DeleteLink", NS: ns, Link: name}, func() error {
		_, l, err := f.linkLocked(ns, name)
		if err != nil {
			return err
		}
		if name == "lo" {
			return errors.New("operation not supported: cannot delete lo")
		}
		if l.peer != nil {
			f.removeLinkLocked(l.peer.ns, l.peer.name)
		}
		f.removeLinkLocked(ns, name)
		return nil
	})
}

// removeLinkLocked deletes one link and every route through it.
func (f *fakeHost) removeLinkLocked(ns, name string) {
	n := f.nss[ns]
	if n == nil {
		return
	}
	delete(n.links, name)
	f.flushRoutesLocked(ns, name)
}

func (f *fakeHost) flushRoutesLocked(ns, dev string) {
	maps.DeleteFunc(f.nss[ns].routes, func(_ routeKey, r RouteSpec) bool { return r.Dev == dev })
}

func (f *fakeHost) SetMTU(ns, name string, mtu int) error {
	return f.mutate(call{Op: "SetMTU", NS: ns, Link: name, Arg: strconv.Itoa(mtu)}, func() error {
		_, l, err := f.linkLocked(ns, name)
		if err != nil {
			return err
		}
		if mtu < 68 || mtu > 65536 {
			return fmt.Errorf("set MTU %d: invalid argument", mtu)
		}
		l.mtu = mtu
		return nil
	})
}

func (f *fakeHost) SetUp(ns, name string, up bool) error {
	return f.mutate(call{Op: "SetUp", NS: ns, Link: name, Arg: upDown(up)}, func() error {
		if _, _, err := f.linkLocked(ns, name); err != nil {
			return err
		}
		f.setUpLocked(ns, name, up)
		return nil
	})
}

func (f *fakeHost) setUpLocked(ns, name string, up bool) {
	l := f.nss[ns].links[name]
	if l.up == up {
		return
	}
	l.up = up
	if !up {
		f.flushRoutesLocked(ns, name)
		return
	}
	if name == "lo" {
		l.addrs[netip.MustParsePrefix("127.0.0.1/8")] = true
	}
	for _, a := range slices.SortedFunc(maps.Keys(l.addrs), netip.Prefix.Compare) {
		f.addConnectedLocked(ns, name, a)
	}
}

// addConnectedLocked adds the connected route of address a on link name,
// as the kernel does for an IPv4 address on an up link.
func (f *fakeHost) addConnectedLocked(ns, name string, a netip.Prefix) {
	n := f.nss[ns]
	if name == "lo" || !n.links[name].up || !a.Addr().Is4() || a.Bits() == 32 {
		return
	}
	k := routeKey{a.Masked(), 0}
	if _, ok := n.routes[k]; ok {
		return // the kernel would add a second route; this model keeps one per key
	}
	n.routes[k] = RouteSpec{Dst: a.Masked(), Dev: name, Type: rtnUnicast, Protocol: 2, Scope: 253, Src: a.Addr()}
}

func (f *fakeHost) Features(ns, name string) (map[string]FeatureInfo, error) {
	var out map[string]FeatureInfo
	err := f.read(call{Op: "Features", NS: ns, Link: name}, func() error {
		_, l, err := f.linkLocked(ns, name)
		if err != nil {
			return err
		}
		out = map[string]FeatureInfo{}
		for k, v := range l.features {
			out[k] = FeatureInfo{Requested: v.requested, Active: l.active(k), Fixed: v.fixed}
		}
		return nil
	})
	return out, err
}

func (f *fakeHost) SetFeatures(ns, name string, want map[string]bool) error {
	return f.mutate(call{Op: "SetFeatures", NS: ns, Link: name, Arg: formatFeatures(want)}, func() error {
		_, l, err := f.linkLocked(ns, name)
		if err != nil {
			return err
		}
		for k := range want {
			if _, ok := l.features[k]; !ok {
				return fmt.Errorf("unsupported feature %q", k)
			}
		}
		for k, on := range want {
			if fe := l.features[k]; !fe.fixed {
				fe.requested = on
				l.features[k] = fe
			}
		}
		return nil
	})
}

func (f *fakeHost) Addrs(ns string) (map[string][]netip.Prefix, error) {
	out := map[string][]netip.Prefix{}
	err := f.read(call{Op: "Addrs", NS: ns}, func() error {
		n, err := f.nsLocked(ns)
		if err != nil {
			return err
		}
		for name, l := range n.links {
			for a := range l.addrs {
				out[name] = append(out[name], a)
			}
		}
		return nil
	})
	return out, err
}

// HasAddr is a test helper (not a Host method).
func (f *fakeHost) HasAddr(ns, link string, p netip.Prefix) (bool, error) {
	var ok bool
	err := f.read(call{Op: "HasAddr", NS: ns, Link: link, Arg: p.String()}, func() error {
		_, l, err := f.linkLocked(ns, link)
		if err != nil {
			return err
		}
		ok = l.addrs[p]
		return nil
	})
	return ok, err
}

func (f *fakeHost) AddAddr(ns, link string, p netip.Prefix) error {
	return f.mutate(call{Op: "AddAddr", NS: ns, Link: link, Arg: p.String()}, func() error {
		_, l, err := f.linkLocked(ns, link)
		if err != nil {
			return err
		}
		if l.addrs[p] {
			return fmt.Errorf("address %s on %s: %w", p, link, ErrExists)
		}
		l.addrs[p] = true
		f.addConnectedLocked(ns, link, p)
		return nil
	})
}

func (f *fakeHost) DelAddr(ns, link string, p netip.Prefix) error {
	return f.mutate(call{Op: "DelAddr", NS: ns, Link: link, Arg: p.String()}, func() error {
		n, l, err := f.linkLocked(ns, link)
		if err != nil {
			return err
		}
		if !l.addrs[p] {
			return fmt.Errorf("address %s on %s: %w", p, link, ErrNotFound)
		}
		delete(l.addrs, p)
		if !p.Addr().Is4() {
			return nil
		}
		if r, ok := n.routes[routeKey{p.Masked(), 0}]; ok && r.Protocol == 2 && r.Dev == link && r.Src == p.Addr() {
			delete(n.routes, routeKey{p.Masked(), 0})
		}
		if !slices.ContainsFunc(slices.Collect(maps.Keys(l.addrs)), func(a netip.Prefix) bool { return a.Addr().Is4() }) {
			f.flushRoutesLocked(ns, link) // last IPv4 address gone: the kernel disables IP on the link
		}
		return nil
	})
}

func (f *fakeHost) Routes(ns string, ipv6 bool) ([]RouteSpec, error) {
	var out []RouteSpec
	err := f.read(call{Op: "Routes", NS: ns, Arg: map[bool]string{false: "ipv4", true: "ipv6"}[ipv6]}, func() error {
		n, err := f.nsLocked(ns)
		if err != nil {
			return err
		}
		out = make([]RouteSpec, 0, len(n.routes))
		for k, r := range n.routes { // in no particular order, as the kernel's trie walk is to netcfg
			if k.dst.Addr().Is6() == ipv6 {
				out = append(out, r)
			}
		}
		return nil
	})
	return out, err
}

// Route is a test helper (not a Host method): the route to dst with the
// lowest metric, the one the kernel uses.
func (f *fakeHost) Route(ns string, dst netip.Prefix) (RouteSpec, error) {
	var r RouteSpec
	err := f.read(call{Op: "Route", NS: ns, Arg: dst.String()}, func() error {
		n, err := f.nsLocked(ns)
		if err != nil {
			return err
		}
		for _, k := range slices.SortedFunc(maps.Keys(n.routes), compareRouteKeys) {
			if k.dst == dst.Masked() {
				r = n.routes[k]
				return nil
			}
		}
		return fmt.Errorf("route to %s%s: %w", dst, where(ns), ErrNotFound)
	})
	return r, err
}

func (f *fakeHost) AddRoute(ns string, r RouteSpec) error {
	return f.mutate(call{Op: "AddRoute", NS: ns, Arg: routeText(r)}, func() error {
		return f.putRouteLocked(ns, r, false)
	})
}

func (f *fakeHost) ReplaceRoute(ns string, r RouteSpec) error {
	return f.mutate(call{Op: "ReplaceRoute", NS: ns, Arg: routeText(r)}, func() error {
		return f.putRouteLocked(ns, r, true)
	})
}

// putRouteLocked adds r as the kernel would, replacing the route with its
// key if replace.
func (f *fakeHost) putRouteLocked(ns string, r RouteSpec, replace bool) error {
	n, err := f.nsLocked(ns)
	if err != nil {
		return err
	}
	if r.Dst != r.Dst.Masked() {
		return fmt.Errorf("route %s: invalid prefix for given prefix length", r.Dst)
	}
	if r.Metric == 0 && r.Dst.Addr().Is6() {
		r.Metric = defaultMetric6
	}
	switch r.Type {
	case rtnBlackhole:
		if r.Gw.IsValid() {
			return errors.New("invalid argument: blackhole route with a next hop")
		}
		r.Dev = "" // NetlinkHost sends a device for unicast routes only
	case rtnUnicast:
		if r.Dev != "" {
			_, l, err := f.linkLocked(ns, r.Dev)
			if err != nil {
				return err
			}
			if !l.up {
				return fmt.Errorf("route via %s: network is down", r.Dev)
			}
		}
		if r.Gw.IsValid() {
			dev := f.connectedDevLocked(n, r.Gw)
			if dev == "" || (r.Dev != "" && dev != r.Dev) {
				return fmt.Errorf("route via %s: network is unreachable", r.Gw)
			}
			r.Dev = dev
		}
		if r.Dev == "" {
			return errors.New("invalid argument: unicast route without a next hop")
		}
	default:
		return fmt.Errorf("route type %d not modelled", r.Type)
	}
	if _, ok := n.routes[r.key()]; ok && !replace {
		return fmt.Errorf("route %s metric %d%s: %w", r.Dst, r.Metric, where(ns), ErrExists)
	}
	n.routes[r.key()] = r
	return nil
}

// connectedDevLocked returns the link of the most specific scope-link
// route holding gw, or "".
func (f *fakeHost) connectedDevLocked(n *fakeNS, gw netip.Addr) string {
	best, dev := -1, ""
	for k, r := range n.routes {
		if d := k.dst; r.Scope == 253 && r.Type == rtnUnicast && r.Dev != "" && d.Contains(gw) && d.Bits() > best {
			best, dev = d.Bits(), r.Dev
		}
	}
	return dev
}

func (f *fakeHost) DelRoute(ns string, r RouteSpec) error {
	return f.mutate(call{Op: "DelRoute", NS: ns, Arg: routeText(r)}, func() error {
		n, err := f.nsLocked(ns)
		if err != nil {
			return err
		}
		dst := r.Dst.Masked()
		var keys []routeKey // the routes to dst, by metric
		for k := range n.routes {
			if k.dst == dst {
				keys = append(keys, k)
			}
		}
		slices.SortFunc(keys, compareRouteKeys)
		for _, k := range keys {
			cur := n.routes[k]
			switch {
			case k.dst != dst,
				dst.Addr().Is6() && r.Metric != 0 && k.metric != r.Metric,
				dst.Addr().Is4() && k.metric < r.Metric,
				r.Type != 0 && r.Type != cur.Type, r.Protocol != 0 && r.Protocol != cur.Protocol,
				r.Scope != cur.Scope, r.Gw.IsValid() && r.Gw != cur.Gw,
				r.Dev != "" && r.Dev != cur.Dev, r.Src.IsValid() && r.Src != cur.Src:
				continue
			}
			delete(n.routes, k)
			return nil
		}
		return fmt.Errorf("route %s%s: no such process: %w", routeText(r), where(ns), ErrNotFound)
	})
}

// ---- Tests of the fake itself ----

// errClass sorts an error as netcfg does: success, gone, already there,
// an injected fault, or anything else.
func errClass(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, ErrNotFound):
		return "not found"
	case errors.Is(err, ErrExists):
		return "exists"
	case errors.Is(err, errInjected):
		return "injected"
	}
	return "other"
}

// TestFakeHostKernelErrors: the fake answers as the kernel (through
// NetlinkHost) does; checked side by side against Linux 6.18.
func TestFakeHostKernelErrors(t *testing.T) {
	p := netip.MustParsePrefix("10.1.0.1/24")
	P, A := netip.MustParsePrefix, netip.MustParseAddr
	tests := []struct {
		name string
		do   func(f *fakeHost) error
		want string // errClass
	}{
		{"create existing namespace", func(f *fakeHost) error { return f.CreateNamespace("ns1") }, "exists"},
		{"delete missing namespace", func(f *fakeHost) error { return f.DeleteNamespace("nope") }, "not found"},
		{"link in missing namespace", func(f *fakeHost) error { _, err := f.Link("nope", "lo"); return err }, "not found"},
		{"missing link", func(f *fakeHost) error { _, err := f.Link("", "nope"); return err }, "not found"},
		{"veth host end exists", func(f *fakeHost) error { return f.AddVeth("veth0", "x", "") }, "exists"},
		{"veth peer exists", func(f *fakeHost) error { return f.AddVeth("x", "veth1", "ns1") }, "exists"},
		{"veth into missing namespace", func(f *fakeHost) error { return f.AddVeth("x", "y", "nope") }, "not found"},
		{"delete missing link", func(f *fakeHost) error { return f.DeleteLink("", "nope") }, "not found"},
		{"MTU of missing link", func(f *fakeHost) error { return f.SetMTU("ns1", "nope", 1400) }, "not found"},
		{"MTU too small", func(f *fakeHost) error { return f.SetMTU("", "veth0", 10) }, "other"},
		{"add existing address", func(f *fakeHost) error { return f.AddAddr("", "veth0", p) }, "exists"},
		{"same address, other length", func(f *fakeHost) error { return f.AddAddr("", "veth0", P("10.1.0.1/16")) }, "ok"},
		{"delete missing address", func(f *fakeHost) error { return f.DelAddr("", "veth0", P("10.1.0.2/24")) }, "not found"},
		{"address on missing link", func(f *fakeHost) error { return f.AddAddr("", "nope", p) }, "not found"},
		{"missing route", func(f *fakeHost) error { _, err := f.Route("", P("10.9.0.0/16")); return err }, "not found"},
		{"route in missing namespace", func(f *fakeHost) error { _, err := f.Route("nope", P("0.0.0.0/0")); return err }, "not found"},
		{"delete missing route", func(f *fakeHost) error {
			return f.DelRoute("", RouteSpec{Dst: P("10.9.0.0/16"), Type: rtnBlackhole})
		}, "not found"},
		{"delete route of another protocol", func(f *fakeHost) error {
			return f.DelRoute("", RouteSpec{Dst: P("10.8.0.0/16"), Type: rtnBlackhole, Protocol: RouteProtocol})
		}, "not found"},
		{"gateway in a connected subnet", func(f *fakeHost) error {
			return f.ReplaceRoute("", RouteSpec{Dst: P("10.9.0.0/16"), Gw: A("10.1.0.254"), Type: rtnUnicast})
		}, "ok"},
		{"gateway unreachable", func(f *fakeHost) error {
			return f.ReplaceRoute("", RouteSpec{Dst: P("10.9.0.0/16"), Gw: A("10.99.0.1"), Type: rtnUnicast})
		}, "other"},
		{"route through a down link", func(f *fakeHost) error {
			return f.ReplaceRoute("ns1", RouteSpec{Dst: P("10.9.0.0/16"), Dev: "veth1", Type: rtnUnicast, Scope: 253})
		}, "other"},
		{"destination with host bits", func(f *fakeHost) error {
			return f.ReplaceRoute("", RouteSpec{Dst: P("10.9.0.1/16"), Type: rtnBlackhole})
		}, "other"},
		{"unknown feature", func(f *fakeHost) error { return f.SetFeatures("", "veth0", map[string]bool{"nope": true}) }, "other"},
		{"fixed feature: ignored", func(f *fakeHost) error { return f.SetFeatures("", "veth0", map[string]bool{"rx-lro": true}) }, "ok"},
		{"failAt", func(f *fakeHost) error { f.failAt = 1; return f.SetMTU("", "veth0", 1400) }, "injected"},
		{"failIf", func(f *fakeHost) error {
			f.failIf = func(c call) bool { return c.Op == "SetMTU" && c.Link == "veth0" }
			if err := f.SetMTU("ns1", "veth1", 1400); err != nil {
				return fmt.Errorf("failIf matched the wrong call: %v", err)
			}
			return f.SetMTU("", "veth0", 1400)
		}, "injected"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeHost()
			f.must(t,
				f.CreateNamespace("ns1"),
				f.AddVeth("veth0", "veth1", "ns1"),
				f.AddAddr("", "veth0", p),
				f.SetUp("", "veth0", true),
				f.ReplaceRoute("", RouteSpec{Dst: netip.MustParsePrefix("10.8.0.0/16"), Type: rtnBlackhole, Protocol: 4}),
			)
			if err := tt.do(f); errClass(err) != tt.want {
				t.Errorf("got %v (%s), want %s", err, errClass(err), tt.want)
			}
		})
	}
}

func TestFakeHostCascades(t *testing.T) {
	f := newFakeHost()
	gw := RouteSpec{Dst: netip.MustParsePrefix("10.9.0.0/16"), Gw: netip.MustParseAddr("10.1.0.254"), Type: rtnUnicast, Protocol: RouteProtocol}
	f.must(t,
		f.CreateNamespace("ns1"),
		f.AddVeth("veth0", "veth1", "ns1"),
		f.AddAddr("", "veth0", netip.MustParsePrefix("10.1.0.1/24")),
		f.SetUp("", "veth0", true),
		f.ReplaceRoute("", gw),
	)
	r, err := f.Route("", gw.Dst)
	if err != nil || r.Dev != "veth0" {
		t.Fatalf("gateway route = %+v, %v; want dev veth0", r, err)
	}
	// Down flushes routes through the link, up brings the connected one back.
	f.must(t, f.SetUp("", "veth0", false))
	if _, err := f.Route("", gw.Dst); !errors.Is(err, ErrNotFound) {
		t.Errorf("route survived link down: %v", err)
	}
	f.must(t, f.SetUp("", "veth0", true))
	if r, err := f.Route("", netip.MustParsePrefix("10.1.0.0/24")); err != nil || r.Protocol != 2 || r.Src != netip.MustParseAddr("10.1.0.1") {
		t.Errorf("connected route after up = %+v, %v", r, err)
	}
	// Deleting the last IPv4 address flushes every route through the link.
	dev := RouteSpec{Dst: netip.MustParsePrefix("10.11.0.0/16"), Dev: "veth0", Type: rtnUnicast, Protocol: 4, Scope: 253}
	f.must(t, f.ReplaceRoute("", dev), f.DelAddr("", "veth0", netip.MustParsePrefix("10.1.0.1/24")))
	if _, err := f.Route("", dev.Dst); !errors.Is(err, ErrNotFound) {
		t.Errorf("route through veth0 survived deleting its last address: %v", err)
	}
	// lo gets 127.0.0.1/8 when it comes up, and keeps it.
	f.must(t, f.SetUp("ns1", "lo", true), f.SetUp("ns1", "lo", false))
	if ok, _ := f.HasAddr("ns1", "lo", netip.MustParsePrefix("127.0.0.1/8")); !ok {
		t.Errorf("lo lacks 127.0.0.1/8 after up and down")
	}
	// Deleting the namespace of the peer deletes the host end too.
	f.must(t, f.DeleteNamespace("ns1"))
	if _, err := f.Link("", "veth0"); !errors.Is(err, ErrNotFound) {
		t.Errorf("veth0 survived deleting its peer's namespace: %v", err)
	}
	if got, want := f.dump(), newFakeHost().dump(); got != want {
		t.Errorf("dump after cleanup:\n%s\nwant:\n%s", got, want)
	}
	// Deleting either end of a pair deletes both.
	for _, end := range []struct{ ns, name string }{{"", "a0"}, {"", "a1"}} {
		f.must(t, f.AddVeth("a0", "a1", ""), f.DeleteLink(end.ns, end.name))
		if got, want := f.dump(), newFakeHost().dump(); got != want {
			t.Errorf("after deleting %s:\n%s", end.name, got)
		}
	}
	// Kill before and after the change.
	for _, after := range []bool{false, true} {
		g := newFakeHost()
		g.killAt, g.killAfter = 1, after
		func() {
			defer func() {
				if r := recover(); r != errKilled {
					t.Errorf("recover() = %v, want errKilled", r)
				}
			}()
			_ = g.CreateNamespace("x")
		}()
		if ok := g.nss["x"] != nil; ok != after {
			t.Errorf("killAfter=%v: namespace created = %v", after, ok)
		}
	}
}

func TestFakeHostFeatures(t *testing.T) {
	f := newFakeHost()
	f.must(t, f.AddVeth("veth0", "veth1", ""))
	// tx off: TSO stays requested but goes inactive; a fixed feature is
	// silently left alone.
	f.must(t, f.SetFeatures("", "veth0", map[string]bool{"tx-checksum-ip-generic": false, "tx-lockless": false}))
	fs, err := f.Features("", "veth0")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]FeatureInfo{
		"tx-checksum-ip-generic": {Requested: false, Active: false},
		"tx-tcp-segmentation":    {Requested: true, Active: false},
		"tx-lockless":            {Requested: false, Active: true, Fixed: true},
		"rx-checksum":            {Requested: true, Active: true},
	}
	for name, w := range want {
		if fs[name] != w {
			t.Errorf("%s = %+v, want %+v", name, fs[name], w)
		}
	}
	if d := f.dump(); !strings.Contains(d, "host feature veth0 tx-tcp-segmentation requested=on active=off") {
		t.Errorf("dump lacks the inactive TSO:\n%s", d)
	}
}

// Package netcfgtest is an in-memory host for netcfg: a netcfg.Host (and
// netcfg.ChangeSource) that behaves like the kernel where netcfg can
// tell, with fault and kill injection, for tests of netcfg and of the
// programs that use it (the agent's life cycle runs on it without root).
package netcfgtest

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

	"tunnel-agent/netcfg"
)

// Host is an in-memory netcfg.Host that behaves like the kernel where
// netcfg can tell: namespaces hold links, a veth pair dies as a whole
// (deleting either end, or the namespace of either end, deletes both),
// links hold addresses and ethtool features, and each namespace has a
// main routing table keyed as the kernel's is: by destination and metric
// (a route added without a metric gets the family's default, 0 for IPv4
// and 1024 for IPv6), one route per key.
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
//   - AddRoute fails with netcfg.ErrExists when the key is taken;
//     ReplaceRoute replaces the route with the key;
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
//     TX checksum are, GSO only while scatter-gather is;
//   - every link gets a new interface index when it is created (Index),
//     so that a link deleted and made again is told apart;
//   - Subscribe (netcfg.ChangeSource) calls its kick after every change
//     made, as netlink's multicast groups announce them.
//
// Where it differs: the kernel destroys a deleted namespace (and the
// veths with an end in it) asynchronously, the fake at once; it announces
// a change in the namespace it happened in, the fake in all of them.
//
// Not modelled: IPv6 prefix routes (metric 256) and IPv6 address loss on
// link down, secondary address promotion, link carrier, routing tables
// other than main, the "dev lo" the kernel reports for an IPv6 blackhole
// route, several routes with one key (IPv4 TOS, `ip route append`).
//
// Faults: FailAt fails the Nth mutating call, FailIf fails every call it
// matches (reads too), KillAt panics with ErrKilled at the Nth mutating
// call (before the change, or after it) to simulate the agent being
// killed. Calls are counted from New, or from the last Must.
//
// A Host is safe for concurrent use.
type Host struct {
	mu  sync.Mutex
	nss map[string]*fakeNS // "" is the agent's own namespace, always present

	failAt    int
	failIf    func(c Call) bool
	killAt    int
	killAfter bool

	mutations int    // mutating calls so far
	calls     []Call // every call, in order

	// netns is what NetNS reports; the zero value reports DefaultNetNS.
	netns netcfg.NetNSID

	lastIndex int                  // the interface index given last
	subs      map[*subscriber]bool // Subscribe's
}

// DefaultNetNS is the fake's namespace identity unless a test sets
// another (SetNetNS).
var DefaultNetNS = netcfg.NetNSID{Dev: 4, Ino: 4026531840}

// Call is one Host method call, as recorded and as seen by FailIf.
type Call struct {
	Op       string // method name
	NS       string
	Link     string
	Arg      string // the value set, the address, the route...
	Mutating bool
}

func (c Call) String() string {
	s := c.Op + " " + nsLabel(c.NS)
	if c.Link != "" {
		s += "/" + c.Link
	}
	if c.Arg != "" {
		s += " " + c.Arg
	}
	return s
}

// ErrInjected is what FailAt and FailIf make a call return.
var ErrInjected = errors.New("injected fault")

// ErrKilled is the panic value of a simulated kill (KillAt).
var ErrKilled = errors.New("killed")

// routeKey is a route's identity in a table: destination and metric.
type routeKey struct {
	dst    netip.Prefix
	metric int
}

func keyOf(r netcfg.RouteSpec) routeKey { return routeKey{r.Dst, r.Metric} }

type fakeNS struct {
	links  map[string]*fakeLink
	routes map[routeKey]netcfg.RouteSpec
}

type fakeLink struct {
	typ      string // "veth", "device", "dummy"
	index    int
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

// New returns a host with only the agent's namespace and its lo, up, as
// on a booted machine.
func New() *Host {
	f := &Host{nss: map[string]*fakeNS{}, subs: map[*subscriber]bool{}}
	f.nss[""] = f.newNS()
	f.nss[""].links["lo"].up = true
	f.nss[""].links["lo"].addrs[netip.MustParsePrefix("127.0.0.1/8")] = true
	return f
}

func (f *Host) newNS() *fakeNS {
	n := &fakeNS{links: map[string]*fakeLink{}, routes: map[routeKey]netcfg.RouteSpec{}}
	lo := f.newLink("device", 65536)
	lo.features = defaultFeatures("loopback")
	n.links["lo"] = lo
	return n
}

// newLink returns a new link with the next interface index.
func (f *Host) newLink(typ string, mtu int) *fakeLink {
	f.lastIndex++
	return &fakeLink{typ: typ, index: f.lastIndex, mtu: mtu, features: defaultFeatures(typ), addrs: map[netip.Prefix]bool{}}
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

// ---- Faults ----

// FailAt makes the nth mutating call (counted from New or the last Must)
// fail with ErrInjected, without changing anything; 0: none.
func (f *Host) FailAt(n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failAt = n
}

// FailIf makes every call that match reports true for fail with
// ErrInjected (reads too), without changing anything; nil: none.
func (f *Host) FailIf(match func(Call) bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failIf = match
}

// KillAt makes the nth mutating call panic with ErrKilled, before its
// change or, if after, once it is made: a kill of the agent at that
// point. 0: none.
func (f *Host) KillAt(n int, after bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.killAt, f.killAfter = n, after
}

// ClearFaults removes every injected fault.
func (f *Host) ClearFaults() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failAt, f.failIf, f.killAt, f.killAfter = 0, nil, 0, false
}

// SetNetNS sets the namespace identity NetNS reports (a journal records
// it; Revert refuses a journal of another).
func (f *Host) SetNetNS(id netcfg.NetNSID) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.netns = id
}

// ---- Setup helpers (no call recording, no faults) ----

// AddLink adds a link of any type ("device", "veth" without a peer,
// "dummy"), as a test's pre-existing state (not a netcfg.Host method).
func (f *Host) AddLink(t testing.TB, ns, name, typ string, mtu int, up bool) {
	t.Helper()
	f.mu.Lock()
	n := f.nss[ns]
	var err string
	switch {
	case n == nil:
		err = fmt.Sprintf("AddLink: no namespace %q", ns)
	case n.links[name] != nil:
		err = fmt.Sprintf("AddLink: %s exists", name)
	default:
		n.links[name] = f.newLink(typ, mtu)
		if up {
			f.setUpLocked(ns, name, true)
		}
	}
	subs := f.subscribersLocked()
	f.mu.Unlock()
	if err != "" {
		t.Fatal(err)
	}
	kickAll(subs)
}

// Must runs setup steps (Host calls) that are not supposed to fail, then
// forgets them, so that call counts and the call log start at zero.
func (f *Host) Must(t testing.TB, errs ...error) {
	t.Helper()
	for _, err := range errs {
		if err != nil {
			t.Fatalf("setup: %v", err)
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.mutations, f.calls = 0, nil
}

// ---- Inspection (no call recording, no faults) ----

// Calls returns the calls made so far, in order.
func (f *Host) Calls() []Call {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

// MutatingCalls returns the mutating calls made so far.
func (f *Host) MutatingCalls() []Call {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []Call
	for _, c := range f.calls {
		if c.Mutating {
			out = append(out, c)
		}
	}
	return out
}

// Namespaces lists the namespaces, sorted ("" first).
func (f *Host) Namespaces() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return sortedKeys(f.nss)
}

// HasNamespace reports whether the namespace exists.
func (f *Host) HasNamespace(ns string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.nss[ns] != nil
}

// LinkState is a link as the model holds it.
type LinkState struct {
	Type  string // "veth", "device", "dummy"
	Index int    // interface index
	MTU   int
	Up    bool
	Addrs []netip.Prefix // sorted
}

// LinkState returns link name of namespace ns; ok is false when there is
// none.
func (f *Host) LinkState(ns, name string) (ls LinkState, ok bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := f.nss[ns]
	if n == nil || n.links[name] == nil {
		return LinkState{}, false
	}
	l := n.links[name]
	return LinkState{Type: l.typ, Index: l.index, MTU: l.mtu, Up: l.up,
		Addrs: slices.SortedFunc(maps.Keys(l.addrs), netip.Prefix.Compare)}, true
}

// Clone returns a deep copy of the model, without faults, call log or
// subscribers.
func (f *Host) Clone() *Host {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := &Host{nss: map[string]*fakeNS{}, subs: map[*subscriber]bool{}, netns: f.netns, lastIndex: f.lastIndex}
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

// DeviceFeatures is what Features reports for a fresh link of type typ
// ("veth", "device", "dummy", or "loopback" for a namespace's lo).
func DeviceFeatures(typ string) map[string]netcfg.FeatureInfo {
	l := &fakeLink{features: defaultFeatures(typ)}
	out := map[string]netcfg.FeatureInfo{}
	for k, fe := range l.features {
		out[k] = netcfg.FeatureInfo{Requested: fe.requested, Active: l.active(k), Fixed: fe.fixed}
	}
	return out
}

// Dump returns the whole model as sorted, canonical text: two equal
// models give equal strings (interface indexes are left out: a link made
// again compares equal). Features at the device type's default are left
// out, to keep dumps readable.
func (f *Host) Dump() string {
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

func routeText(r netcfg.RouteSpec) string {
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
func (f *Host) read(c Call, do func() error) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, c)
	if f.failIf != nil && f.failIf(c) {
		return fmt.Errorf("%w: %s", ErrInjected, c)
	}
	return do()
}

// mutate runs a mutating call, applying failAt, failIf and killAt, and
// announces a change made to the subscribers.
func (f *Host) mutate(c Call, do func() error) error {
	subs, err := f.change(c, do)
	kickAll(subs)
	return err
}

// change is mutate without the announcement: it returns the subscribers
// to kick (none when nothing changed).
func (f *Host) change(c Call, do func() error) ([]*subscriber, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c.Mutating = true
	f.mutations++
	f.calls = append(f.calls, c)
	kill := f.killAt == f.mutations
	if kill && !f.killAfter {
		panic(ErrKilled)
	}
	if f.failAt == f.mutations || (f.failIf != nil && f.failIf(c)) {
		return nil, fmt.Errorf("%w: %s", ErrInjected, c)
	}
	err := do()
	if kill {
		panic(ErrKilled)
	}
	if err != nil {
		return nil, err
	}
	return f.subscribersLocked(), nil
}

// subscriber is one Subscribe.
type subscriber struct {
	kick func()
	done <-chan struct{}
}

// Subscribe implements netcfg.ChangeSource: kick is called after every
// change made to the host (in any namespace) until done is closed. lost
// is never called. A namespace that does not exist is ErrNotFound.
func (f *Host) Subscribe(ns string, kick func(), lost func(error), done <-chan struct{}) error {
	return f.read(Call{Op: "Subscribe", NS: ns}, func() error {
		if _, err := f.nsLocked(ns); err != nil {
			return err
		}
		s := &subscriber{kick: kick, done: done}
		f.subs[s] = true
		go func() {
			<-done
			f.mu.Lock()
			delete(f.subs, s)
			f.mu.Unlock()
		}()
		return nil
	})
}

func (f *Host) subscribersLocked() []*subscriber {
	out := make([]*subscriber, 0, len(f.subs))
	for s := range f.subs {
		out = append(out, s)
	}
	return out
}

// kickAll kicks the subscribers still subscribed (without the lock: a
// kick may call back into the host).
func kickAll(subs []*subscriber) {
	for _, s := range subs {
		select {
		case <-s.done:
		default:
			s.kick()
		}
	}
}

func (f *Host) nsLocked(ns string) (*fakeNS, error) {
	n := f.nss[ns]
	if n == nil {
		return nil, fmt.Errorf("namespace %s: %w", ns, netcfg.ErrNotFound)
	}
	return n, nil
}

func (f *Host) linkLocked(ns, name string) (*fakeNS, *fakeLink, error) {
	n, err := f.nsLocked(ns)
	if err != nil {
		return nil, nil, err
	}
	l := n.links[name]
	if l == nil {
		return nil, nil, fmt.Errorf("link %s%s: %w", name, where(ns), netcfg.ErrNotFound)
	}
	return n, l, nil
}

// ---- Host ----

var _ netcfg.Host = (*Host)(nil)

// NetNS identifies the fake's own namespace.
func (f *Host) NetNS() (netcfg.NetNSID, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.netns == (netcfg.NetNSID{}) {
		return DefaultNetNS, nil
	}
	return f.netns, nil
}

func (f *Host) NamespaceExists(name string) (bool, error) {
	var ok bool
	err := f.read(Call{Op: "NamespaceExists", NS: name}, func() error {
		ok = f.nss[name] != nil
		return nil
	})
	return ok, err
}

func (f *Host) CreateNamespace(name string) error {
	return f.mutate(Call{Op: "CreateNamespace", NS: name}, func() error {
		if f.nss[name] != nil {
			return fmt.Errorf("namespace %s: %w", name, netcfg.ErrExists)
		}
		f.nss[name] = f.newNS()
		return nil
	})
}

func (f *Host) DeleteNamespace(name string) error {
	return f.mutate(Call{Op: "DeleteNamespace", NS: name}, func() error {
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

func (f *Host) Links(ns string) ([]netcfg.LinkInfo, error) {
	var out []netcfg.LinkInfo
	err := f.read(Call{Op: "Links", NS: ns}, func() error {
		n, err := f.nsLocked(ns)
		if err != nil {
			return err
		}
		for _, name := range sortedKeys(n.links) {
			l := n.links[name]
			out = append(out, netcfg.LinkInfo{Name: name, Type: l.typ, MTU: l.mtu, Up: l.up})
		}
		return nil
	})
	return out, err
}

// Link is a test helper (not a Host method): one link's netcfg.LinkInfo.
func (f *Host) Link(ns, name string) (netcfg.LinkInfo, error) {
	var li netcfg.LinkInfo
	err := f.read(Call{Op: "Link", NS: ns, Link: name}, func() error {
		_, l, err := f.linkLocked(ns, name)
		if err != nil {
			return err
		}
		li = netcfg.LinkInfo{Name: name, Type: l.typ, MTU: l.mtu, Up: l.up}
		return nil
	})
	return li, err
}

func (f *Host) AddVeth(name, peer, peerNS string) error {
	return f.mutate(Call{Op: "AddVeth", Link: name, Arg: peer + where(peerNS)}, func() error {
		if len(name) > 15 || len(peer) > 15 || name == "" || peer == "" {
			return errors.New("invalid argument: bad interface name")
		}
		pn, err := f.nsLocked(peerNS)
		if err != nil {
			return err
		}
		if f.nss[""].links[name] != nil {
			return fmt.Errorf("link %s: %w", name, netcfg.ErrExists)
		}
		if pn.links[peer] != nil || (peerNS == "" && peer == name) {
			return fmt.Errorf("link %s%s: %w", peer, where(peerNS), netcfg.ErrExists)
		}
		a, b := f.newLink("veth", 1500), f.newLink("veth", 1500)
		a.peer, b.peer = &linkRef{peerNS, peer}, &linkRef{"", name}
		f.nss[""].links[name], pn.links[peer] = a, b
		return nil
	})
}

func (f *Host) DeleteLink(ns, name string) error {
	return f.mutate(Call{Op: "DeleteLink", NS: ns, Link: name}, func() error {
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
func (f *Host) removeLinkLocked(ns, name string) {
	n := f.nss[ns]
	if n == nil {
		return
	}
	delete(n.links, name)
	f.flushRoutesLocked(ns, name)
}

func (f *Host) flushRoutesLocked(ns, dev string) {
	maps.DeleteFunc(f.nss[ns].routes, func(_ routeKey, r netcfg.RouteSpec) bool { return r.Dev == dev })
}

func (f *Host) SetMTU(ns, name string, mtu int) error {
	return f.mutate(Call{Op: "SetMTU", NS: ns, Link: name, Arg: strconv.Itoa(mtu)}, func() error {
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

func (f *Host) SetUp(ns, name string, up bool) error {
	return f.mutate(Call{Op: "SetUp", NS: ns, Link: name, Arg: upDown(up)}, func() error {
		if _, _, err := f.linkLocked(ns, name); err != nil {
			return err
		}
		f.setUpLocked(ns, name, up)
		return nil
	})
}

func (f *Host) setUpLocked(ns, name string, up bool) {
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
func (f *Host) addConnectedLocked(ns, name string, a netip.Prefix) {
	n := f.nss[ns]
	if name == "lo" || !n.links[name].up || !a.Addr().Is4() || a.Bits() == 32 {
		return
	}
	k := routeKey{a.Masked(), 0}
	if _, ok := n.routes[k]; ok {
		return // the kernel would add a second route; this model keeps one per key
	}
	n.routes[k] = netcfg.RouteSpec{Dst: a.Masked(), Dev: name, Type: netcfg.RouteUnicast, Protocol: 2, Scope: 253, Src: a.Addr()}
}

func (f *Host) Features(ns, name string) (map[string]netcfg.FeatureInfo, error) {
	var out map[string]netcfg.FeatureInfo
	err := f.read(Call{Op: "Features", NS: ns, Link: name}, func() error {
		_, l, err := f.linkLocked(ns, name)
		if err != nil {
			return err
		}
		out = map[string]netcfg.FeatureInfo{}
		for k, v := range l.features {
			out[k] = netcfg.FeatureInfo{Requested: v.requested, Active: l.active(k), Fixed: v.fixed}
		}
		return nil
	})
	return out, err
}

func (f *Host) SetFeatures(ns, name string, want map[string]bool) error {
	return f.mutate(Call{Op: "SetFeatures", NS: ns, Link: name, Arg: formatFeatures(want)}, func() error {
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

func (f *Host) Addrs(ns string) (map[string][]netip.Prefix, error) {
	out := map[string][]netip.Prefix{}
	err := f.read(Call{Op: "Addrs", NS: ns}, func() error {
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
func (f *Host) HasAddr(ns, link string, p netip.Prefix) (bool, error) {
	var ok bool
	err := f.read(Call{Op: "HasAddr", NS: ns, Link: link, Arg: p.String()}, func() error {
		_, l, err := f.linkLocked(ns, link)
		if err != nil {
			return err
		}
		ok = l.addrs[p]
		return nil
	})
	return ok, err
}

func (f *Host) AddAddr(ns, link string, p netip.Prefix) error {
	return f.mutate(Call{Op: "AddAddr", NS: ns, Link: link, Arg: p.String()}, func() error {
		_, l, err := f.linkLocked(ns, link)
		if err != nil {
			return err
		}
		if l.addrs[p] {
			return fmt.Errorf("address %s on %s: %w", p, link, netcfg.ErrExists)
		}
		l.addrs[p] = true
		f.addConnectedLocked(ns, link, p)
		return nil
	})
}

func (f *Host) DelAddr(ns, link string, p netip.Prefix) error {
	return f.mutate(Call{Op: "DelAddr", NS: ns, Link: link, Arg: p.String()}, func() error {
		n, l, err := f.linkLocked(ns, link)
		if err != nil {
			return err
		}
		if !l.addrs[p] {
			return fmt.Errorf("address %s on %s: %w", p, link, netcfg.ErrNotFound)
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

func (f *Host) Routes(ns string, ipv6 bool) ([]netcfg.RouteSpec, error) {
	var out []netcfg.RouteSpec
	err := f.read(Call{Op: "Routes", NS: ns, Arg: map[bool]string{false: "ipv4", true: "ipv6"}[ipv6]}, func() error {
		n, err := f.nsLocked(ns)
		if err != nil {
			return err
		}
		out = make([]netcfg.RouteSpec, 0, len(n.routes))
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
func (f *Host) Route(ns string, dst netip.Prefix) (netcfg.RouteSpec, error) {
	var r netcfg.RouteSpec
	err := f.read(Call{Op: "Route", NS: ns, Arg: dst.String()}, func() error {
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
		return fmt.Errorf("route to %s%s: %w", dst, where(ns), netcfg.ErrNotFound)
	})
	return r, err
}

func (f *Host) AddRoute(ns string, r netcfg.RouteSpec) error {
	return f.mutate(Call{Op: "AddRoute", NS: ns, Arg: routeText(r)}, func() error {
		return f.putRouteLocked(ns, r, false)
	})
}

func (f *Host) ReplaceRoute(ns string, r netcfg.RouteSpec) error {
	return f.mutate(Call{Op: "ReplaceRoute", NS: ns, Arg: routeText(r)}, func() error {
		return f.putRouteLocked(ns, r, true)
	})
}

// putRouteLocked adds r as the kernel would, replacing the route with its
// key if replace.
func (f *Host) putRouteLocked(ns string, r netcfg.RouteSpec, replace bool) error {
	n, err := f.nsLocked(ns)
	if err != nil {
		return err
	}
	if r.Dst != r.Dst.Masked() {
		return fmt.Errorf("route %s: invalid prefix for given prefix length", r.Dst)
	}
	if r.Metric == 0 && r.Dst.Addr().Is6() {
		r.Metric = netcfg.DefaultMetric(r.Dst)
	}
	switch r.Type {
	case netcfg.RouteBlackhole:
		if r.Gw.IsValid() {
			return errors.New("invalid argument: blackhole route with a next hop")
		}
		r.Dev = "" // NetlinkHost sends a device for unicast routes only
	case netcfg.RouteUnicast:
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
	if _, ok := n.routes[keyOf(r)]; ok && !replace {
		return fmt.Errorf("route %s metric %d%s: %w", r.Dst, r.Metric, where(ns), netcfg.ErrExists)
	}
	n.routes[keyOf(r)] = r
	return nil
}

// connectedDevLocked returns the link of the most specific scope-link
// route holding gw, or "".
func (f *Host) connectedDevLocked(n *fakeNS, gw netip.Addr) string {
	best, dev := -1, ""
	for k, r := range n.routes {
		if d := k.dst; r.Scope == 253 && r.Type == netcfg.RouteUnicast && r.Dev != "" && d.Contains(gw) && d.Bits() > best {
			best, dev = d.Bits(), r.Dev
		}
	}
	return dev
}

func (f *Host) DelRoute(ns string, r netcfg.RouteSpec) error {
	return f.mutate(Call{Op: "DelRoute", NS: ns, Arg: routeText(r)}, func() error {
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
		return fmt.Errorf("route %s%s: no such process: %w", routeText(r), where(ns), netcfg.ErrNotFound)
	})
}

// where names a namespace in messages, as netcfg does.
func where(ns string) string {
	if ns == "" {
		return ""
	}
	return " in " + ns
}

// formatFeatures formats features as netcfg's plans do:
// "rx-checksum off, tx-checksum-ip-generic off".
func formatFeatures(f map[string]bool) string {
	parts := make([]string, 0, len(f))
	for name, on := range f {
		parts = append(parts, name+" "+onOff(on))
	}
	slices.Sort(parts)
	return strings.Join(parts, ", ")
}

func onOff(b bool) string { return map[bool]string{false: "off", true: "on"}[b] }

func sortedKeys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }

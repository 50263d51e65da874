package ebpf

import (
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"

	cebpf "github.com/cilium/ebpf"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

var (
	nativeEndian = binary.NativeEndian
	errPerm      = unix.EPERM
	errClosed    = errors.New("ebpf: dataplane closed")
)

// Peer is one far end of the tunnel as the programs see it.
type Peer struct {
	// Name identifies the peer; unique, non-empty.
	Name string
	// Endpoint is where the peer is (IPv4 or IPv6 outer). Zero: not known
	// yet; packets for the peer go to the userspace path, which learns it
	// (then call SetEndpoint).
	Endpoint netip.AddrPort
	// Prefixes are the networks behind the peer.
	Prefixes []netip.Prefix
	// PathMTU is the MTU of the outer path; 0 means 1500.
	PathMTU int
	// Source is the outer source address. Zero: SetPeers and SetEndpoint
	// take the preferred source of the route to Endpoint (RouteToEndpoint);
	// while there is none, the peer's packets go to the userspace path.
	Source netip.Addr
	// WANIndex is the interface the outer packets leave by. Zero: the
	// route's, as for Source, or else the WAN interface given to Attach.
	WANIndex int
}

// RouteToEndpoint asks the kernel (netlink, in the calling thread's
// network namespace) how it would send to ep: the preferred source
// address and the interface, as `ip route get` shows them.
func RouteToEndpoint(ep netip.Addr) (netip.Addr, int, error) {
	rs, err := netlink.RouteGet(ep.Unmap().AsSlice())
	if err != nil {
		return netip.Addr{}, 0, fmt.Errorf("ebpf: route to %v: %w", ep, err)
	}
	if len(rs) == 0 {
		return netip.Addr{}, 0, fmt.Errorf("ebpf: no route to %v", ep)
	}
	src, ok := netip.AddrFromSlice(rs[0].Src)
	if !ok {
		return netip.Addr{}, 0, fmt.Errorf("ebpf: route to %v has no source address", ep)
	}
	return src.Unmap(), rs[0].LinkIndex, nil
}

// withRoute fills a zero Source and WANIndex of p from the route to its
// endpoint; without one they stay zero.
func withRoute(p Peer) Peer {
	if !p.Endpoint.IsValid() || p.Source.IsValid() {
		return p
	}
	src, idx, err := RouteToEndpoint(p.Endpoint.Addr())
	if err != nil {
		return p
	}
	p.Source = src
	if p.WANIndex == 0 {
		p.WANIndex = idx
	}
	return p
}

// peerState is what the dataplane wrote for one peer.
type peerState struct {
	id       uint32
	source   netip.Addr // as configured (zero: from the route)
	wanIndex int        // as configured
	entry    tunnelPeer
	endpoint netip.AddrPort
	prefixes map[netip.Prefix]bool
}

// SetPeers makes the maps hold exactly peers, as a diff against what they
// hold (a peer without Source gets its route's, looked up in the calling
// thread's network namespace): a peer keeps its id (and counters) across calls, only changed
// entries are written, new prefixes and endpoints are added before old
// ones are removed, and a removed peer's routes go before its entry. So
// the traffic of a peer that did not change is never disturbed, and a
// changed peer's is at worst sent to the userspace path for a moment.
func (d *Dataplane) SetPeers(peers []Peer) error {
	if err := checkPeers(peers); err != nil {
		return fmt.Errorf("ebpf: %w", err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return errClosed
	}
	if err := d.applyPeers(peers); err != nil {
		return fmt.Errorf("ebpf: %w", err)
	}
	return nil
}

// checkPeers rejects what the maps cannot represent unambiguously.
func checkPeers(peers []Peer) error {
	names := map[string]bool{}
	owner := map[netip.Prefix]string{}
	eps := map[netip.AddrPort]string{}
	for _, p := range peers {
		if p.Name == "" || names[p.Name] {
			return fmt.Errorf("peer name %q empty or repeated", p.Name)
		}
		names[p.Name] = true
		if p.PathMTU < 0 || p.PathMTU > 0xffff {
			return fmt.Errorf("peer %q: path MTU %d out of range", p.Name, p.PathMTU)
		}
		for _, pfx := range p.Prefixes {
			if !pfx.IsValid() {
				return fmt.Errorf("peer %q: invalid prefix %v", p.Name, pfx)
			}
			if o, ok := owner[pfx.Masked()]; ok && o != p.Name {
				return fmt.Errorf("peer %q: prefix %v also belongs to peer %q", p.Name, pfx, o)
			}
			owner[pfx.Masked()] = p.Name
		}
		if ep := unmapAP(p.Endpoint); ep.IsValid() {
			if o, ok := eps[ep]; ok {
				return fmt.Errorf("peer %q: endpoint %v also belongs to peer %q", p.Name, ep, o)
			}
			eps[ep] = p.Name
		}
	}
	return nil
}

// applyPeers is SetPeers with d.mu held.
func (d *Dataplane) applyPeers(peers []Peer) error {
	want := map[string]bool{}
	for _, p := range peers {
		want[p.Name] = true
		if err := d.upsertPeer(p, withRoute(p)); err != nil {
			return fmt.Errorf("peer %q: %w", p.Name, err)
		}
	}
	// A prefix or endpoint may have moved to a peer written above; remove
	// only what still points at a departing peer.
	for _, name := range slices.Sorted(maps.Keys(d.peers)) {
		if !want[name] {
			if err := d.removePeer(name); err != nil {
				return fmt.Errorf("removing peer %q: %w", name, err)
			}
		}
	}
	return nil
}

// upsertPeer writes p: its entry, then its endpoint, then its prefixes,
// then removes what it no longer has.
func (d *Dataplane) upsertPeer(configured, p Peer) error {
	st, ok := d.peers[p.Name]
	if !ok {
		if len(d.free) == 0 {
			return fmt.Errorf("more than %d peers", d.maxPeers)
		}
		st = &peerState{id: d.free[len(d.free)-1], prefixes: map[netip.Prefix]bool{}}
		if err := d.resetTraffic(st.id); err != nil {
			return err
		}
		d.free = d.free[:len(d.free)-1]
		d.peers[p.Name] = st
	}
	entry := peerEntry(p)
	st.source, st.wanIndex = configured.Source, configured.WANIndex
	if !ok || entry != st.entry {
		if err := d.objs.Peers.Put(st.id, &entry); err != nil {
			return fmt.Errorf("writing entry: %w", err)
		}
		st.entry = entry
	}
	if err := d.moveEndpoint(st, unmapAP(p.Endpoint)); err != nil {
		return err
	}
	want := map[netip.Prefix]bool{}
	for _, pfx := range p.Prefixes {
		want[pfx.Masked()] = true
	}
	for pfx := range want {
		if !st.prefixes[pfx] {
			if err := lpmPut(d.objs.Routes4, d.objs.Routes6, pfx, st.id); err != nil {
				return fmt.Errorf("adding prefix %v: %w", pfx, err)
			}
			d.disown(pfx, st)
			st.prefixes[pfx] = true
		}
	}
	for pfx := range st.prefixes {
		if !want[pfx] {
			if err := lpmDelete(d.objs.Routes4, d.objs.Routes6, pfx); err != nil {
				return fmt.Errorf("removing prefix %v: %w", pfx, err)
			}
			delete(st.prefixes, pfx)
		}
	}
	return nil
}

// disown forgets pfx in every peer but owner: its route entry was just
// overwritten with owner's id.
func (d *Dataplane) disown(pfx netip.Prefix, owner *peerState) {
	for _, st := range d.peers {
		if st != owner {
			delete(st.prefixes, pfx)
		}
	}
}

// moveEndpoint points st's endpoint key at ep (zero: none), adding the new
// key before deleting the old one.
func (d *Dataplane) moveEndpoint(st *peerState, ep netip.AddrPort) error {
	if ep == st.endpoint {
		return nil
	}
	if ep.IsValid() {
		for _, o := range d.peers {
			if o != st && o.endpoint == ep {
				o.endpoint = netip.AddrPort{} // taken over: its key is overwritten below
			}
		}
		if err := d.objs.Endpoints.Put(endpointKey(ep), st.id); err != nil {
			return fmt.Errorf("adding endpoint %v: %w", ep, err)
		}
	}
	if st.endpoint.IsValid() {
		if err := deleteIgnoringMissing(d.objs.Endpoints, endpointKey(st.endpoint)); err != nil {
			return fmt.Errorf("removing endpoint %v: %w", st.endpoint, err)
		}
	}
	st.endpoint = ep
	return nil
}

// removePeer deletes a peer's routes, endpoint key and entry, in that
// order, and frees its id.
func (d *Dataplane) removePeer(name string) error {
	st := d.peers[name]
	for pfx := range st.prefixes {
		if err := lpmDelete(d.objs.Routes4, d.objs.Routes6, pfx); err != nil {
			return fmt.Errorf("removing prefix %v: %w", pfx, err)
		}
		delete(st.prefixes, pfx)
	}
	if err := d.moveEndpoint(st, netip.AddrPort{}); err != nil {
		return err
	}
	if err := deleteIgnoringMissing(d.objs.Peers, st.id); err != nil {
		return fmt.Errorf("removing entry: %w", err)
	}
	delete(d.peers, name)
	d.free = append(d.free, st.id)
	return nil
}

// SetEndpoint moves a peer to ep (as the userspace engine learned it),
// leaving its prefixes and every other peer alone. Like SetPeers, it takes
// a source address the peer was not configured with from the route to
// ep, in the calling thread's network namespace. A zero ep forgets the
// endpoint: the peer's packets go to the userspace path.
func (d *Dataplane) SetEndpoint(name string, ep netip.AddrPort) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return errClosed
	}
	st, ok := d.peers[name]
	if !ok {
		return fmt.Errorf("ebpf: no peer %q", name)
	}
	ep = unmapAP(ep)
	for n, o := range d.peers {
		if o != st && ep.IsValid() && o.endpoint == ep {
			return fmt.Errorf("ebpf: endpoint %v belongs to peer %q", ep, n)
		}
	}
	entry := peerEntry(withRoute(Peer{Endpoint: ep, PathMTU: int(st.entry.PathMtu), Source: st.source, WANIndex: st.wanIndex}))
	if err := d.objs.Peers.Put(st.id, &entry); err != nil {
		return fmt.Errorf("ebpf: peer %q: writing entry: %w", name, err)
	}
	st.entry = entry
	if err := d.moveEndpoint(st, ep); err != nil {
		return fmt.Errorf("ebpf: peer %q: %w", name, err)
	}
	return nil
}

// peerEntry is the peers-map value for p.
func peerEntry(p Peer) tunnelPeer {
	var e tunnelPeer
	setEndpoint(&e, unmapAP(p.Endpoint))
	e.PathMtu = uint16(orDefault(p.PathMTU, defaultPathMTU))
	if p.Source.IsValid() {
		_, e.Src = addrBytes(p.Source)
	}
	e.Ifindex = uint32(p.WANIndex)
	return e
}

func setEndpoint(e *tunnelPeer, ep netip.AddrPort) {
	e.Family, e.Addr, e.Port = 0, [16]byte{}, 0
	if ep.IsValid() {
		e.Family, e.Addr = addrBytes(ep.Addr())
		e.Port = htons(ep.Port())
	}
}

func endpointKey(ep netip.AddrPort) tunnelEndpointKey {
	var k tunnelEndpointKey
	k.Family, k.Addr = addrBytes(ep.Addr())
	k.Port = htons(ep.Port())
	return k
}

func unmapAP(ap netip.AddrPort) netip.AddrPort {
	if !ap.IsValid() {
		return netip.AddrPort{}
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// resetTraffic zeroes a peer id's counters on every CPU before reuse.
func (d *Dataplane) resetTraffic(id uint32) error {
	zero := make([]tunnelPeerStats, cebpfPossibleCPUs())
	if err := d.objs.Traffic.Put(id, zero); err != nil {
		return fmt.Errorf("resetting counters: %w", err)
	}
	return nil
}

// lpmPut writes pfx → v to the IPv4 or IPv6 trie.
func lpmPut(m4, m6 *cebpf.Map, pfx netip.Prefix, v any) error {
	if pfx.Addr().Unmap().Is4() {
		return m4.Put(lpm4(pfx), v)
	}
	return m6.Put(lpm6(pfx), v)
}

// lpmDelete removes pfx from the trie of its family; already gone is fine.
func lpmDelete(m4, m6 *cebpf.Map, pfx netip.Prefix) error {
	if pfx.Addr().Unmap().Is4() {
		return deleteIgnoringMissing(m4, lpm4(pfx))
	}
	return deleteIgnoringMissing(m6, lpm6(pfx))
}

func deleteIgnoringMissing(m *cebpf.Map, key any) error {
	if err := m.Delete(key); err != nil && !errors.Is(err, cebpf.ErrKeyNotExist) {
		return err
	}
	return nil
}

func lpm4(pfx netip.Prefix) tunnelLpm4Key {
	pfx = unmapPrefix(pfx)
	return tunnelLpm4Key{Prefixlen: uint32(pfx.Bits()), Addr: pfx.Addr().As4()}
}

func lpm6(pfx netip.Prefix) tunnelLpm6Key {
	return tunnelLpm6Key{Prefixlen: uint32(pfx.Bits()), Addr: pfx.Masked().Addr().As16()}
}

// unmapPrefix turns ::ffff:a.b.c.d/n (n >= 96) into a.b.c.d/(n-96).
func unmapPrefix(pfx netip.Prefix) netip.Prefix {
	a := pfx.Addr()
	if a.Is4In6() {
		return netip.PrefixFrom(a.Unmap(), max(pfx.Bits()-96, 0)).Masked()
	}
	return pfx.Masked()
}

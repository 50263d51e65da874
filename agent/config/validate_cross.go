package config

import (
	"fmt"
	"net/netip"
	"regexp"
	"slices"
)

// Checks across sections of the file: clashing names, overlapping
// prefixes, and the LAN interface against the host and the namespaces.

// seen remembers the path where each value was first given.
type seen map[string]string

// dup records value at path and returns the earlier path of the same
// value, or "". Empty values are ignored.
func (s seen) dup(value, path string) string {
	if value == "" {
		return ""
	}
	if first, ok := s[value]; ok {
		return first
	}
	s[value] = path
	return ""
}

func (v validator) namespaceClashes() {
	names, hosts := seen{}, seen{}
	for i, ns := range v.cfg.Namespaces {
		path := fmt.Sprintf("namespaces[%d]", i)
		if first := names.dup(ns.Name, path+".name"); first != "" {
			v.ps.addf(path+".name", nil, "namespace %q is already defined at %s", ns.Name, first)
		}
		if first := hosts.dup(ns.Veth.Host, path+".veth.host"); first != "" {
			v.ps.addf(path+".veth.host", nil, "interface %q is already created by %s", ns.Veth.Host, first)
		}
		v.subnetClash(i)
		v.subnetClash6(i)
	}
}

// subnetClash reports namespace i's subnet overlapping an earlier one:
// the host would have two routes for the same destinations.
func (v validator) subnetClash(i int) {
	a := v.cfg.Namespaces[i].Address
	for j, other := range v.cfg.Namespaces[:i] {
		if a.IsValid() && other.Address.IsValid() && a.Masked().Overlaps(other.Address.Masked()) {
			v.ps.addf(fmt.Sprintf("namespaces[%d].address", i), nil,
				"subnet %s overlaps subnet %s of namespaces[%d] (%q)", a.Masked(), other.Address.Masked(), j, other.Name)
			return
		}
	}
}

// lanInterface checks that the LAN interface exists or is made here, and
// that the LAN settings agree with the veth that makes it.
func (v validator) lanInterface(host HostInfo) {
	lan := v.cfg.LAN
	if lan.Interface == "" || checkIfName(lan.Interface) != nil {
		return
	}
	i := slices.IndexFunc(v.cfg.Namespaces, func(ns Namespace) bool { return ns.Veth.Host == lan.Interface })
	if i < 0 {
		// A namespace in error may be the one meant to create it.
		if host != nil && !v.ps.hasMatch(reVethHost) && !host.LinkExists(lan.Interface) {
			v.ps.addf("lan.interface", nil, "interface %q does not exist on this host, and no namespaces[].veth.host creates it", lan.Interface)
		}
		return
	}
	veth := v.cfg.Namespaces[i].Veth
	if lan.MTU != 0 && veth.MTU != 0 && lan.MTU != veth.MTU {
		v.ps.addf("lan.mtu", nil, "%d differs from %d set by namespaces[%d].veth.mtu for the same interface", lan.MTU, veth.MTU, i)
	}
	v.offloadClash(lan.Offloads, veth.Offloads, i)
}

// offloadClash reports features that lan.offloads and the veth's offloads
// set differently on the same interface.
func (v validator) offloadClash(lan, veth Offloads, i int) {
	for _, f := range lan {
		j := slices.IndexFunc(veth, func(g Offload) bool { return g.Name == f.Name })
		if j >= 0 && veth[j].On != f.On {
			v.ps.addf("lan.offloads."+f.Name, nil, "%s differs from %s set by namespaces[%d].veth.offloads for the same interface",
				onOff(f.On), onOff(veth[j].On), i)
		}
	}
}

// peerPrefix is a peer prefix and where it is: a field of the site file,
// or a line of the peer's prefixes_file.
type peerPrefix struct {
	p    netip.Prefix
	peer int
	path string
	file string // the prefixes_file, when the prefix is on line of it
	line int
}

// ref names where the prefix is, in a message about another one.
func (pp peerPrefix) ref() string {
	if pp.file != "" {
		return fmt.Sprintf("%s:%d", pp.file, pp.line)
	}
	return pp.path
}

// report records a problem with the prefix, where it is.
func (v validator) report(pp peerPrefix, format string, args ...any) {
	if pp.file != "" {
		v.ps.addIn(pp.path, pp.file, pp.line, fmt.Errorf(format, args...))
		return
	}
	v.ps.addf(pp.path, nil, format, args...)
}

// peerPrefixes lists the peer prefixes that parsed.
func (v validator) peerPrefixes() []peerPrefix {
	var out []peerPrefix
	for i, p := range v.cfg.Tunnel.Peers {
		inline := len(p.Prefixes) - len(p.fileLines)
		for j, pfx := range p.Prefixes {
			if !pfx.IsValid() {
				continue
			}
			pp := peerPrefix{p: pfx, peer: i, path: fmt.Sprintf("tunnel.peers[%d].prefixes[%d]", i, j)}
			if j >= inline {
				pp.path = fmt.Sprintf("tunnel.peers[%d].prefixes_file", i)
				pp.file, pp.line = p.PrefixesFile, p.fileLines[j-inline]
			}
			out = append(out, pp)
		}
	}
	return out
}

func (v validator) peerClashes() {
	names, endpoints := seen{}, seen{}
	for i, p := range v.cfg.Tunnel.Peers {
		path := fmt.Sprintf("tunnel.peers[%d]", i)
		if first := names.dup(p.Name, path+".name"); first != "" {
			v.ps.addf(path+".name", nil, "peer %q is already defined at %s", p.Name, first)
		}
		if p.Endpoint.IsValid() {
			if first := endpoints.dup(p.Endpoint.String(), path+".endpoint"); first != "" {
				v.ps.addf(path+".endpoint", nil, "%s is already the endpoint of %s; datagrams from it could not be told apart", p.Endpoint, parentPath(first))
			}
		}
	}
	v.prefixClashes()
}

// prefixClashes reports peer prefixes given twice, or overlapping another
// peer's: every destination must belong to exactly one peer. Each is
// reported against the first earlier prefix it clashes with.
func (v validator) prefixClashes() {
	all := v.peerPrefixes()
	set := indexPrefixes(all)
	for j, b := range all {
		i := set.overlapping(b.p, func(i int) bool {
			return i < j && prefixClash(all[i], b, "") != ""
		})
		if i >= 0 {
			v.report(b, "%s", prefixClash(all[i], b, v.cfg.Tunnel.Peers[all[i].peer].Name))
		}
	}
}

// indexPrefixes indexes peer prefixes by their position in the list.
func indexPrefixes(all []peerPrefix) *prefixSet {
	set := &prefixSet{}
	for i, pp := range all {
		set.add(pp.p, i)
	}
	return set
}

// prefixClash describes how b clashes with the earlier a, or returns "".
func prefixClash(a, b peerPrefix, aName string) string {
	switch {
	case a.p == b.p && a.peer == b.peer:
		return fmt.Sprintf("%s is given twice (also %s)", b.p, a.ref())
	case a.p == b.p:
		return fmt.Sprintf("%s is also a prefix of peer %q (%s); a destination must belong to one peer", b.p, aName, a.ref())
	case a.peer != b.peer && a.p.Overlaps(b.p):
		return fmt.Sprintf("%s overlaps %s of peer %q (%s); a destination must belong to one peer", b.p, a.p, aName, a.ref())
	}
	return ""
}

// localPrefixes checks local_prefixes: no repeats, and none of them may
// also be a remote destination.
func (v validator) localPrefixes() {
	v.noRepeats("tunnel.local_prefixes", v.cfg.Tunnel.LocalPrefixes)
	peers := v.peerPrefixes()
	set := indexPrefixes(peers)
	for i, l := range v.cfg.Tunnel.LocalPrefixes {
		if !l.IsValid() {
			continue
		}
		if k := set.overlapping(l, func(int) bool { return true }); k >= 0 {
			v.ps.addf(fmt.Sprintf("tunnel.local_prefixes[%d]", i), nil,
				"%s overlaps %s, tunneled to peer %q (%s); a destination is either local or remote",
				l, peers[k].p, v.cfg.Tunnel.Peers[peers[k].peer].Name, peers[k].ref())
		}
	}
}

// noRepeats reports a prefix given twice in one list.
func (v validator) noRepeats(path string, list []netip.Prefix) {
	first := make(map[netip.Prefix]int, len(list))
	for i, p := range list {
		if !p.IsValid() {
			continue
		}
		if j, ok := first[p]; ok {
			v.ps.addf(fmt.Sprintf("%s[%d]", path, i), nil, "%s is given twice (also %s[%d])", p, path, j)
			continue
		}
		first[p] = i
	}
}

// blackhole checks the blackhole prefixes, given or defaulted.
func (v validator) blackhole() {
	t := v.cfg.Tunnel
	endpoints := v.endpointSet()
	if t.BlackholeSet {
		v.noRepeats("tunnel.blackhole", t.Blackhole)
		v.blackholeUseful()
		for i, b := range t.Blackhole {
			v.blackholeEndpoints(endpoints, peerPrefix{p: b, path: fmt.Sprintf("tunnel.blackhole[%d]", i)}, "")
		}
		return
	}
	for _, pp := range v.peerPrefixes() {
		v.blackholeEndpoints(endpoints, pp, " (tunnel.blackhole defaults to every peer prefix; give it to choose)")
	}
}

// reVethHost matches the paths of veth host names.
var reVethHost = regexp.MustCompile(`^namespaces\[\d+\]\.veth(\.host)?$`)

// rePeerPrefixes matches the paths of peer prefixes.
var rePeerPrefixes = regexp.MustCompile(`^tunnel\.peers\[\d+\]\.prefixes`)

// blackholeUseful reports blackhole prefixes that overlap no peer prefix:
// the agent would never tunnel what they drop. Skipped while a peer
// prefix is in error, which would make the answer wrong.
func (v validator) blackholeUseful() {
	if v.ps.hasMatch(rePeerPrefixes) {
		return
	}
	set := indexPrefixes(v.peerPrefixes())
	for i, b := range v.cfg.Tunnel.Blackhole {
		if b.IsValid() && !set.t.OverlapsPrefix(b) {
			v.ps.addf(fmt.Sprintf("tunnel.blackhole[%d]", i), nil,
				"%s overlaps no peer prefix: its packets would be dropped and never tunneled", b)
		}
	}
}

// endpointSet indexes the peers' endpoint addresses (as single-address
// prefixes) by peer.
func (v validator) endpointSet() *prefixSet {
	set := &prefixSet{}
	for i, p := range v.cfg.Tunnel.Peers {
		if ep := p.Endpoint.Addr().WithZone(""); ep.IsValid() && !ep.IsUnspecified() {
			set.add(netip.PrefixFrom(ep, ep.BitLen()), i)
		}
	}
	return set
}

// blackholeEndpoints reports a blackhole route that would swallow the
// tunnel's own datagrams to a peer (an endpoint given as a name counts
// once `up` has resolved it: CheckResolved).
func (v validator) blackholeEndpoints(endpoints *prefixSet, b peerPrefix, note string) {
	if !b.p.IsValid() {
		return
	}
	for _, i := range endpoints.contained(b.p) {
		p := v.cfg.Tunnel.Peers[i]
		from := ""
		if p.EndpointName != "" {
			from = " (resolved from " + p.EndpointName + ")"
		}
		v.report(b, "%s contains the endpoint %s%s of peer %q: its blackhole route would drop the tunnel's own datagrams%s",
			b.p, p.Endpoint.Addr().WithZone(""), from, p.Name, note)
	}
}

// CheckResolved checks the blackholes against the peer endpoints that
// `up` or a reload has just resolved from names. Problems come back as a
// *Error placed in file.
func CheckResolved(cfg *Config, file string) error {
	ps := &problems{}
	validator{cfg: cfg, ps: ps}.blackhole()
	return fileProblems(ps, file)
}

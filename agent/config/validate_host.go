package config

import (
	"fmt"
	"net/netip"
	"slices"
)

// Checks against the host and the other sites on it. Two owners of one
// object are refused rather than shared: a site that found a namespace,
// veth, MTU or route already as it wanted recorded it as "unchanged", so
// the first site to stop removed it from under the other, and the
// other's drift repair re-created it and left it behind. Refusing keeps
// the rule every revert relies on: what the agent changed is its alone,
// and everything else is left as found (docs/operations.md, "Two sites
// on one host").

// hostChecks runs the checks that need the host: claims of the other
// sites' journals, subnets already on the host, default local prefixes,
// and blackholes over the host's own routes.
func (v validator) hostChecks(host HostInfo) {
	others := v.otherSites(host)
	addrs, err := host.Addrs()
	if err != nil {
		v.ps.addf("", nil, "cannot read the host's addresses to check this file against them: %w", err)
		return
	}
	routes, err := host.DefaultRoutes()
	if err != nil {
		v.ps.addf("", nil, "cannot read the host's routes to check this file against them: %w", err)
		return
	}
	v.hostSubnets(addrs, others)
	v.defaultLocalPrefixes(addrs)
	v.blackholeHost(addrs, routes, others)
}

// ownClaim is a host object this file makes or changes in the agent's
// namespace or a whole namespace it names, and the field that asks for it.
type ownClaim struct {
	key  string // claimKey
	what string // for messages: `namespace "ns1"`, ...
	path string
}

func claimKey(kind, name string) string { return kind + " " + name }

// ownClaims lists what the file claims. Objects inside a namespace the
// file names are covered by the namespace's claim.
func (v validator) ownClaims() []ownClaim {
	c := v.cfg
	var out []ownClaim
	lanIsVeth := false
	for i, ns := range c.Namespaces {
		path := fmt.Sprintf("namespaces[%d]", i)
		out = append(out,
			ownClaim{claimKey("namespace", ns.Name), fmt.Sprintf("namespace %q", ns.Name), path + ".name"},
			ownClaim{claimKey("link", ns.Veth.Host), fmt.Sprintf("interface %q", ns.Veth.Host), path + ".veth.host"})
		lanIsVeth = lanIsVeth || ns.Veth.Host == c.LAN.Interface
	}
	if !lanIsVeth && (c.LAN.MTU > 0 || len(c.LAN.Offloads) > 0) {
		path := "lan.mtu"
		if c.LAN.MTU == 0 {
			path = "lan.offloads"
		}
		out = append(out, ownClaim{claimKey("link", c.LAN.Interface), fmt.Sprintf("the settings of interface %q", c.LAN.Interface), path})
	}
	for _, b := range v.blackholes() {
		out = append(out, ownClaim{claimKey("route", b.p.String()), "blackhole route " + b.p.String(), b.path})
	}
	return out
}

// blackholes lists the blackhole prefixes with their paths: the given
// ones, or by default the peer prefixes.
func (v validator) blackholes() []peerPrefix {
	if !v.cfg.Tunnel.BlackholeSet {
		return v.peerPrefixes()
	}
	var out []peerPrefix
	for i, b := range v.cfg.Tunnel.Blackhole {
		if b.IsValid() {
			out = append(out, peerPrefix{p: b.Masked(), peer: -1, path: fmt.Sprintf("tunnel.blackhole[%d]", i)})
		}
	}
	return out
}

// otherSite is what another site claims, indexed in the terms of
// ownClaims.
type otherSite struct {
	SiteClaims
	keys map[string]bool
}

func indexClaims(sc SiteClaims) otherSite {
	o := otherSite{SiteClaims: sc, keys: map[string]bool{}}
	for _, ns := range sc.Namespaces {
		o.keys[claimKey("namespace", ns)] = true
	}
	for _, l := range sc.Links {
		o.keys[claimKey("link", l)] = true
	}
	for _, r := range sc.Routes {
		o.keys[claimKey("route", r.Masked().String())] = true
	}
	return o
}

// otherSites reads what the other sites claim and refuses what this file
// claims that one of them claims too. Its own journal (a leftover `up`
// reverts first) is not another site's.
func (v validator) otherSites(host HostInfo) []otherSite {
	sites, err := host.OtherSites(v.cfg.Site)
	if err != nil {
		v.ps.addf("", nil, "cannot read the other sites' journals to check this file against them: %w", err)
		return nil
	}
	var others []otherSite
	for _, sc := range sites {
		if sc.Err != nil {
			v.ps.addf("site", nil, "cannot read %s, the journal of another site, so what it claims on this host is unknown: %w; "+
				"revert it with `tunnel-agent down` for that site (`down --force` if it is damaged)", sc.Journal, sc.Err)
			continue
		}
		others = append(others, indexClaims(sc))
	}
	for _, c := range v.ownClaims() {
		if i := slices.IndexFunc(others, func(o otherSite) bool { return o.keys[c.key] }); i >= 0 {
			v.ps.addf(c.path, nil, "%s is also claimed by %s: two sites cannot share an object, "+
				"the first to stop would remove it from under the other; give this site its own", c.what, others[i])
		}
	}
	for i, ns := range v.cfg.Namespaces {
		v.eachHostAddress(i, ns, func(path string, p netip.Prefix) {
			for _, o := range others {
				for _, a := range o.Addrs {
					if a.Prefix.Masked().Overlaps(p.Masked()) {
						v.ps.addf(path, nil, "subnet %s overlaps %s on %s of %s: the host would have two routes to it",
							p.Masked(), a.Prefix, a.Link, o)
						return
					}
				}
			}
		})
	}
	return others
}

// eachHostAddress calls fn with the host-side addresses of namespace i.
func (v validator) eachHostAddress(i int, ns Namespace, fn func(path string, p netip.Prefix)) {
	path := fmt.Sprintf("namespaces[%d]", i)
	if ns.HostAddress.IsValid() {
		fn(path+".host_address", ns.HostAddress)
	}
	if ns.HostAddress6.IsValid() {
		fn(path+".host_address6", ns.HostAddress6)
	}
}

// ownLinks are the interfaces this file creates; addresses on them are
// its own (a leftover `up` reverts, or the running agent's on reload).
func (v validator) ownLinks() map[string]bool {
	m := map[string]bool{}
	for _, ns := range v.cfg.Namespaces {
		m[ns.Veth.Host] = true
	}
	return m
}

// foreign lists the host's addresses that are neither this file's nor
// another site's (those are reported against the site), nor link-local.
func (v validator) foreign(addrs []HostAddr, others []otherSite) []HostAddr {
	own := v.ownLinks()
	return slices.DeleteFunc(slices.Clone(addrs), func(a HostAddr) bool {
		return own[a.Link] || a.Prefix.Addr().IsLinkLocalUnicast() ||
			slices.ContainsFunc(others, func(o otherSite) bool { return o.keys[claimKey("link", a.Link)] })
	})
}

// hostSubnets refuses a namespace subnet that is already on the host:
// the WAN's own subnet passed, and `up` made a second route for it (on a
// VPS that cuts the WAN).
func (v validator) hostSubnets(addrs []HostAddr, others []otherSite) {
	host := v.foreign(addrs, others)
	for i, ns := range v.cfg.Namespaces {
		v.eachHostAddress(i, ns, func(path string, p netip.Prefix) {
			if k := slices.IndexFunc(host, func(a HostAddr) bool { return a.Prefix.Masked().Overlaps(p.Masked()) }); k >= 0 {
				v.ps.addf(path, nil, "subnet %s overlaps %s, already on the host's interface %s: the host would have two routes to it "+
					"(on a VPS that cuts the WAN); choose a subnet not in use", p.Masked(), host[k].Prefix, host[k].Link)
			}
		})
	}
}

// localSource is a default local prefix and where it comes from.
type localSource struct {
	p    netip.Prefix
	from string
}

// defaultLocalPrefixes refuses a peer prefix that overlaps a local one
// when tunnel.local_prefixes is left to its default (the networks of the
// LAN interface's addresses, read from the host, and of the namespaces):
// a destination is either local or remote. An explicit list is checked
// by localPrefixes.
func (v validator) defaultLocalPrefixes(addrs []HostAddr) {
	c := v.cfg
	if len(c.Tunnel.LocalPrefixes) > 0 {
		return
	}
	var local []localSource
	if !v.ownLinks()[c.LAN.Interface] {
		for _, a := range addrs {
			if a.Link == c.LAN.Interface && !a.Prefix.Addr().IsLinkLocalUnicast() {
				local = append(local, localSource{a.Prefix.Masked(), fmt.Sprintf("the network of %s on lan.interface %s", a.Prefix, a.Link)})
			}
		}
	}
	for i, ns := range c.Namespaces {
		for _, a := range []struct {
			p     netip.Prefix
			field string
		}{{ns.Address, "address"}, {ns.Address6, "address6"}} {
			if a.p.IsValid() {
				local = append(local, localSource{a.p.Masked(), fmt.Sprintf("the subnet of namespaces[%d].%s", i, a.field)})
			}
		}
	}
	for _, pp := range v.peerPrefixes() {
		if k := slices.IndexFunc(local, func(l localSource) bool { return l.p.Overlaps(pp.p) }); k >= 0 {
			v.ps.addf(pp.path, nil, "%s overlaps %s, a local prefix (%s): a destination is either local or remote, "+
				"and its blackhole route would cut this host off from it", pp.p, local[k].p, local[k].from)
		}
	}
}

// blackholeHost refuses a blackhole that would replace or shadow the
// host's own routes: its default route (a /0, or one containing the
// gateway) or the route to a subnet on its interfaces.
func (v validator) blackholeHost(addrs []HostAddr, routes []HostRoute, others []otherSite) {
	host := v.foreign(addrs, others)
	for _, b := range v.blackholes() {
		if v.ps.hasMatch(reExact(b.path)) {
			continue // already refused, e.g. as a local prefix
		}
		if msg := coversDefault(b.p, routes); msg != "" {
			v.ps.addf(b.path, nil, "%s %s: its blackhole route would cut the host off", b.p, msg)
			continue
		}
		if k := slices.IndexFunc(host, func(a HostAddr) bool {
			return b.p.Bits() >= a.Prefix.Bits() && a.Prefix.Masked().Overlaps(b.p)
		}); k >= 0 {
			v.ps.addf(b.path, nil, "%s lies in the subnet of %s on the host's interface %s: its blackhole route would cut the host off from it",
				b.p, host[k].Prefix, host[k].Link)
		}
	}
}

// coversDefault says how blackhole b takes over one of the default
// routes, or returns "".
func coversDefault(b netip.Prefix, routes []HostRoute) string {
	for _, r := range routes {
		if r.Dst.Addr().Is4() != b.Addr().Is4() {
			continue
		}
		switch {
		case b.Bits() == 0:
			return fmt.Sprintf("would replace the host's default route (%s)", r)
		case r.Gw.IsValid() && b.Contains(r.Gw):
			return fmt.Sprintf("contains the gateway of the host's default route (%s)", r)
		}
	}
	return ""
}

// String formats a default route as `ip route` does.
func (r HostRoute) String() string {
	s := "default"
	if r.Gw.IsValid() {
		s += " via " + r.Gw.String()
	}
	if r.Dev != "" {
		s += " dev " + r.Dev
	}
	return s
}

// CheckClaims re-checks the file against the other sites' journals (for
// `up`, under the state directory's lock, just before it applies): what
// Load found may have changed since. Problems come back as a
// *Error placed in file.
func CheckClaims(cfg *Config, file string, host HostInfo) error {
	ps := &problems{}
	validator{cfg: cfg, ps: ps}.otherSites(host)
	return fileProblems(ps, file)
}

package netcfg

import (
	"fmt"
	"net/netip"
)

// view is one pass's picture of the host: the first read of a table of a
// namespace (its links, its addresses, its IPv4 or IPv6 routes) lists the
// whole table through the Host and indexes it; later reads in the pass
// look it up. A pass over a plan of n routes thus costs one route dump,
// not n.
//
// Changes made during the pass keep the view true: a route the pass adds
// or deletes is entered into (or removed from) the index, since a pass
// may add thousands; any other change (a namespace, a link, an address,
// an MTU, up) drops what the view holds for the namespaces it touches,
// since the kernel changes more than was asked (an address brings a
// route, a link going down takes routes with it), and the next read lists
// those tables again. Plans have few such changes.
type view struct {
	h   Host
	nss map[string]*nsView
}

// nsView is what a view has read of one namespace. A nil map has not
// been read; an error is kept for the rest of the pass (until dropped).
type nsView struct {
	exists    *bool
	existsErr error

	links    map[string]LinkInfo
	linksErr error

	addrs    map[string]map[netip.Prefix]bool
	addrsErr error

	routes    [2]map[routeKey]RouteSpec   // [0] IPv4, [1] IPv6
	more      [2]map[routeKey][]RouteSpec // further routes with a key of routes (rare)
	routesErr [2]error
}

func newView(h Host) *view { return &view{h: h, nss: map[string]*nsView{}} }

func (v *view) ns(name string) *nsView {
	n := v.nss[name]
	if n == nil {
		n = &nsView{}
		v.nss[name] = n
	}
	return n
}

// namespaceExists reports whether the named namespace exists ("" always
// does).
func (v *view) namespaceExists(name string) (bool, error) {
	if name == "" {
		return true, nil
	}
	n := v.ns(name)
	if n.exists == nil && n.existsErr == nil {
		ok, err := v.h.NamespaceExists(name)
		n.exists, n.existsErr = &ok, err
	}
	if n.existsErr != nil {
		return false, n.existsErr
	}
	return *n.exists, nil
}

// link returns the link name of namespace ns; ErrNotFound (wrapped) when
// there is no such link or namespace.
func (v *view) link(ns, name string) (LinkInfo, error) {
	n := v.ns(ns)
	if n.links == nil && n.linksErr == nil {
		list, err := v.h.Links(ns)
		n.linksErr = err
		if err == nil {
			n.links = make(map[string]LinkInfo, len(list))
			for _, l := range list {
				n.links[l.Name] = l
			}
		}
	}
	if n.linksErr != nil {
		return LinkInfo{}, n.linksErr
	}
	l, ok := n.links[name]
	if !ok {
		return LinkInfo{}, fmt.Errorf("link %s%s: %w", name, where(ns), ErrNotFound)
	}
	return l, nil
}

// hasAddr reports whether link of namespace ns has address p (interface
// form). A missing link is ErrNotFound.
func (v *view) hasAddr(ns, link string, p netip.Prefix) (bool, error) {
	if _, err := v.link(ns, link); err != nil {
		return false, err
	}
	n := v.ns(ns)
	if n.addrs == nil && n.addrsErr == nil {
		byLink, err := v.h.Addrs(ns)
		n.addrsErr = err
		if err == nil {
			n.addrs = make(map[string]map[netip.Prefix]bool, len(byLink))
			for l, list := range byLink {
				set := make(map[netip.Prefix]bool, len(list))
				for _, a := range list {
					set[a] = true
				}
				n.addrs[l] = set
			}
		}
	}
	if n.addrsErr != nil {
		return false, n.addrsErr
	}
	return n.addrs[link][p], nil
}

func famIndex(p netip.Prefix) int {
	if p.Addr().Is6() {
		return 1
	}
	return 0
}

// routes calls f with each route of namespace ns with r's identity
// (destination and metric): none, one, or (rarely: IPv4 routes that
// differ in TOS, routes added with NLM_F_APPEND) several, until f returns
// false.
func (v *view) routes(ns string, r *RouteSpec, f func(*RouteSpec) bool) error {
	fam := famIndex(r.Dst)
	t, err := v.routeTable(ns, fam)
	if err != nil {
		return err
	}
	k := r.key()
	first, ok := t[k]
	if !ok || !f(&first) {
		return nil
	}
	for _, other := range v.ns(ns).more[fam][k] {
		if !f(&other) {
			break
		}
	}
	return nil
}

func (v *view) routeTable(ns string, fam int) (map[routeKey]RouteSpec, error) {
	n := v.ns(ns)
	if n.routes[fam] == nil && n.routesErr[fam] == nil {
		list, err := v.h.Routes(ns, fam == 1)
		n.routesErr[fam] = err
		if err == nil {
			t := make(map[routeKey]RouteSpec, len(list))
			for _, r := range list {
				if _, dup := t[r.key()]; dup {
					if n.more[fam] == nil {
						n.more[fam] = map[routeKey][]RouteSpec{}
					}
					n.more[fam][r.key()] = append(n.more[fam][r.key()], r)
					continue
				}
				t[r.key()] = r
			}
			n.routes[fam] = t
		}
	}
	return n.routes[fam], n.routesErr[fam]
}

// changed keeps the view true after e's change was made (apply) or
// undone (revert).
func (v *view) changed(e *Entry, reverted bool) {
	switch e.Kind {
	case KindRoute:
		n, fam := v.ns(e.NS), famIndex(e.Route.Dst)
		t := n.routes[fam]
		if t == nil {
			return
		}
		k := e.Route.key()
		delete(n.more[fam], k)
		if reverted {
			delete(t, k)
			if e.Prior.Route != nil {
				t[k] = *e.Prior.Route
			}
			return
		}
		t[k] = *e.Route
	case KindFeatures:
		// Features are read from the Host every time (views do not
		// hold them), and a feature change does not touch the tables.
	case KindVeth:
		v.drop("")
		v.drop(e.PeerNS)
	default:
		v.drop(e.NS)
	}
}

// drop forgets what the view read of namespace ns.
func (v *view) drop(ns string) { delete(v.nss, ns) }

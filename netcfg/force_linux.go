//go:build linux

package netcfg

import (
	"errors"
	"fmt"
	"slices"
)

// ForceRemove is the way out of a journal that cannot be used (damaged,
// or made in a namespace that is gone): it removes, without a journal,
// what d names and what carries the agent's marks, and nothing else:
//
//   - routes to d's destinations with protocol 227 (RouteProtocol);
//   - d's veth pairs whose two ends are each other's peer, the host end
//     in the agent's namespace and the other in the namespace d names;
//   - d's namespaces once they hold nothing but lo.
//
// owner names another site that claims an object ("route", "link" or
// "namespace" and its name), which is then left alone; nil claims none.
// Prior values (an MTU, offloads of an interface the agent did not
// create, a route it replaced) were only in the journal and are not
// restored. It returns a line per object removed and per object left
// with the reason; errors are returned together.
func (h *NetlinkHost) ForceRemove(d Desired, owner func(kind, name string) string) (removed, left []string, err error) {
	if owner == nil {
		owner = func(string, string) string { return "" }
	}
	var errs []error
	note := func(l *[]string, format string, args ...any) { *l = append(*l, fmt.Sprintf(format, args...)) }
	v := newView(h) // each route table read once
	for _, r := range d.Routes {
		want := routeSpec(r)
		dst := want.Dst
		what := "route " + dst.String() + where(r.NS)
		if o := owner("route", dst.String()); r.NS == "" && o != "" {
			note(&left, "%s: claimed by %s", what, o)
			continue
		}
		var cur *RouteSpec
		err := v.routes(r.NS, want, func(have *RouteSpec) bool {
			c := *have
			cur = &c
			return c.Protocol != RouteProtocol // look on for one of ours
		})
		switch {
		case errors.Is(err, ErrNotFound) || (err == nil && cur == nil):
		case err != nil:
			errs = append(errs, fmt.Errorf("read %s: %w", what, err))
		case cur.Protocol != RouteProtocol:
			note(&left, "%s: protocol %d, not the agent's %d", what, cur.Protocol, RouteProtocol)
		default:
			if err := h.DelRoute(r.NS, *cur); err != nil && !errors.Is(err, ErrNotFound) {
				errs = append(errs, fmt.Errorf("remove %s: %w", what, err))
				continue
			}
			note(&removed, "%s (%s, protocol %d)", what, cur.String(), RouteProtocol)
		}
	}
	for _, v := range d.Veths {
		what := fmt.Sprintf("veth pair %s <-> %s%s", v.Name, v.Peer, where(v.PeerNS))
		if o := owner("link", v.Name); o != "" {
			note(&left, "%s: claimed by %s", what, o)
			continue
		}
		ok, why, err := h.isPair(v)
		switch {
		case errors.Is(err, ErrNotFound):
		case err != nil:
			errs = append(errs, fmt.Errorf("read %s: %w", what, err))
		case !ok:
			note(&left, "interface %s: %s", v.Name, why)
		default:
			if err := h.DeleteLink("", v.Name); err != nil && !errors.Is(err, ErrNotFound) {
				errs = append(errs, fmt.Errorf("remove %s: %w", what, err))
				continue
			}
			note(&removed, "%s", what)
		}
	}
	for _, ns := range d.Namespaces {
		what := "namespace " + ns
		if o := owner("namespace", ns); o != "" {
			note(&left, "%s: claimed by %s", what, o)
			continue
		}
		if ok, err := h.NamespaceExists(ns); err != nil || !ok {
			if err != nil {
				errs = append(errs, err)
			}
			continue
		}
		others, err := h.linkNames(ns)
		if err != nil {
			errs = append(errs, fmt.Errorf("list the interfaces of %s: %w", what, err))
			continue
		}
		if others = slices.DeleteFunc(others, func(n string) bool { return n == "lo" }); len(others) > 0 {
			slices.Sort(others)
			note(&left, "%s: holds interfaces the site file does not create (%v)", what, others)
			continue
		}
		if err := h.DeleteNamespace(ns); err != nil && !errors.Is(err, ErrNotFound) {
			errs = append(errs, fmt.Errorf("remove %s: %w", what, err))
			continue
		}
		note(&removed, "%s", what)
	}
	return removed, left, errors.Join(errs...)
}

// isPair reports whether v.Name in the agent's namespace and v.Peer in
// v.PeerNS are the two ends of one veth pair; why says what differs. The
// error wraps ErrNotFound when the host end does not exist.
func (h *NetlinkHost) isPair(v Veth) (ok bool, why string, err error) {
	hl, _, err := h.link("", v.Name)
	if err != nil {
		return false, "", err
	}
	if hl.Type() != "veth" {
		return false, fmt.Sprintf("a %s, not a veth", hl.Type()), nil
	}
	pl, _, err := h.link(v.PeerNS, v.Peer)
	if errors.Is(err, ErrNotFound) {
		return false, fmt.Sprintf("its peer is not %s%s", v.Peer, where(v.PeerNS)), nil
	}
	if err != nil {
		return false, "", err
	}
	ha, pa := hl.Attrs(), pl.Attrs()
	if pl.Type() != "veth" || ha.ParentIndex != pa.Index || pa.ParentIndex != ha.Index {
		return false, fmt.Sprintf("its peer is not %s%s", v.Peer, where(v.PeerNS)), nil
	}
	return true, "", nil
}

// linkNames lists the interfaces of namespace ns.
func (h *NetlinkHost) linkNames(ns string) ([]string, error) {
	x, err := h.handles(ns)
	if err != nil {
		return nil, err
	}
	links, err := x.nl.LinkList()
	if err != nil {
		return nil, mapErr(err)
	}
	var out []string
	for _, l := range links {
		out = append(out, l.Attrs().Name)
	}
	return out, nil
}

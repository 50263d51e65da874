package netcfg

import (
	"errors"
	"fmt"
	"maps"
)

// op reads, applies and reverts one kind of entry. read fills e.Prior
// from a view of the host (view.go) and reports whether the host already
// matches (then nothing is changed or reverted). apply makes the change;
// revert restores e.Prior and must tolerate the target being gone
// already.
type op struct {
	read   func(v *view, e *Entry) (matches bool, err error)
	apply  func(h Host, e *Entry) error
	revert func(h Host, e *Entry) error
}

var ops = map[Kind]op{
	KindNamespace: {readNamespace, applyNamespace, revertNamespace},
	KindVeth:      {readVeth, applyVeth, revertVeth},
	KindMTU:       {readMTU, applyMTU, revertMTU},
	KindFeatures:  {readFeatures, applyFeatures, revertFeatures},
	KindAddr:      {readAddr, applyAddr, revertAddr},
	KindUp:        {readUp, applyUp, revertUp},
	KindRoute:     {readRoute, applyRoute, revertRoute},
	KindTC:        {readTC, applyTC, revertTC}, // tc.go
}

// gone reports whether err says the target no longer exists, which a
// revert treats as success.
func gone(err error) bool { return err == nil || errors.Is(err, ErrNotFound) }

func readNamespace(v *view, e *Entry) (bool, error) {
	ok, err := v.namespaceExists(e.NS)
	e.Prior.Exists = ok
	return ok, err
}

func applyNamespace(h Host, e *Entry) error {
	if err := h.CreateNamespace(e.NS); err != nil && !errors.Is(err, ErrExists) {
		return err
	}
	return nil
}

func revertNamespace(h Host, e *Entry) error {
	if err := h.DeleteNamespace(e.NS); !gone(err) {
		return err
	}
	return nil
}

// readVeth accepts an existing pair with the same names as already there;
// a host link of that name that is not such a veth is a name clash.
func readVeth(v *view, e *Entry) (bool, error) {
	li, err := v.link("", e.Link)
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	e.Prior.Exists = true
	if li.Type != "veth" {
		return false, fmt.Errorf("link %s already exists (type %s)", e.Link, li.Type)
	}
	if _, err := v.link(e.PeerNS, e.Peer); err != nil {
		return false, fmt.Errorf("link %s already exists, but its peer %s%s: %w", e.Link, e.Peer, where(e.PeerNS), err)
	}
	return true, nil
}

func applyVeth(h Host, e *Entry) error {
	if err := h.AddVeth(e.Link, e.Peer, e.PeerNS); err != nil {
		if errors.Is(err, ErrExists) {
			if ok, rerr := readVeth(newView(h), e); ok && rerr == nil {
				return nil
			}
		}
		return err
	}
	return nil
}

func revertVeth(h Host, e *Entry) error {
	if err := h.DeleteLink("", e.Link); !gone(err) {
		return err
	}
	return nil
}

func readMTU(v *view, e *Entry) (bool, error) {
	li, err := v.link(e.NS, e.Link)
	e.Prior.MTU = li.MTU
	return err == nil && li.MTU == e.MTU, err
}

func applyMTU(h Host, e *Entry) error { return h.SetMTU(e.NS, e.Link, e.MTU) }

func revertMTU(h Host, e *Entry) error {
	if e.Prior.MTU == 0 {
		return nil
	}
	if err := h.SetMTU(e.NS, e.Link, e.Prior.MTU); !gone(err) {
		return err
	}
	return nil
}

// readFeatures resolves short names into the device's kernel names (the
// journal keeps the kernel names) and records the requested value of each.
func readFeatures(v *view, e *Entry) (bool, error) {
	dev, err := v.h.Features(e.NS, e.Link)
	if err != nil {
		return false, err
	}
	want, err := expandFeatures(e.Features, dev)
	if err != nil {
		return false, err
	}
	e.Features = map[string]bool{}
	e.Prior.Features = map[string]bool{}
	for name, on := range want {
		if dev[name].Requested != on || dev[name].Active != on {
			e.Features[name] = on
			e.Prior.Features[name] = dev[name].Requested
		}
	}
	return len(e.Features) == 0, nil
}

func applyFeatures(h Host, e *Entry) error { return h.SetFeatures(e.NS, e.Link, e.Features) }

func revertFeatures(h Host, e *Entry) error {
	if len(e.Prior.Features) == 0 {
		return nil
	}
	if err := h.SetFeatures(e.NS, e.Link, maps.Clone(e.Prior.Features)); !gone(err) {
		return err
	}
	return nil
}

func readAddr(v *view, e *Entry) (bool, error) {
	ok, err := v.hasAddr(e.NS, e.Link, e.Prefix)
	e.Prior.Exists = ok
	return ok, err
}

func applyAddr(h Host, e *Entry) error {
	if err := h.AddAddr(e.NS, e.Link, e.Prefix); err != nil && !errors.Is(err, ErrExists) {
		return err
	}
	return nil
}

func revertAddr(h Host, e *Entry) error {
	if err := h.DelAddr(e.NS, e.Link, e.Prefix); !gone(err) {
		return err
	}
	return nil
}

func readUp(v *view, e *Entry) (bool, error) {
	li, err := v.link(e.NS, e.Link)
	e.Prior.Up = li.Up
	return err == nil && li.Up, err
}

func applyUp(h Host, e *Entry) error { return h.SetUp(e.NS, e.Link, true) }

func revertUp(h Host, e *Entry) error {
	if e.Prior.Up {
		return nil
	}
	if err := h.SetUp(e.NS, e.Link, false); !gone(err) {
		return err
	}
	return nil
}

// readRoute looks for a route with the identity of the entry's (family,
// main table, destination, metric). One that does the same (type and
// gateway) matches: it is left as found, whoever made it. A different one
// is recorded in e.Prior.Route and is a conflict (routeConflict): the
// agent never replaces a route it did not make.
func readRoute(v *view, e *Entry) (bool, error) {
	var found *RouteSpec
	matches := false
	err := v.routes(e.NS, e.Route, func(r *RouteSpec) bool {
		if found == nil || sameRoute(r, e.Route) {
			found = r
		}
		matches = sameRoute(r, e.Route)
		return !matches
	})
	if found != nil {
		r := *found
		e.Prior.Route = &r
	}
	return matches, err
}

// routeConflict reports whether a read route entry found a different
// route holding its destination and metric.
func routeConflict(e *Entry) bool {
	return e.Kind == KindRoute && e.Prior.Route != nil && !sameRoute(e.Prior.Route, e.Route)
}

// applyRoute adds the route; it never replaces one (a route that appeared
// since the read is reported as ErrExists).
func applyRoute(h Host, e *Entry) error { return h.AddRoute(e.NS, *e.Route) }

// revertRoute deletes the route the entry added (its destination, metric,
// type and protocol: a route someone put in its place is left). A journal
// of an earlier version may record a route the entry replaced: that one
// is put back.
func revertRoute(h Host, e *Entry) error {
	var err error
	if e.Prior.Route != nil && !sameRoute(e.Prior.Route, e.Route) {
		err = h.ReplaceRoute(e.NS, *e.Prior.Route)
	} else {
		err = h.DelRoute(e.NS, *e.Route)
	}
	if !gone(err) {
		return err
	}
	return nil
}

package netcfg

import (
	"errors"
	"fmt"
	"maps"
)

// op reads, applies and reverts one kind of entry. read fills e.Prior and
// reports whether the host already matches (then nothing is changed or
// reverted). apply makes the change; revert restores e.Prior and must
// tolerate the target being gone already.
type op struct {
	read   func(h Host, e *Entry) (matches bool, err error)
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
}

// gone reports whether err says the target no longer exists, which a
// revert treats as success.
func gone(err error) bool { return err == nil || errors.Is(err, ErrNotFound) }

func readNamespace(h Host, e *Entry) (bool, error) {
	ok, err := h.NamespaceExists(e.NS)
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
func readVeth(h Host, e *Entry) (bool, error) {
	li, err := h.Link("", e.Link)
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
	if _, err := h.Link(e.PeerNS, e.Peer); err != nil {
		return false, fmt.Errorf("link %s already exists, but its peer %s%s: %w", e.Link, e.Peer, where(e.PeerNS), err)
	}
	return true, nil
}

func applyVeth(h Host, e *Entry) error {
	if err := h.AddVeth(e.Link, e.Peer, e.PeerNS); err != nil {
		if errors.Is(err, ErrExists) {
			if ok, rerr := readVeth(h, e); ok && rerr == nil {
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

func readMTU(h Host, e *Entry) (bool, error) {
	li, err := h.Link(e.NS, e.Link)
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
func readFeatures(h Host, e *Entry) (bool, error) {
	dev, err := h.Features(e.NS, e.Link)
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

func readAddr(h Host, e *Entry) (bool, error) {
	ok, err := h.HasAddr(e.NS, e.Link, e.Prefix)
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

func readUp(h Host, e *Entry) (bool, error) {
	li, err := h.Link(e.NS, e.Link)
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

// readRoute records the route that held the same destination (if any), so
// that revert puts it back; an identical route is left as found.
func readRoute(h Host, e *Entry) (bool, error) {
	cur, err := h.Route(e.NS, e.Route.Dst)
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	e.Prior.Route = &cur
	return cur.Type == e.Route.Type && cur.Gw == e.Route.Gw, nil
}

func applyRoute(h Host, e *Entry) error { return h.ReplaceRoute(e.NS, *e.Route) }

func revertRoute(h Host, e *Entry) error {
	var err error
	if e.Prior.Route != nil {
		err = h.ReplaceRoute(e.NS, *e.Prior.Route)
	} else {
		err = h.DelRoute(e.NS, *e.Route)
	}
	if !gone(err) {
		return err
	}
	return nil
}

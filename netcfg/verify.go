package netcfg

import (
	"errors"
	"fmt"
	"slices"
	"time"
)

// verifyTries and verifyPause bound how long verify waits for the kernel
// to finish what a revert started (a deleted namespace's links go away
// asynchronously).
const (
	verifyTries = 10
	verifyPause = 100 * time.Millisecond
)

// verify reads back, after a revert of entries, every target they
// changed, and returns the entries of each target that is not back at
// its value from before the oldest of them, with an error per target: a
// revert that found everything "already gone" must not pass for one that
// undid the changes. A target that is gone counts as reverted; so does a
// route someone else has replaced (no longer protocol 227).
func verify(h Host, entries []Entry) ([]Entry, []error) {
	var left []Entry
	var errs []error
	for try := 0; try < verifyTries; try++ {
		if try > 0 {
			time.Sleep(verifyPause)
		}
		bad := map[target]bool{}
		errs = nil
		v := newView(h) // one read per table per try, however many entries
		for _, g := range byTarget(entries) {
			if err := checkReverted(h, v, g); err != nil {
				bad[g[0].target()] = true
				errs = append(errs, err)
			}
		}
		if len(errs) == 0 {
			return nil, nil
		}
		left = slices.DeleteFunc(slices.Clone(entries), func(e Entry) bool { return !bad[e.target()] })
	}
	return left, errs
}

// byTarget groups the entries that changed something by target, oldest
// first within a group, groups in order of first appearance.
func byTarget(entries []Entry) [][]Entry {
	idx := map[target]int{}
	var out [][]Entry
	for _, e := range entries {
		if e.State == Unchanged {
			continue
		}
		t := e.target()
		i, ok := idx[t]
		if !ok {
			i = len(out)
			idx[t] = i
			out = append(out, nil)
		}
		out[i] = append(out[i], e)
	}
	return out
}

// checkReverted returns an error when the target of g (its entries,
// oldest first) is not back at the prior value of the oldest entry.
func checkReverted(h Host, v *view, g []Entry) error {
	e := g[0]
	var remains bool
	var err error
	switch e.Kind {
	case KindNamespace:
		if !e.Prior.Exists {
			remains, err = v.namespaceExists(e.NS)
		}
	case KindVeth:
		if !e.Prior.Exists {
			_, err = v.link("", e.Link)
			remains = err == nil
		}
	case KindAddr:
		if !e.Prior.Exists {
			remains, err = v.hasAddr(e.NS, e.Link, e.Prefix)
		}
	case KindMTU, KindUp:
		var li LinkInfo
		li, err = v.link(e.NS, e.Link)
		remains = err == nil && ((e.Kind == KindMTU && e.Prior.MTU != 0 && li.MTU != e.Prior.MTU) ||
			(e.Kind == KindUp && !e.Prior.Up && li.Up))
	case KindFeatures:
		remains, err = featuresChanged(h, g)
	case KindRoute:
		remains, err = routeRemains(v, e)
	}
	switch {
	case errors.Is(err, ErrNotFound):
		return nil
	case err != nil:
		return fmt.Errorf("verify the revert of %q: %w", e.String(), err)
	case remains:
		return fmt.Errorf("revert of %q: the change is still in place after the revert", e.String())
	}
	return nil
}

// featuresChanged reports whether a feature the entries of g changed is
// not back at its oldest recorded value.
func featuresChanged(h Host, g []Entry) (bool, error) {
	want := map[string]bool{}
	for _, e := range g {
		for name, on := range e.Prior.Features {
			if _, ok := want[name]; !ok {
				want[name] = on
			}
		}
	}
	if len(want) == 0 {
		return false, nil
	}
	dev, err := h.Features(g[0].NS, g[0].Link)
	if err != nil {
		return false, err
	}
	for name, on := range want {
		if f, ok := dev[name]; ok && !f.Fixed && f.Requested != on {
			return true, nil
		}
	}
	return false, nil
}

// routeRemains reports whether a route of ours (protocol 227) has the
// entry's identity (destination and metric) although none of ours was
// there before.
func routeRemains(v *view, e Entry) (bool, error) {
	if e.Route == nil || (e.Prior.Route != nil && e.Prior.Route.Protocol == RouteProtocol) {
		return false, nil
	}
	ours := false
	err := v.routes(e.NS, e.Route, func(r *RouteSpec) bool {
		ours = r.Protocol == RouteProtocol
		return !ours
	})
	return ours, err
}

package netcfg

import (
	"fmt"
	"strings"
)

// ConflictError says that the plan needs routes where the host has routes
// of its own: another route with the same family, table, destination and
// metric as one the agent would add. The agent never replaces or deletes
// a route it did not make, so it refuses the whole plan before changing
// anything.
type ConflictError struct {
	Conflicts []Conflict
}

// Conflict is one route the plan needs and the host route in its place.
type Conflict struct {
	NS   string    // namespace ("" = the agent's)
	Want RouteSpec // the route the plan would add
	Have RouteSpec // the host's route with the same identity
}

func (c Conflict) String() string {
	return fmt.Sprintf("add route %s%s: the host already has the route %q with the same destination and metric; "+
		"it was not made by this agent, which never replaces or deletes such a route (remove or change it, or leave %s out of the configuration)",
		c.Want.String(), where(c.NS), c.Have.Describe(), c.Want.Dst)
}

func (e *ConflictError) Error() string {
	lines := make([]string, len(e.Conflicts))
	for i, c := range e.Conflicts {
		lines[i] = c.String()
	}
	return strings.Join(lines, "\n")
}

// conflictError is the ConflictError of one read route entry.
func conflictError(e *Entry) *ConflictError {
	return &ConflictError{[]Conflict{{NS: e.NS, Want: *e.Route, Have: *e.Prior.Route}}}
}

// checkRoutes reads, before any change, every route of the plan in the
// namespaces that exist (a namespace the plan creates has no routes
// yet), and refuses the plan when the host has a different route where
// one is needed (a *ConflictError listing all of them) or when the plan
// asks for two routes with the same identity. ours maps route targets to
// routes this journal made and that the caller removes before applying
// (Reconfigure): finding one of those is no conflict.
func checkRoutes(v *view, entries []Entry, ours map[target]*RouteSpec) error {
	seen := map[target]int{} // index in entries
	var conflicts []Conflict
	for i, e := range entries {
		switch e.Kind {
		case KindNamespace:
			if _, err := v.namespaceExists(e.NS); err != nil {
				return fmt.Errorf("%s: %w", e.String(), err)
			}
			continue
		case KindRoute:
		default:
			continue
		}
		t := e.target()
		if first, ok := seen[t]; ok {
			return fmt.Errorf("%s: the plan also has %q, with the same destination and metric", e.String(), entries[first].String())
		}
		seen[t] = i
		if ok, err := v.namespaceExists(e.NS); err != nil || !ok {
			continue // reported by the namespace's entry; a new namespace has no routes
		}
		desc := e.String()
		if _, err := readRoute(v, &e); err != nil {
			return fmt.Errorf("%s: %w", desc, err)
		}
		if routeConflict(&e) && (ours[t] == nil || !sameRoute(e.Prior.Route, ours[t])) {
			conflicts = append(conflicts, Conflict{NS: e.NS, Want: *e.Route, Have: *e.Prior.Route})
		}
	}
	if len(conflicts) > 0 {
		return &ConflictError{conflicts}
	}
	return nil
}

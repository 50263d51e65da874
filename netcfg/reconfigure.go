package netcfg

import (
	"errors"
	"log/slog"
	"net/netip"
)

// Reconfigure moves the host from cur to next, changing only the
// difference, with the journal kept true:
//
//   - routes of next are checked first, as Apply does: a host route of
//     someone else's where next needs one refuses the whole change
//     (*ConflictError), before anything is changed;
//   - targets (a link's MTU, an address, a route's destination, ...) that
//     next no longer mentions are reverted now, from their journal
//     entries, which are then removed; so is a route whose destination
//     stays but which changes (another gateway): the agent's old route is
//     deleted before the new one is added, since AddRoute never replaces;
//   - entries of next that cur did not have (a new route, another MTU) are
//     applied as Apply would, appended to the journal, so that Revert
//     undoes them first and then the older entries for the same target:
//     the value from before the first Apply is what comes back.
//
// Entries in both are left alone. On error it stops and returns it; what
// it did so far is journaled.
func Reconfigure(h Host, cur, next Desired, j *Journal, log *slog.Logger) error {
	add, drop, ours := reconfigurePlan(cur, next, j)
	if err := checkRoutes(newView(h), add, ours); err != nil {
		return err
	}
	if err := revertWhere(h, j, drop, log); err != nil {
		return err
	}
	return applyEntries(h, newView(h), j, add, log)
}

// CheckReconfigure reports, without changing anything, whether
// Reconfigure would refuse the move from cur to next because of a route
// (a *ConflictError), so that a caller can refuse a reload before it
// changes anything else.
func CheckReconfigure(h Host, cur, next Desired, j *Journal) error {
	add, _, ours := reconfigurePlan(cur, next, j)
	return checkRoutes(newView(h), add, ours)
}

// reconfigurePlan returns the entries of next to apply, which journal
// entries to drop (revert), and the routes of the journal's that go.
func reconfigurePlan(cur, next Desired, j *Journal) (add []Entry, drop func(*Entry) bool, ours map[target]*RouteSpec) {
	nextEntries := Entries(next)
	keep := map[reconfigureKey]bool{}
	for _, e := range nextEntries {
		keep[keyOf(&e)] = true
	}
	had := map[string]bool{}
	for _, e := range Entries(cur) {
		had[e.String()] = true
	}
	for _, e := range nextEntries {
		if !had[e.String()] {
			add = append(add, e)
		}
	}
	// A tc hook is the dataplane's, not the plan's: it stays.
	drop = func(e *Entry) bool { return e.Kind != KindTC && !keep[keyOf(e)] }
	ours = map[target]*RouteSpec{}
	for i := range j.Entries {
		if e := &j.Entries[i]; e.Kind == KindRoute && e.State != Unchanged && drop(e) {
			ours[e.target()] = e.Route
		}
	}
	return add, drop, ours
}

// reconfigureKey is what Reconfigure keeps an entry by: its target, and
// for a route also what the route is (type and gateway).
type reconfigureKey struct {
	target
	typ int
	gw  netip.Addr
}

func keyOf(e *Entry) reconfigureKey {
	k := reconfigureKey{target: e.target()}
	if e.Kind == KindRoute && e.Route != nil {
		k.typ, k.gw = e.Route.Type, e.Route.Gw
	}
	return k
}

// revertWhere reverts, newest first, the journal entries that drop
// selects and removes them from the journal (revertEntries). An entry
// that fails to revert stays (and so do older ones for its target); the
// errors are returned together after the journal is saved.
func revertWhere(h Host, j *Journal, drop func(*Entry) bool, log *slog.Logger) error {
	kept, errs := revertEntries(h, j.Entries, drop, log)
	if len(kept) == len(j.Entries) && len(errs) == 0 {
		return nil
	}
	j.Entries = kept
	if err := j.Save(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

package netcfg

import (
	"errors"
	"fmt"
	"log/slog"
)

// Reconfigure moves the host from old to new, changing only the
// difference, with the journal kept true:
//
//   - targets (a link's MTU, an address, a route's destination, ...) that
//     new no longer mentions are reverted now, from their journal entries,
//     which are then removed;
//   - entries of new that old did not have (a new route, another MTU) are
//     applied as Apply would, appended to the journal, so that Revert
//     undoes them first and then the older entries for the same target:
//     the value from before the first Apply is what comes back.
//
// Entries in both are left alone. On error it stops and returns it; what
// it did so far is journaled.
func Reconfigure(h Host, old, new Desired, j *Journal, log *slog.Logger) error {
	keep := map[string]bool{}
	for _, e := range Entries(new) {
		keep[e.target()] = true
	}
	if err := revertWhere(h, j, func(e *Entry) bool { return !keep[e.target()] }, log); err != nil {
		return err
	}
	had := map[string]bool{}
	for _, e := range Entries(old) {
		had[e.String()] = true
	}
	for _, e := range Entries(new) {
		if had[e.String()] {
			continue
		}
		if err := applyEntry(h, j, e, log); err != nil {
			return err
		}
	}
	return nil
}

// revertWhere reverts, newest first, the journal entries that drop
// selects and removes them from the journal. An entry that fails to
// revert stays (and so do older ones for its target); the errors are
// returned together after the journal is saved.
func revertWhere(h Host, j *Journal, drop func(*Entry) bool, log *slog.Logger) error {
	var errs []error
	blocked := map[string]bool{}
	kept := make([]Entry, 0, len(j.Entries))
	for i := len(j.Entries) - 1; i >= 0; i-- {
		e := j.Entries[i]
		if !drop(&e) || blocked[e.target()] {
			kept = append(kept, e)
			continue
		}
		if e.State != Unchanged {
			if err := ops[e.Kind].revert(h, &e); err != nil {
				errs = append(errs, fmt.Errorf("revert %q: %w", e.String(), err))
				blocked[e.target()] = true
				kept = append(kept, e)
				continue
			}
			log.Info("reverted", "change", e.String())
		}
	}
	for l, r := 0, len(kept)-1; l < r; l, r = l+1, r-1 {
		kept[l], kept[r] = kept[r], kept[l]
	}
	if len(kept) == len(j.Entries) && len(errs) == 0 {
		return nil
	}
	j.Entries = kept
	if err := j.Save(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

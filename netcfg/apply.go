package netcfg

import (
	"errors"
	"fmt"
	"log/slog"
)

// Apply makes the host match d. Before each change it records the prior
// value in j and saves j. On failure it reverts what it did (and removes
// the journal when that revert succeeds) and returns an error naming the
// step, e.g. "set MTU of veth0 to 1420: ...".
func Apply(h Host, d Desired, j *Journal, log *slog.Logger) error {
	if err := recordNetNS(h, j); err != nil {
		return err
	}
	for _, e := range Entries(d) {
		if err := applyEntry(h, j, e, log); err != nil {
			if rerr := Revert(h, j, log); rerr != nil {
				return errors.Join(err, fmt.Errorf("roll back: %w", rerr))
			}
			return err
		}
	}
	return nil
}

func applyEntry(h Host, j *Journal, e Entry, log *slog.Logger) error {
	o := ops[e.Kind]
	desc := e.String()
	matches, err := o.read(h, &e)
	if err != nil {
		return fmt.Errorf("%s: %w", desc, err)
	}
	if matches {
		e.State = Unchanged
		j.Entries = append(j.Entries, e)
		log.Debug("already as configured", "change", desc)
		return j.Save()
	}
	e.State = Pending
	j.Entries = append(j.Entries, e)
	if err := j.Save(); err != nil {
		return err
	}
	if err := o.apply(h, &e); err != nil {
		return fmt.Errorf("%s: %w", e.String(), err)
	}
	j.Entries[len(j.Entries)-1].State = Done
	log.Info("applied", "change", e.String())
	return j.Save()
}

// Revert undoes the journal's entries in reverse order, restoring each
// prior value, and removes the journal file when all succeeded and none
// of the changes is found still in place afterwards (verify). Entries
// that fail stay in the journal (so that `down` can try again) and their
// errors are returned together. Earlier entries for the same target as a
// failed one stay too, untried: restoring their older value now would be
// overwritten by the failed entry's prior when it is retried. A journal
// made in another network namespace than h's is refused untouched
// (ErrOtherNetNS).
func Revert(h Host, j *Journal, log *slog.Logger) error {
	if err := sameNetNS(h, j); err != nil {
		return err
	}
	var failed []Entry
	var errs []error
	blocked := map[string]bool{} // targets of entries that failed
	for i := len(j.Entries) - 1; i >= 0; i-- {
		e := j.Entries[i]
		if e.State == Unchanged {
			continue
		}
		if blocked[e.target()] {
			failed = append([]Entry{e}, failed...)
			continue
		}
		if err := ops[e.Kind].revert(h, &e); err != nil {
			errs = append(errs, fmt.Errorf("revert %q: %w", e.String(), err))
			failed = append([]Entry{e}, failed...)
			blocked[e.target()] = true
			continue
		}
		log.Info("reverted", "change", e.String())
	}
	if len(errs) == 0 {
		failed, errs = verify(h, j.Entries)
	}
	j.Entries = failed
	if len(errs) > 0 {
		if err := j.Save(); err != nil {
			errs = append(errs, err)
		}
		return errors.Join(errs...)
	}
	return j.Remove()
}

// target names what an entry changes, for Revert's ordering of entries
// that change the same thing.
func (e *Entry) target() string {
	switch {
	case e.Kind == KindAddr:
		return fmt.Sprintf("addr %s %s %s", e.NS, e.Link, e.Prefix)
	case e.Kind == KindRoute && e.Route != nil:
		return fmt.Sprintf("route %s %s", e.NS, e.Route.Dst)
	}
	return fmt.Sprintf("%s %s %s", e.Kind, e.NS, e.Link)
}

package netcfg

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
)

// Apply makes the host match d. It first reads every route of the plan
// and refuses (with a *ConflictError, before any change) when the host
// has a different route of its own where the plan needs one. Then it
// applies the plan batch by batch (applyEntries), recording the prior
// values in j before the changes. On failure it reverts what it did (and
// removes the journal when that revert succeeds) and returns an error
// naming the step, e.g. "set MTU of veth0 to 1420: ...".
func Apply(h Host, d Desired, j *Journal, log *slog.Logger) error {
	if err := recordNetNS(h, j); err != nil {
		return err
	}
	entries := Entries(d)
	v := newView(h)
	if err := checkRoutes(v, entries, nil); err != nil {
		return err
	}
	if err := applyEntries(h, v, j, entries, log); err != nil {
		if rerr := Revert(h, j, log); rerr != nil {
			return errors.Join(err, fmt.Errorf("roll back: %w", rerr))
		}
		return err
	}
	return nil
}

// applyEntries applies entries in order, in batches: a batch is a run of
// consecutive entries of one kind with different targets (all the
// blackhole routes of a hub, say), whose reads do not depend on each
// other's changes. For each batch it
//
//  1. reads every entry's prior value (from one view of the host);
//  2. appends the batch to the journal, the entries that change something
//     as pending, and saves it: one write and fsync for the batch, and
//     every prior value is on disk before its change is made;
//  3. makes the changes, in order;
//  4. marks them done and saves again.
//
// A crash between 2 and 4 leaves pending entries, some of whose changes
// were made and some not; Revert tolerates both ("already gone"). Saving
// per entry instead would rewrite the whole journal once per entry, which
// is quadratic in the number of entries. If a change fails, the entries
// after it in its batch, never attempted, are dropped from the journal;
// the caller reverts the rest.
func applyEntries(h Host, v *view, j *Journal, entries []Entry, log *slog.Logger) error {
	for len(entries) > 0 {
		n := batchLen(entries)
		if err := applyBatch(h, v, j, entries[:n], log); err != nil {
			return err
		}
		entries = entries[n:]
	}
	return nil
}

// batchLen returns the length of the batch at the start of entries.
func batchLen(entries []Entry) int {
	targets := map[target]bool{entries[0].target(): true}
	n := 1
	for n < len(entries) && entries[n].Kind == entries[0].Kind && !targets[entries[n].target()] {
		targets[entries[n].target()] = true
		n++
	}
	return n
}

func applyBatch(h Host, v *view, j *Journal, batch []Entry, log *slog.Logger) error {
	o := ops[batch[0].Kind]
	base := len(j.Entries)
	var todo []int // indexes in j.Entries of the entries to change
	debug := log.Enabled(context.Background(), slog.LevelDebug)
	for _, asked := range batch {
		e := asked // read fills in e; asked names the step as the plan does
		matches, err := o.read(v, &e)
		if err == nil && !matches && routeConflict(&e) {
			err = conflictError(&e)
		}
		if err != nil {
			j.Entries = j.Entries[:base] // nothing of the batch was done
			return fmt.Errorf("%s: %w", asked.String(), err)
		}
		if matches {
			e.State = Unchanged
			if debug {
				log.Debug("already as configured", "change", asked.String())
			}
		} else {
			e.State = Pending
			todo = append(todo, len(j.Entries))
		}
		j.Entries = append(j.Entries, e)
	}
	if err := j.Save(); err != nil {
		j.Entries = j.Entries[:base]
		return err
	}
	each := newChangeLog(log, "applied", len(todo))
	for _, idx := range todo {
		e := &j.Entries[idx]
		if err := o.apply(h, e); err != nil {
			// The later entries of the batch were not attempted (or,
			// unchanged, need no revert): drop them.
			j.Entries = slices.Delete(j.Entries, idx+1, len(j.Entries))
			return fmt.Errorf("%s: %w", e.String(), err)
		}
		e.State = Done
		v.changed(e, false)
		each.add(e)
	}
	if len(todo) == 0 {
		return nil
	}
	each.done(batch[0].Kind)
	return j.Save()
}

// logEachUpTo is how many changes of one batch (or revert) are logged
// one line each at level INFO; beyond it (the blackhole routes of a hub)
// they are logged at DEBUG and summed up in one INFO line.
const logEachUpTo = 20

// changeLog logs the changes of one batch or revert.
type changeLog struct {
	logger *slog.Logger
	msg    string
	level  slog.Level
	on     bool // the level is enabled
	n      int
}

func newChangeLog(log *slog.Logger, msg string, n int) *changeLog {
	l := &changeLog{logger: log, msg: msg, level: slog.LevelInfo}
	if n > logEachUpTo {
		l.level = slog.LevelDebug
	}
	l.on = log.Enabled(context.Background(), l.level)
	return l
}

func (l *changeLog) add(e *Entry) {
	l.n++
	if l.on {
		l.logger.Log(context.Background(), l.level, l.msg, "change", e.String())
	}
}

// done writes the summary line, if the changes were not logged at INFO;
// kind is the kind of all of them ("": of several kinds).
func (l *changeLog) done(kind Kind) {
	switch {
	case l.level == slog.LevelInfo || l.n == 0:
	case kind == "":
		l.logger.Info(l.msg, "changes", l.n)
	default:
		l.logger.Info(l.msg, "changes", l.n, "kind", kind)
	}
}

// Revert undoes the journal's entries in reverse order, restoring each
// prior value (revertEntries), and removes the journal file when all
// succeeded and none of the changes is found still in place afterwards
// (verify). Entries that fail stay in the journal (so that `down` can try
// again) and their errors are returned together. A journal made in
// another network namespace than h's is refused untouched
// (ErrOtherNetNS).
func Revert(h Host, j *Journal, log *slog.Logger) error {
	if err := sameNetNS(h, j); err != nil {
		return err
	}
	left, errs := revertEntries(h, j.Entries, func(*Entry) bool { return true }, log)
	if len(errs) == 0 {
		left, errs = verify(h, j.Entries)
	}
	j.Entries = left
	if len(errs) > 0 {
		if err := j.Save(); err != nil {
			errs = append(errs, err)
		}
		return errors.Join(errs...)
	}
	return j.Remove()
}

// revertEntries reverts, newest first, the entries that drop selects
// (those that changed something: an unchanged entry has nothing to
// revert) and returns, in journal order, the entries that stay: those
// drop leaves, those that failed, and the older entries for the target
// of a failed one, untried (restoring their older value now would be
// overwritten by the failed entry's prior when it is retried). The
// errors of the failed entries are returned together. Revert drops every
// entry, Reconfigure those its new state no longer has (revertWhere).
func revertEntries(h Host, entries []Entry, drop func(*Entry) bool, log *slog.Logger) ([]Entry, []error) {
	var errs []error
	blocked := map[target]bool{} // targets of entries that failed
	kept := make([]Entry, 0, len(entries))
	n := 0
	for i := range entries {
		if drop(&entries[i]) && entries[i].State != Unchanged {
			n++
		}
	}
	each := newChangeLog(log, "reverted", n)
	for i := len(entries) - 1; i >= 0; i-- {
		e := entries[i]
		if !drop(&e) || blocked[e.target()] {
			kept = append(kept, e)
			continue
		}
		if e.State == Unchanged {
			continue
		}
		if err := ops[e.Kind].revert(h, &e); err != nil {
			errs = append(errs, fmt.Errorf("revert %q: %w", e.String(), err))
			blocked[e.target()] = true
			kept = append(kept, e)
			continue
		}
		each.add(&e)
	}
	each.done("")
	slices.Reverse(kept)
	return kept, errs
}

// target is what an entry changes (a link's MTU, an address, the route
// with a destination and metric, ...), for Revert's ordering of entries
// that change the same thing, for batches, for Reconfigure and for the
// watcher.
type target struct {
	kind     Kind
	ns, link string
	p        netip.Prefix // an address, a route's destination
	metric   int
}

func (e *Entry) target() target {
	t := target{kind: e.Kind, ns: e.NS, link: e.Link}
	switch {
	case e.Kind == KindAddr:
		t.p = e.Prefix
	case e.Kind == KindRoute && e.Route != nil:
		t.link, t.p, t.metric = "", e.Route.Dst, e.Route.Metric
	}
	return t
}

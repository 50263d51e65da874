package netcfg

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Change is one line of a plan: what would change, from what to what.
type Change struct {
	Step      int    `json:"step"`
	Kind      Kind   `json:"kind"`
	Action    string `json:"action"`
	From      string `json:"from"`
	To        string `json:"to"`
	Unchanged bool   `json:"unchanged,omitempty"` // already as wanted: left alone
	Error     string `json:"error,omitempty"`     // reading the current value failed
	// Conflict is set when the host has a route of its own where the plan
	// needs a different one (Apply refuses the plan then; see
	// ConflictError).
	Conflict string `json:"conflict,omitempty"`
	conflict *Conflict
}

// Preview computes the plan for d against the host without changing
// anything: each entry with its current and wanted value. Targets that do
// not exist yet (created by an earlier step) show as "absent". It reads
// each table of the host once (view.go).
func Preview(h Host, d Desired) []Change {
	entries := Entries(d)
	out := make([]Change, 0, len(entries))
	v := newView(h)
	for i, e := range entries {
		c := Change{Step: i + 1, Kind: e.Kind, Action: e.String(), To: wantText(&e)}
		matches, err := ops[e.Kind].read(v, &e)
		switch {
		case errors.Is(err, ErrNotFound):
			c.From = "absent"
		case err != nil:
			c.From, c.Error = "?", err.Error()
		default:
			c.From, c.Unchanged = priorText(&e), matches
			c.To = wantText(&e)
			if !matches && routeConflict(&e) {
				c.conflict = &conflictError(&e).Conflicts[0]
				c.From, c.Conflict = e.Prior.Route.Describe(), c.conflict.String()
			}
		}
		out = append(out, c)
	}
	return out
}

// Conflicts returns the route conflicts of a plan Preview computed, as
// the *ConflictError with which Apply would refuse it; nil when there are
// none.
func Conflicts(plan []Change) error {
	var cs []Conflict
	for _, c := range plan {
		if c.conflict != nil {
			cs = append(cs, *c.conflict)
		}
	}
	if cs == nil {
		return nil
	}
	return &ConflictError{cs}
}

func wantText(e *Entry) string {
	switch e.Kind {
	case KindMTU:
		return strconv.Itoa(e.MTU)
	case KindFeatures:
		return formatFeatures(e.Features)
	case KindUp:
		return "up"
	case KindRoute:
		return e.Route.String()
	}
	return "present"
}

func priorText(e *Entry) string {
	switch e.Kind {
	case KindMTU:
		return strconv.Itoa(e.Prior.MTU)
	case KindFeatures:
		if len(e.Features) == 0 {
			return "as wanted"
		}
		return formatFeatures(e.Prior.Features)
	case KindUp:
		if e.Prior.Up {
			return "up"
		}
		return "down"
	case KindRoute:
		if e.Prior.Route == nil {
			return "absent"
		}
		return e.Prior.Route.Describe()
	}
	if e.Prior.Exists {
		return "present"
	}
	return "absent"
}

// FormatPlan renders a plan for people, one change a line.
func FormatPlan(changes []Change) string {
	var b strings.Builder
	for _, c := range changes {
		fmt.Fprintf(&b, "%3d. %s", c.Step, c.Action)
		switch {
		case c.Error != "":
			fmt.Fprintf(&b, "  [cannot read current value: %s]", c.Error)
		case c.Conflict != "":
			fmt.Fprintf(&b, "  [refused: the host has %s, not made by this agent]", c.From)
		case c.Unchanged:
			b.WriteString("  (already so: left as found)")
		case c.From != "absent" || c.Kind == KindMTU || c.Kind == KindUp:
			fmt.Fprintf(&b, "  (%s -> %s)", c.From, c.To)
		}
		b.WriteByte('\n')
	}
	return b.String()
}

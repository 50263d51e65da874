package netcfg

import (
	"errors"
	"fmt"
	"slices"
)

// TCSpec is a direct-action BPF filter on a link's clsact qdisc, as the
// eBPF dataplane adds it on kernels without tcx links: enough to find it
// again and to remove exactly it (its name must still match), and the
// qdisc with it if it was created for it and nothing else is on it.
type TCSpec struct {
	Index        int    `json:"index"`
	Name         string `json:"name"` // the filter's name
	Parent       uint32 `json:"parent"`
	Priority     uint16 `json:"priority"`
	Handle       uint32 `json:"handle"`
	QdiscCreated bool   `json:"qdisc_created,omitempty"`
}

// String describes the hook as a plan or journal line.
func (t *TCSpec) String() string {
	if t == nil {
		return "tc hook"
	}
	s := fmt.Sprintf("tc filter %s (ifindex %d, pref %d, handle %d)", t.Name, t.Index, t.Priority, t.Handle)
	if t.QdiscCreated {
		s += " on a clsact qdisc created for it"
	}
	return s
}

// TCHost is a Host that can remove tc hooks (NetlinkHost). Revert of a
// KindTC entry on a Host without it fails, and the entry stays.
type TCHost interface {
	// RemoveTC removes the filter link has at t's parent, priority and
	// handle if it is named t.Name, then the clsact qdisc if
	// t.QdiscCreated and no filter is left on it; gone is fine.
	RemoveTC(ns, link string, t TCSpec) error
}

func readTC(*view, *Entry) (bool, error) { return false, nil }

func applyTC(Host, *Entry) error {
	return errors.New("a tc hook is attached by the dataplane, not applied")
}

func revertTC(h Host, e *Entry) error {
	th, ok := h.(TCHost)
	if !ok {
		return errors.New("this host cannot remove tc filters")
	}
	if e.TC == nil {
		return nil
	}
	return th.RemoveTC(e.NS, e.Link, *e.TC)
}

// RecordTC appends the hooks to the journal as done KindTC entries of
// links in the agent's namespace, and saves it: call it right after they
// are attached (with the Watcher's lock held while one runs: Locked).
// Revert then removes them, newest first, before the host changes made
// before them.
func RecordTC(j *Journal, links []string, hooks []TCSpec) error {
	if len(hooks) == 0 {
		return nil
	}
	for i, t := range hooks {
		j.Entries = append(j.Entries, Entry{Kind: KindTC, Link: links[i], TC: &t, State: Done})
	}
	return j.Save()
}

// ForgetTC removes every KindTC entry from the journal (the hooks were
// detached) and saves it if there was one.
func ForgetTC(j *Journal) error {
	n := len(j.Entries)
	j.Entries = slices.DeleteFunc(j.Entries, func(e Entry) bool { return e.Kind == KindTC })
	if len(j.Entries) == n {
		return nil
	}
	return j.Save()
}

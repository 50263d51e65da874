package netcfg

import "tunnel-agent/internal/tchook"

// RemoveTC implements TCHost.
func (h *NetlinkHost) RemoveTC(ns, link string, t TCSpec) error {
	x, err := h.handles(ns)
	if err != nil {
		return err
	}
	return tchook.Remove(x.nl, tchook.Hook{Index: t.Index, Interface: link, Name: t.Name, Parent: t.Parent,
		Priority: t.Priority, Handle: t.Handle, QdiscCreated: t.QdiscCreated})
}

// RemoveTCNamed removes, in the agent's namespace, the filter of link at
// parent, priority and handle if it is named name (down --force, without
// a journal: the qdisc under it is left, since nothing says who made it).
// It reports whether there was one.
func (h *NetlinkHost) RemoveTCNamed(link, name string, parent uint32, prio uint16, handle uint32) (bool, error) {
	x, err := h.handles("")
	if err != nil {
		return false, err
	}
	l, err := x.nl.LinkByName(link)
	if err != nil {
		return false, nil // no such link: nothing on it
	}
	th := tchook.Hook{Index: l.Attrs().Index, Interface: link, Name: name, Parent: parent, Priority: prio, Handle: handle}
	f, err := tchook.Find(x.nl, th)
	if err != nil || f == nil || f.Name != name {
		return false, err
	}
	return true, tchook.Remove(x.nl, th)
}

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

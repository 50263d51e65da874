// Package tchook adds and removes the clsact qdisc and direct-action BPF
// filters through which the eBPF dataplane's programs are hooked to tc
// ingress on kernels without tcx links, and removes them again from a
// record (Hook): dataplane/ebpf attaches and detaches with it, and the
// host journal's revert (netcfg, KindTC) removes what a crashed agent
// left.
package tchook

import (
	"errors"
	"fmt"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Hook is one filter on one interface's clsact: what it takes to find it
// again and remove it, and whether the qdisc was created for it.
type Hook struct {
	Index        int    // interface index
	Interface    string // its name, for messages
	Name         string // the filter's name: only a filter so named is removed
	Parent       uint32
	Priority     uint16
	Handle       uint32
	QdiscCreated bool // the qdisc was added for it (removed with it when empty)
}

// EnsureClsact adds a clsact qdisc to the interface unless it has one,
// and reports whether it added it.
func EnsureClsact(nl *netlink.Handle, index int) (bool, error) {
	err := nl.QdiscAdd(clsact(index))
	if errors.Is(err, unix.EEXIST) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("adding clsact qdisc: %w", err)
	}
	return true, nil
}

func clsact(index int) *netlink.GenericQdisc {
	return &netlink.GenericQdisc{QdiscType: "clsact", QdiscAttrs: netlink.QdiscAttrs{
		LinkIndex: index, Handle: netlink.MakeHandle(0xffff, 0), Parent: netlink.HANDLE_CLSACT}}
}

// Filter is h's direct-action filter running the program of fd.
func Filter(h Hook, fd int) *netlink.BpfFilter {
	return &netlink.BpfFilter{FilterAttrs: netlink.FilterAttrs{LinkIndex: h.Index, Parent: h.Parent,
		Handle: h.Handle, Priority: h.Priority, Protocol: unix.ETH_P_ALL},
		Fd: fd, Name: h.Name, DirectAction: true}
}

// Add adds h's filter, or replaces the one a crashed run left at its
// priority and handle with its name; anyone else's filter there is an
// error.
func Add(nl *netlink.Handle, h Hook, fd int) error {
	f := Filter(h, fd)
	err := nl.FilterAdd(f)
	if !errors.Is(err, unix.EEXIST) {
		return err
	}
	old, ferr := Find(nl, h)
	if ferr != nil {
		return errors.Join(err, ferr)
	}
	if old == nil || old.Name != f.Name {
		return fmt.Errorf("another filter holds priority %#x handle %d: %w", h.Priority, h.Handle, err)
	}
	return nl.FilterReplace(f)
}

// Find returns the BPF filter at h's parent, priority and handle, nil if
// there is none.
func Find(nl *netlink.Handle, h Hook) (*netlink.BpfFilter, error) {
	l, err := nl.LinkByIndex(h.Index)
	if err != nil {
		return nil, err
	}
	fs, err := nl.FilterList(l, h.Parent)
	if err != nil {
		return nil, err
	}
	for _, f := range fs {
		bf, ok := f.(*netlink.BpfFilter)
		if ok && bf.Priority == h.Priority && bf.Handle == h.Handle {
			return bf, nil
		}
	}
	return nil, nil
}

// Remove removes h: its filter if it is still the one named h.Name, then
// the qdisc if it was created for it and holds no filter of anyone
// else's. An interface that is gone (and with it everything on it) or a
// filter already gone is fine.
func Remove(nl *netlink.Handle, h Hook) error {
	f, err := Find(nl, h)
	if errors.As(err, new(netlink.LinkNotFoundError)) || errors.Is(err, unix.ENODEV) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("listing filters on %s: %w", h.Interface, err)
	}
	if f != nil && f.Name == h.Name {
		if err := nl.FilterDel(Filter(h, 0)); err != nil && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("removing filter %s from %s: %w", h.Name, h.Interface, err)
		}
	}
	if !h.QdiscCreated {
		return nil
	}
	others, err := FiltersLeft(nl, h.Index)
	if err != nil || others {
		return err
	}
	if err := nl.QdiscDel(clsact(h.Index)); err != nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("removing clsact qdisc from %s: %w", h.Interface, err)
	}
	return nil
}

// FiltersLeft reports whether any filter remains on the clsact of index.
func FiltersLeft(nl *netlink.Handle, index int) (bool, error) {
	l, err := nl.LinkByIndex(index)
	if err != nil {
		return false, nil
	}
	for _, parent := range []uint32{netlink.HANDLE_MIN_INGRESS, netlink.HANDLE_MIN_EGRESS} {
		fs, err := nl.FilterList(l, parent)
		if err != nil {
			return false, fmt.Errorf("listing filters on %s: %w", l.Attrs().Name, err)
		}
		if len(fs) > 0 {
			return true, nil
		}
	}
	return false, nil
}

package ebpf

import (
	"errors"
	"fmt"

	cebpf "github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"tunnel-agent/internal/tchook"
)

// AttachMode says how the programs are hooked to tc ingress.
type AttachMode int

const (
	// AttachAuto uses tcx links where the kernel has them (6.6 and
	// later) and the clsact fallback otherwise.
	AttachAuto AttachMode = iota
	// AttachTCX uses tcx links: they live as long as the process holds
	// them, so programs are gone when it exits, however it exits.
	AttachTCX
	// AttachClsact adds a clsact qdisc (unless one exists) and a
	// direct-action BPF filter through netlink. Filters outlive the
	// process: Detach, or RemoveHooks after a crash, removes them.
	AttachClsact
)

func (m AttachMode) String() string {
	switch m {
	case AttachAuto:
		return "auto"
	case AttachTCX:
		return "tcx"
	case AttachClsact:
		return "clsact"
	}
	return fmt.Sprintf("AttachMode(%d)", int(m))
}

// Program names, as in Hook.Program and in the filters' names.
const (
	LANProgramName = "lan_ingress"
	WANProgramName = "wan_ingress"
)

// The clsact fallback's filters: a fixed priority and handle, named after
// the program, so that they can be told from anyone else's and removed
// after a crash from what a journal recorded.
const (
	FilterPriority = 0xc0de
	FilterHandle   = 1
	FilterParent   = netlink.HANDLE_MIN_INGRESS
	filterPrefix   = "tunnel-agent-"
)

// FilterName is the name of the clsact filter running program.
func FilterName(program string) string { return filterPrefix + program }

// Hook is one program hooked to one interface's ingress: what Attach did,
// in the form an agent journals so that it can be undone after a crash.
type Hook struct {
	Interface string     `json:"interface"`
	Index     int        `json:"index"`
	Program   string     `json:"program"` // LANProgramName or WANProgramName
	Mode      AttachMode `json:"mode"`    // AttachTCX or AttachClsact
	// Clsact only: whether Attach created the qdisc (it existed otherwise
	// and is left as found), and the filter's parent, priority and handle.
	QdiscCreated bool   `json:"qdisc_created,omitempty"`
	Parent       uint32 `json:"parent,omitempty"`
	Priority     uint16 `json:"priority,omitempty"`
	Handle       uint32 `json:"handle,omitempty"`
}

// Attachment is the programs hooked to a LAN and a WAN interface.
type Attachment struct {
	// Hooks lists what was attached, WAN first.
	Hooks []Hook
	links []link.Link
	nl    *netlink.Handle
}

// Attach hooks wan_ingress to wan's and lan_ingress to lan's tc ingress,
// in that order (decapsulation is ready before anything is sent), in the
// network namespace of the calling thread, and records the interfaces in
// the config map. If the second hook fails, the first is undone.
func (d *Dataplane) Attach(lan, wan string, mode AttachMode) (_ *Attachment, err error) {
	nl, err := netlink.NewHandle()
	if err != nil {
		return nil, fmt.Errorf("ebpf: netlink: %w", err)
	}
	a := &Attachment{nl: nl}
	defer func() {
		if err != nil {
			err = errors.Join(err, a.Detach())
		}
	}()
	lanLink, err := ethernetLink(nl, lan)
	if err != nil {
		return nil, err
	}
	wanLink, err := ethernetLink(nl, wan)
	if err != nil {
		return nil, err
	}
	if err := d.setInterfaces(ifaceIndexes{lan: lanLink.Attrs().Index, wan: wanLink.Attrs().Index, lanMTU: lanLink.Attrs().MTU}); err != nil {
		return nil, err
	}
	if mode == AttachAuto {
		mode = AttachTCX
		if err := probeTCX(); err != nil {
			mode = AttachClsact
		}
	}
	for _, h := range []struct {
		l    netlink.Link
		name string
		prog *cebpf.Program
	}{{wanLink, WANProgramName, d.objs.WanIngress}, {lanLink, LANProgramName, d.objs.LanIngress}} {
		if err := a.hook(h.l, h.name, h.prog, mode); err != nil {
			return nil, fmt.Errorf("ebpf: attaching %s to %s (%v): %w", h.name, h.l.Attrs().Name, mode, err)
		}
	}
	return a, nil
}

// ethernetLink finds name and checks that its frames have an Ethernet
// header, which both programs assume.
func ethernetLink(nl *netlink.Handle, name string) (netlink.Link, error) {
	l, err := nl.LinkByName(name)
	if err != nil {
		return nil, fmt.Errorf("ebpf: interface %s: %w", name, err)
	}
	if t := l.Attrs().EncapType; t != "ether" {
		return nil, fmt.Errorf("ebpf: interface %s: link type %s, need ether", name, t)
	}
	return l, nil
}

func (a *Attachment) hook(l netlink.Link, name string, prog *cebpf.Program, mode AttachMode) error {
	h := Hook{Interface: l.Attrs().Name, Index: l.Attrs().Index, Program: name, Mode: mode}
	if mode == AttachTCX {
		lk, err := link.AttachTCX(link.TCXOptions{Interface: h.Index, Program: prog, Attach: cebpf.AttachTCXIngress})
		if err != nil {
			return err
		}
		a.links = append(a.links, lk)
		a.Hooks = append(a.Hooks, h)
		return nil
	}
	created, err := tchook.EnsureClsact(a.nl, h.Index)
	if err != nil {
		return err
	}
	h.QdiscCreated, h.Parent, h.Priority, h.Handle = created, netlink.HANDLE_MIN_INGRESS, FilterPriority, FilterHandle
	a.Hooks = append(a.Hooks, h) // before the filter: a failure still removes the qdisc
	a.links = append(a.links, nil)
	return tchook.Add(a.nl, tcHook(h), prog.FD())
}

// tcHook is h as package tchook takes it.
func tcHook(h Hook) tchook.Hook {
	return tchook.Hook{Index: h.Index, Interface: h.Interface, Name: filterPrefix + h.Program, Parent: h.Parent,
		Priority: h.Priority, Handle: h.Handle, QdiscCreated: h.QdiscCreated}
}

// TCHook is the record of a clsact hook that package tchook (and the host
// journal, through it) removes.
func (h Hook) TCHook() tchook.Hook { return tcHook(h) }

// Missing returns the hooks that are no longer in place: a clsact filter
// removed or replaced by someone else's, a tcx link whose program is no
// longer on its interface's ingress (the interface was removed or
// re-created, or the link detached), in the calling thread's network
// namespace. Detach and Attach again to put them back.
func (a *Attachment) Missing() ([]Hook, error) {
	var out []Hook
	for i, h := range a.Hooks {
		lk := a.links[i]
		if lk == nil {
			f, err := tchook.Find(a.nl, tcHook(h))
			if errors.As(err, new(netlink.LinkNotFoundError)) || errors.Is(err, unix.ENODEV) {
				out = append(out, h)
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("ebpf: listing filters on %s: %w", h.Interface, err)
			}
			if f == nil || f.Name != filterPrefix+h.Program {
				out = append(out, h)
			}
			continue
		}
		info, err := lk.Info()
		if err != nil {
			out = append(out, h) // the link is gone
			continue
		}
		res, err := link.QueryPrograms(link.QueryOptions{Target: h.Index, Attach: cebpf.AttachTCXIngress})
		if err != nil {
			out = append(out, h) // no such interface any more
			continue
		}
		found := false
		for _, p := range res.Programs {
			found = found || p.ID == info.Program
		}
		if !found {
			out = append(out, h)
		}
	}
	return out, nil
}

// Detach undoes Attach in reverse order: links closed, our filters
// removed, and a qdisc Attach created removed when nobody else's filter
// is on it. Already gone is fine. It may be called more than once.
func (a *Attachment) Detach() error {
	var errs []error
	for i := len(a.Hooks) - 1; i >= 0; i-- {
		if lk := a.links[i]; lk != nil {
			if err := lk.Close(); err != nil {
				errs = append(errs, fmt.Errorf("ebpf: detaching %s from %s: %w", a.Hooks[i].Program, a.Hooks[i].Interface, err))
			}
			continue
		}
		if err := removeHook(a.nl, a.Hooks[i]); err != nil {
			errs = append(errs, err)
		}
	}
	a.Hooks, a.links = nil, nil
	if a.nl != nil {
		a.nl.Close()
		a.nl = nil
	}
	return errors.Join(errs...)
}

// RemoveHooks removes the clsact filters (and qdiscs created) that hooks
// record, as an agent's `down` does after a crash, through nl (nil: the
// calling thread's namespace). tcx hooks need nothing: their links died
// with the process. An interface that is gone, or a filter that is not
// ours any more, is left alone.
func RemoveHooks(nl *netlink.Handle, hooks []Hook) error {
	if nl == nil {
		h, err := netlink.NewHandle()
		if err != nil {
			return fmt.Errorf("ebpf: netlink: %w", err)
		}
		defer h.Close()
		nl = h
	}
	var errs []error
	for i := len(hooks) - 1; i >= 0; i-- {
		if hooks[i].Mode == AttachClsact {
			errs = append(errs, removeHook(nl, hooks[i]))
		}
	}
	return errors.Join(errs...)
}

// removeHook removes one clsact hook: our filter if it is still ours, then
// the qdisc if we created it and it holds no filter of anyone else.
func removeHook(nl *netlink.Handle, h Hook) error {
	if err := tchook.Remove(nl, tcHook(h)); err != nil {
		return fmt.Errorf("ebpf: %w", err)
	}
	return nil
}

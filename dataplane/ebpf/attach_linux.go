package ebpf

import (
	"errors"
	"fmt"
	"slices"

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

// MarshalText writes the mode by name (tcx, clsact), as status shows it.
func (m AttachMode) MarshalText() ([]byte, error) { return []byte(m.String()), nil }

// UnmarshalText reads what MarshalText wrote.
func (m *AttachMode) UnmarshalText(b []byte) error {
	for _, v := range []AttachMode{AttachAuto, AttachTCX, AttachClsact} {
		if v.String() == string(b) {
			*m = v
			return nil
		}
	}
	return fmt.Errorf("ebpf: attach mode %q: want auto, tcx or clsact", b)
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

// Attachment is the programs hooked to interfaces: lan_ingress to the
// LAN interface, wan_ingress to each interface the tunnel's datagrams
// arrive by (the interface of the route to each peer's endpoint). Hooks
// are added and removed one at a time (Hook, Unhook), so that a WAN
// interface that comes or goes leaves the others' hooks alone. Its
// methods are not safe for concurrent use.
type Attachment struct {
	// Hooks lists what is attached, in the order it was hooked.
	Hooks []Hook
	links []link.Link
	nl    *netlink.Handle
	d     *Dataplane
	mode  AttachMode // AttachTCX or AttachClsact
}

// NewAttachment returns an empty attachment that hooks the programs with
// mode (AttachAuto: tcx where the kernel has it, clsact otherwise), in the
// network namespace of the calling thread.
func (d *Dataplane) NewAttachment(mode AttachMode) (*Attachment, error) {
	nl, err := netlink.NewHandle()
	if err != nil {
		return nil, fmt.Errorf("ebpf: netlink: %w", err)
	}
	if mode == AttachAuto {
		mode = AttachTCX
		if err := probeTCX(); err != nil {
			mode = AttachClsact
		}
	}
	return &Attachment{nl: nl, d: d, mode: mode}, nil
}

// Attach hooks wan_ingress to wan's and lan_ingress to lan's tc ingress,
// in that order (decapsulation is ready before anything is sent), and
// records the interfaces in the config map (SetInterfaces). If the second
// hook fails, the first is undone. More WAN interfaces are added with
// Hook.
func (d *Dataplane) Attach(lan, wan string, mode AttachMode) (_ *Attachment, err error) {
	a, err := d.NewAttachment(mode)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, a.Detach())
		}
	}()
	if err := d.SetInterfaces(lan, wan); err != nil {
		return nil, err
	}
	for _, h := range []struct{ iface, prog string }{{wan, WANProgramName}, {lan, LANProgramName}} {
		if err := a.Hook(h.iface, h.prog); err != nil {
			return nil, err
		}
	}
	return a, nil
}

// Mode is how the attachment hooks the programs: AttachTCX or
// AttachClsact.
func (a *Attachment) Mode() AttachMode { return a.mode }

// Has says whether program is hooked to iface.
func (a *Attachment) Has(iface, program string) bool { return a.find(iface, program) >= 0 }

func (a *Attachment) find(iface, program string) int {
	for i, h := range a.Hooks {
		if h.Interface == iface && h.Program == program {
			return i
		}
	}
	return -1
}

// Hook hooks program (LANProgramName or WANProgramName) to iface's tc
// ingress; hooked already, it does nothing. It does not change the config
// map: after a LAN interface or the default WAN interface is hooked
// anew (re-created), call SetInterfaces.
func (a *Attachment) Hook(iface, program string) error {
	if a.nl == nil {
		return errors.New("ebpf: attachment detached")
	}
	if a.Has(iface, program) {
		return nil
	}
	var prog *cebpf.Program
	switch program {
	case LANProgramName:
		prog = a.d.objs.LanIngress
	case WANProgramName:
		prog = a.d.objs.WanIngress
	default:
		return fmt.Errorf("ebpf: no program %q", program)
	}
	l, err := ethernetLink(a.nl, iface)
	if err != nil {
		return err
	}
	if err := a.hook(l, program, prog, a.mode); err != nil {
		return fmt.Errorf("ebpf: attaching %s to %s (%v): %w", program, iface, a.mode, err)
	}
	return nil
}

// Unhook removes program from iface (our filter, and a qdisc the hook
// created if nobody else's filter is on it; or the tcx link). Not hooked,
// or already gone from the kernel, is fine: the hook is forgotten.
func (a *Attachment) Unhook(iface, program string) error {
	i := a.find(iface, program)
	if i < 0 {
		return nil
	}
	err := a.unhookAt(i)
	a.Hooks = slices.Delete(a.Hooks, i, i+1)
	a.links = slices.Delete(a.links, i, i+1)
	return err
}

// unhookAt undoes hook i (without forgetting it).
func (a *Attachment) unhookAt(i int) error {
	h := a.Hooks[i]
	if lk := a.links[i]; lk != nil {
		if err := lk.Close(); err != nil {
			return fmt.Errorf("ebpf: detaching %s from %s: %w", h.Program, h.Interface, err)
		}
		return nil
	}
	return removeHook(a.nl, h)
}

// SetInterfaces records the LAN interface (where decapsulated packets
// leave; its MTU is the default LANMTU) and the default WAN interface
// (where outer packets of a peer without a route interface leave) in the
// config map, looked up by name in the calling thread's namespace.
func (d *Dataplane) SetInterfaces(lan, wan string) error {
	nl, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("ebpf: netlink: %w", err)
	}
	defer nl.Close()
	lanLink, err := ethernetLink(nl, lan)
	if err != nil {
		return err
	}
	wanLink, err := ethernetLink(nl, wan)
	if err != nil {
		return err
	}
	return d.setInterfaces(ifaceIndexes{lan: lanLink.Attrs().Index, wan: wanLink.Attrs().Index, lanMTU: lanLink.Attrs().MTU})
}

// EgressInterfaces are the names of the interfaces the peers' outer
// packets leave by (the routes to their endpoints, as SetPeers and
// SetEndpoint last looked them up), each once, sorted: where their
// datagrams are expected back, so where wan_ingress belongs. An index
// without a link (gone since) is left out.
func (d *Dataplane) EgressInterfaces() ([]string, error) {
	d.mu.Lock()
	idx := map[int]bool{}
	for _, st := range d.peers {
		if st.entry.Family != 0 && st.entry.Ifindex != 0 {
			idx[int(st.entry.Ifindex)] = true
		}
	}
	d.mu.Unlock()
	if len(idx) == 0 {
		return nil, nil
	}
	nl, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("ebpf: netlink: %w", err)
	}
	defer nl.Close()
	var out []string
	for i := range idx {
		l, err := nl.LinkByIndex(i)
		if err != nil {
			if errors.As(err, new(netlink.LinkNotFoundError)) || errors.Is(err, unix.ENODEV) {
				continue
			}
			return nil, fmt.Errorf("ebpf: interface %d: %w", i, err)
		}
		out = append(out, l.Attrs().Name)
	}
	slices.Sort(out)
	return out, nil
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
	if err := tchook.Add(a.nl, tcHook(h), prog.FD()); err != nil {
		return errors.Join(err, removeHook(a.nl, h)) // the qdisc, if this hook made it
	}
	a.Hooks = append(a.Hooks, h)
	a.links = append(a.links, nil)
	return nil
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
// namespace. Unhook and Hook them again to put them back.
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

// Detach undoes every hook in reverse order: links closed, our filters
// removed, and a qdisc a hook created removed when nobody else's filter
// is on it. Already gone is fine. It may be called more than once; the
// attachment cannot hook again afterwards.
func (a *Attachment) Detach() error {
	var errs []error
	for i := len(a.Hooks) - 1; i >= 0; i-- {
		if err := a.unhookAt(i); err != nil {
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

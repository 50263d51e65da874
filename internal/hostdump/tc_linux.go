package hostdump

import (
	"fmt"

	cebpf "github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"tunnel-agent/internal/nsutil"
)

// tcLines dumps the traffic control state of every link: its qdiscs, the
// filters on a clsact qdisc's ingress and egress, and the BPF programs
// attached through tcx links (by name: program ids change with every
// load). A kernel without tcx has none to list.
func tcLines(h *netlink.Handle, ns netns.NsHandle, links []netlink.Link) ([]string, error) {
	var out []string
	for _, l := range links {
		name := l.Attrs().Name
		qs, err := h.QdiscList(l)
		if err != nil {
			return nil, fmt.Errorf("qdiscs of %s: %w", name, err)
		}
		clsact := false
		for _, q := range qs {
			a := q.Attrs()
			out = append(out, fmt.Sprintf("qdisc %s %s handle %s parent %s", name, q.Type(),
				netlink.HandleStr(a.Handle), netlink.HandleStr(a.Parent)))
			clsact = clsact || q.Type() == "clsact"
		}
		if !clsact {
			continue
		}
		for _, parent := range []uint32{netlink.HANDLE_MIN_INGRESS, netlink.HANDLE_MIN_EGRESS} {
			fs, err := h.FilterList(l, parent)
			if err != nil {
				return nil, fmt.Errorf("filters of %s: %w", name, err)
			}
			for _, f := range fs {
				a := f.Attrs()
				line := fmt.Sprintf("filter %s parent %s %s prio %d handle %d", name, netlink.HandleStr(a.Parent), f.Type(), a.Priority, a.Handle)
				if bf, ok := f.(*netlink.BpfFilter); ok {
					line += " name " + bf.Name
				}
				out = append(out, line)
			}
		}
	}
	err := nsutil.Do(ns, func() error {
		for _, l := range links {
			for _, at := range []cebpf.AttachType{cebpf.AttachTCXIngress, cebpf.AttachTCXEgress} {
				res, err := link.QueryPrograms(link.QueryOptions{Target: l.Attrs().Index, Attach: at})
				if err != nil {
					continue // no tcx on this kernel, or no such hook
				}
				for _, p := range res.Programs {
					prog, err := cebpf.NewProgramFromID(p.ID)
					if err != nil {
						out = append(out, fmt.Sprintf("tcx %s %v program id-gone", l.Attrs().Name, at))
						continue
					}
					info, err := prog.Info()
					prog.Close()
					pname := "?"
					if err == nil {
						pname = info.Name
					}
					out = append(out, fmt.Sprintf("tcx %s %v program %s", l.Attrs().Name, at, pname))
				}
			}
		}
		return nil
	})
	return out, err
}

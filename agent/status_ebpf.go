package agent

import (
	"fmt"
	"io"
	"sort"
	"strings"
)

// printEBPF prints the eBPF dataplane's part of `tunnel-agent status`:
// where the programs are hooked, and what they passed to the userspace
// engine (their drops are in the drops line already).
func printEBPF(w io.Writer, eb *EBPFStatus) {
	if eb == nil {
		return
	}
	var hooks []string
	for _, h := range eb.Hooks {
		hooks = append(hooks, fmt.Sprintf("%s on %s (%v)", h.Program, h.Interface, h.Mode))
	}
	if len(hooks) == 0 {
		hooks = []string{"NOT ATTACHED, retrying (see the agent's log)"}
	}
	fmt.Fprintf(w, "ebpf: %s; hooks put back %d\n", strings.Join(hooks, ", "), eb.Repairs)
	if len(eb.Carried) > 0 {
		fmt.Fprintf(w, "ebpf carried by the programs:")
		for _, p := range eb.Carried {
			fmt.Fprintf(w, " %s rx=%d tx=%d", p.Name, p.RxPackets, p.TxPackets)
		}
		fmt.Fprintln(w)
	}
	names := make([]string, 0, len(eb.ToUserspace))
	for n := range eb.ToUserspace {
		names = append(names, n)
	}
	sort.Strings(names)
	fmt.Fprintf(w, "ebpf to userspace:")
	for _, n := range names {
		fmt.Fprintf(w, " %s=%d", n, eb.ToUserspace[n])
	}
	if r := eb.ExceptionReader; r != nil {
		fmt.Fprintf(w, "\nebpf exception reader too-big=%d malformed=%d segments-dropped=%d", r["too_big"], r["malformed"], r["segments_dropped"])
	}
	fmt.Fprintln(w)
}

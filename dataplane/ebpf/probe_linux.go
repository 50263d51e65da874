package ebpf

import (
	"errors"
	"fmt"
	"math"

	cebpf "github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/features"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"
)

// Support is what Probe found.
type Support struct {
	// TCX: the kernel has tcx links (6.6 and later); otherwise Attach
	// falls back to a clsact qdisc and BPF filters.
	TCX bool
}

// Probe says whether this kernel and process can run the dataplane: the
// bpf system call, the program and map types and helpers the programs
// use, the verifier accepting them, and the privileges to load them. It
// changes nothing on the host: the programs are loaded and closed, and
// tcx is tested against an interface index that does not exist.
func Probe() (Support, error) {
	var s Support
	if err := rlimit.RemoveMemlock(); err != nil {
		return s, fmt.Errorf("ebpf: %w", permissionHint(err))
	}
	if err := features.HaveProgramType(cebpf.SchedCLS); err != nil {
		return s, fmt.Errorf("ebpf: tc programs: %w", permissionHint(err))
	}
	for _, mt := range []cebpf.MapType{cebpf.LPMTrie, cebpf.PerfEventArray, cebpf.PerCPUArray, cebpf.Hash} {
		if err := features.HaveMapType(mt); err != nil {
			return s, fmt.Errorf("ebpf: map type %v: %w", mt, err)
		}
	}
	for _, fn := range []asm.BuiltinFunc{asm.FnSkbAdjustRoom, asm.FnFibLookup, asm.FnRedirectNeigh, asm.FnPerfEventOutput, asm.FnSkbPullData, asm.FnSkbChangeTail} {
		if err := features.HaveProgramHelper(cebpf.SchedCLS, fn); err != nil {
			return s, fmt.Errorf("ebpf: helper %v for tc programs: %w", fn, err)
		}
	}
	d, err := Load(Config{ListenPort: 1, MaxPeers: 1, MaxPrefixes: 1, MaxLocalPrefixes: 1})
	if err != nil {
		return s, err
	}
	if err := d.Close(); err != nil {
		return s, err
	}
	s.TCX = probeTCX() == nil
	return s, nil
}

// probeTCX tries a tcx attachment to an interface index that cannot exist:
// a kernel with tcx says "no such device", one without says the feature is
// missing (cilium/ebpf maps that to ErrNotSupported).
func probeTCX() error {
	prog, err := cebpf.NewProgram(&cebpf.ProgramSpec{Type: cebpf.SchedCLS, License: "MIT",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()}})
	if err != nil {
		return fmt.Errorf("ebpf: probing tcx: %w", err)
	}
	defer prog.Close()
	l, err := link.AttachTCX(link.TCXOptions{Interface: math.MaxInt32, Program: prog, Attach: cebpf.AttachTCXIngress})
	if err == nil {
		l.Close()
		return nil
	}
	if errors.Is(err, unix.ENODEV) {
		return nil
	}
	return fmt.Errorf("ebpf: tcx links: %w", err)
}

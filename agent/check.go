package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"tunnel-agent/agent/config"
	"tunnel-agent/dataplane/ebpf"
	"tunnel-agent/netcfg"
)

// planReport is what `check --json` prints.
type planReport struct {
	File    string          `json:"file"`
	Site    string          `json:"site"`
	Journal string          `json:"journal"`
	Changes []netcfg.Change `json:"changes"`
	// EBPF is whether this host can run tunnel.dataplane: ebpf, when the
	// file asks for it.
	EBPF *ebpfReport `json:"ebpf,omitempty"`
}

// ebpfReport is check's word on the eBPF dataplane.
type ebpfReport struct {
	Ready  bool   `json:"ready"`
	Attach string `json:"attach,omitempty"` // tcx or clsact
	Error  string `json:"error,omitempty"`
}

// probeReport probes the host for the eBPF dataplane when cfg wants it.
func probeReport(cfg *config.Config, sys system) (*ebpfReport, error) {
	if cfg.Tunnel.Dataplane != config.DataplaneEBPF {
		return nil, nil
	}
	eio, ok := sys.(ebpfIO)
	var err error
	rep := &ebpfReport{}
	if !ok {
		err = errors.New("this system cannot load eBPF programs")
	} else {
		var s ebpf.Support
		if s, err = eio.probeEBPF(); err == nil {
			rep.Ready, rep.Attach = true, "clsact"
			if s.TCX {
				rep.Attach = "tcx"
			}
			return rep, nil
		}
	}
	rep.Error = err.Error()
	return rep, fmt.Errorf("tunnel.dataplane: ebpf: this host cannot run the eBPF dataplane, and `up` would refuse to start: %w", err)
}

// runCheck validates the file and prints the plan of host changes with
// the current values read from the host. It changes nothing. A plan `up`
// would refuse (a host route of someone else's where the plan needs a
// route: netcfg.ConflictError) is printed, then reported: exit 2.
func runCheck(o *options) error {
	if err := requireConfig(o); err != nil {
		return err
	}
	if err := o.stateDir.check(); err != nil {
		return err
	}
	cfg, err := loadConfig(o, o.host())
	if err != nil {
		return err
	}
	if err := config.LoadKeys(cfg, o.config); err != nil {
		return err
	}
	h, err := o.sys.openHost()
	if err != nil {
		return err
	}
	defer h.Close()
	rep := planReport{File: o.config, Site: cfg.Site, Journal: o.stateDir.journal(cfg.Site),
		Changes: netcfg.Preview(h, Desired(cfg))}
	rep.EBPF, err = probeReport(cfg, o.sys)
	if o.json {
		if err := printJSON(o.stdout, rep); err != nil {
			return err
		}
		return errors.Join(netcfg.Conflicts(rep.Changes), err) // exit 2; the changes say which
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(o.stdout, "%s: valid. Site %q, %d host changes (journal %s):\n", rep.File, rep.Site, len(rep.Changes), rep.Journal)
	fmt.Fprint(o.stdout, netcfg.FormatPlan(rep.Changes))
	if err := netcfg.Conflicts(rep.Changes); err != nil {
		return fmt.Errorf("`up` would refuse this plan: %w", err)
	}
	if rep.EBPF != nil {
		fmt.Fprintf(o.stdout, "eBPF dataplane: this host can run it (programs hooked to tc ingress with %s after the host changes, removed before they are reverted).\n", rep.EBPF.Attach)
	}
	fmt.Fprintf(o.stdout, "`up` applies these in order and reverts them in reverse order on exit; `down` reverts after a crash.\n")
	return nil
}

// printJSON prints v indented, as it is: "<->" stays "<->" (no HTML
// escaping; nobody embeds this in a web page).
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

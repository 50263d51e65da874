package agent

import (
	"encoding/json"
	"fmt"

	"tunnel-agent/netcfg"
)

// planReport is what `check --json` prints.
type planReport struct {
	File    string          `json:"file"`
	Site    string          `json:"site"`
	Journal string          `json:"journal"`
	Changes []netcfg.Change `json:"changes"`
}

// runCheck validates the file and prints the plan of host changes with
// the current values read from the host. It changes nothing.
func runCheck(o *options) error {
	if err := requireConfig(o); err != nil {
		return err
	}
	if err := checkStateDir(o.stateDir); err != nil {
		return err
	}
	cfg, err := loadConfig(o, o.host())
	if err != nil {
		return err
	}
	if err := LoadKeys(cfg, o.config); err != nil {
		return err
	}
	h, err := netcfg.NewNetlinkHost()
	if err != nil {
		return err
	}
	defer h.Close()
	rep := planReport{File: o.config, Site: cfg.Site, Journal: journalPath(o.stateDir, cfg.Site),
		Changes: netcfg.Preview(h, Desired(cfg))}
	if o.json {
		enc := json.NewEncoder(o.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	fmt.Fprintf(o.stdout, "%s: valid. Site %q, %d host changes (journal %s):\n", rep.File, rep.Site, len(rep.Changes), rep.Journal)
	fmt.Fprint(o.stdout, netcfg.FormatPlan(rep.Changes))
	fmt.Fprintf(o.stdout, "`up` applies these in order and reverts them in reverse order on exit; `down` reverts after a crash.\n")
	return nil
}

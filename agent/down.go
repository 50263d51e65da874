package agent

import (
	"fmt"

	"tunnel-agent/netcfg"
)

// runDown reverts the journal a killed `up` left behind. It reads only the
// site name and state directory from the file: the host check is skipped,
// since the LAN interface may be gone. Nothing to revert is success.
func runDown(o *options) error {
	cfg, err := loadConfig(o, nil)
	if err != nil {
		return err
	}
	lock, err := lockSite(o.stateDir, cfg.Site)
	if err != nil {
		return err
	}
	defer lock.release()
	jp := journalPath(o.stateDir, cfg.Site)
	removeTemporaries(jp, o.log)
	j, err := netcfg.LoadJournal(jp)
	if err != nil {
		return err
	}
	if j == nil {
		fmt.Fprintf(o.stdout, "site %s: nothing to revert (no journal at %s)\n", cfg.Site, jp)
		return nil
	}
	h, err := journalHost(j, o.log)
	if err != nil {
		return err
	}
	defer h.Close()
	n := len(j.Entries)
	if err := netcfg.Revert(h, j, o.log); err != nil {
		return fmt.Errorf("revert journal %s: %w", jp, err)
	}
	fmt.Fprintf(o.stdout, "site %s: reverted %d recorded changes of pid %d\n", cfg.Site, n, j.PID)
	return nil
}

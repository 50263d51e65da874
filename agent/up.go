package agent

import (
	"errors"
	"fmt"
	"log/slog"
	"syscall"

	"tunnel-agent/agent/config"
	"tunnel-agent/netcfg"
)

func loadConfig(o *options, host config.HostInfo) (*config.Config, error) {
	if err := requireConfig(o); err != nil {
		return nil, err
	}
	return config.Load(o.config, host)
}

// runUp applies the host configuration, runs the tunnel until SIGINT or
// SIGTERM, then reverts every change. A journal left by a killed run is
// reverted first (as `down` would), so `up` always starts from the host as
// it was before any agent touched it.
func runUp(o *options) error {
	if err := requireConfig(o); err != nil {
		return err
	}
	if err := o.stateDir.check(); err != nil {
		return err
	}
	host := o.host()
	cfg, err := loadConfig(o, host)
	if err != nil {
		return err
	}
	if err := config.LoadKeys(cfg, o.config); err != nil {
		return err
	}
	if err := resolveEndpoints(cfg, o.sys.lookup); err != nil { // names: resolve.go
		return err
	}
	if err := config.CheckResolved(cfg, o.config); err != nil {
		return err
	}
	lock, err := o.stateDir.lockSite(cfg.Site)
	if err != nil {
		return err
	}
	defer lock.release()
	dir, err := o.stateDir.lock(o.log)
	if err != nil {
		return err
	}
	defer dir.release()
	if err := config.CheckClaims(cfg, o.config, host); err != nil { // another site may have started meanwhile
		return err
	}
	if _, err := probeReport(cfg, o.sys); err != nil { // tunnel.dataplane: ebpf on a host that cannot run it (check.go)
		return err
	}
	h, err := o.sys.openHost()
	if err != nil {
		return err
	}
	defer h.Close()
	jp := o.stateDir.journal(cfg.Site)
	o.stateDir.removeTemporaries(cfg.Site, o.log)
	if err := revertLeftover(o.sys, jp, o.log); err != nil {
		return fmt.Errorf("revert what a previous run left (journal %s): %w; fix the cause, then run `tunnel-agent down` (`down --force` if the journal is damaged)", jp, err)
	}
	ctx, stop := signalContext(o.sys, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	j := netcfg.NewJournal(jp, cfg.Site)
	live := newLiveSite(cfg, o, h, j) // watcher, reload, metrics: watch.go
	defer live.close()
	err = netcfg.Apply(h, Desired(cfg), j, o.log)
	dir.release() // the journal lists every claim now
	if err != nil {
		return fmt.Errorf("configure host: %w", err)
	}
	o.log.Info("host configured; tunnel running", "site", cfg.Site, "changes", len(j.Entries), "journal", jp)
	runErr := runTunnel(ctx, cfg, o, live)
	stop()
	o.log.Info("stopping: reverting host configuration", "site", cfg.Site)
	if err := netcfg.Revert(h, j, o.log); err != nil {
		return errors.Join(runErr, fmt.Errorf("revert host configuration: %w (journal kept at %s; run `tunnel-agent down` to retry)", err, jp))
	}
	o.log.Info("host configuration reverted", "site", cfg.Site)
	return runErr
}

// revertLeftover reverts the journal of a run that did not exit cleanly,
// in the network namespace it was made in (journalHost).
func revertLeftover(sys system, path string, log *slog.Logger) error {
	j, err := netcfg.LoadJournal(path)
	if err != nil || j == nil {
		return err
	}
	log.Warn("found the journal of a run that did not exit cleanly; reverting it first",
		"pid", j.PID, "started", j.Started, "changes", len(j.Entries))
	h, err := sys.journalHost(j, log)
	if err != nil {
		return err
	}
	defer h.Close()
	return netcfg.Revert(h, j, log)
}

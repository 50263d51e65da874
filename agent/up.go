package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os/signal"
	"syscall"

	"github.com/vishvananda/netlink"

	"tunnel-agent/netcfg"
)

// hostLinks answers the config validator's question "does this interface
// exist?" from the namespace the agent runs in (read-only, no root).
type hostLinks struct{}

func (hostLinks) LinkExists(name string) bool {
	_, err := netlink.LinkByName(name)
	return err == nil
}

func loadConfig(o *options, host HostInfo) (*Config, error) {
	if err := requireConfig(o); err != nil {
		return nil, err
	}
	return LoadConfig(o.config, host)
}

// runUp applies the host configuration, runs the tunnel until SIGINT or
// SIGTERM, then reverts every change. A journal left by a killed run is
// reverted first (as `down` would), so `up` always starts from the host as
// it was before any agent touched it.
func runUp(o *options) error {
	cfg, err := loadConfig(o, hostLinks{})
	if err != nil {
		return err
	}
	if err := LoadKeys(cfg, o.config); err != nil {
		return err
	}
	if err := resolveEndpoints(cfg, systemLookup); err != nil { // names: resolve.go
		return err
	}
	lock, err := lockSite(o.stateDir, cfg.Site)
	if err != nil {
		return err
	}
	defer lock.release()
	h, err := netcfg.NewNetlinkHost()
	if err != nil {
		return err
	}
	defer h.Close()
	jp := journalPath(o.stateDir, cfg.Site)
	removeTemporaries(jp, o.log)
	if err := revertLeftover(jp, o.log); err != nil {
		return fmt.Errorf("revert what a previous run left (journal %s): %w; fix the cause, then run `tunnel-agent down`", jp, err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	j := netcfg.NewJournal(jp, cfg.Site)
	live := newLiveSite(cfg, o, h, j) // watcher, reload, metrics: watch.go
	defer live.close()
	if err := netcfg.Apply(h, Desired(cfg), j, o.log); err != nil {
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
func revertLeftover(path string, log *slog.Logger) error {
	j, err := netcfg.LoadJournal(path)
	if err != nil || j == nil {
		return err
	}
	log.Warn("found the journal of a run that did not exit cleanly; reverting it first",
		"pid", j.PID, "started", j.Started, "changes", len(j.Entries))
	h, err := journalHost(j, log)
	if err != nil {
		return err
	}
	defer h.Close()
	return netcfg.Revert(h, j, log)
}

package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os/signal"
	"syscall"

	"github.com/vishvananda/netlink"

	"tunnel-agent/agent/config"
	"tunnel-agent/netcfg"
)

// hostLinks answers the config validator's questions about the host
// from the namespace the agent runs in (read-only, no root): does this
// interface exist, which addresses and default routes are there
// (hostinfo.go), and what other sites' journals in the state directory
// claim.
type hostLinks struct {
	stateDir stateDir     // "" = no journals to read
	log      *slog.Logger // notes what could not be checked; nil = none
}

func (hostLinks) LinkExists(name string) bool {
	_, err := netlink.LinkByName(name)
	return err == nil
}

// host is the config.HostInfo of the commands that check a file against the
// host and the other sites in the state directory.
func (o *options) host() hostLinks { return hostLinks{stateDir: o.stateDir, log: o.log} }

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
	if err := resolveEndpoints(cfg, systemLookup); err != nil { // names: resolve.go
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
	h, err := netcfg.NewNetlinkHost()
	if err != nil {
		return err
	}
	defer h.Close()
	jp := o.stateDir.journal(cfg.Site)
	o.stateDir.removeTemporaries(cfg.Site, o.log)
	if err := revertLeftover(jp, o.log); err != nil {
		return fmt.Errorf("revert what a previous run left (journal %s): %w; fix the cause, then run `tunnel-agent down` (`down --force` if the journal is damaged)", jp, err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
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

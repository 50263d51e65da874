package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// handleReloads reloads the file on every SIGHUP until ctx is done.
func (l *liveSite) handleReloads(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-l.hup:
			notifyReloading(l.o.log)
			if err := l.reload(); err != nil {
				l.met.reloads.WithLabelValues("failed").Inc()
				l.o.log.Error("reload rejected; the running configuration stays", "file", l.o.config, "err", err)
			} else {
				l.met.reloads.WithLabelValues("ok").Inc()
			}
			notifyReady(l.o.log)
		}
	}
}

// reload re-reads the file and applies only the difference: the dataplane
// first (peers, prefixes, keepalives; an invalid set changes nothing), then
// the capture filter, then the host (blackholes, MTUs, offloads, addresses,
// namespaces) through the watcher, which journals it and watches the new
// state from then on.
func (l *liveSite) reload() error {
	cfg, err := loadConfig(l.o, hostLinks{})
	if err != nil {
		return err
	}
	if err := LoadKeys(cfg, l.o.config); err != nil {
		return err
	}
	if err := resolveEndpoints(cfg, l.lookup); err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := restartOnly(l.cfg, cfg); err != nil {
		return err
	}
	if l.eng == nil {
		return errors.New("reload is not supported in wireguard mode yet: restart the agent (systemctl restart)")
	}
	if err := l.w.CheckReconfigure(Desired(cfg), l.j); err != nil {
		return err // a route of someone else's is in the way: refused before anything changes
	}
	lanAddrs, err := interfaceAddrs(cfg.LAN.Interface)
	if err != nil {
		return err
	}
	if err := l.eng.Reconfigure(engineConfig(cfg, lanAddrs, l.o)); err != nil {
		return err
	}
	if err := l.capture.SetPrefixes(peerPrefixes(cfg)); err != nil {
		return err
	}
	if err := l.w.Reconfigure(Desired(cfg), l.j, l.o.log); err != nil {
		return fmt.Errorf("change host configuration (the dataplane runs the new file; what was changed is journaled): %w", err)
	}
	added, removed := peerDiff(l.cfg, cfg)
	l.cfg = cfg
	l.o.log.Info("configuration reloaded", "file", l.o.config, "peers", len(cfg.Tunnel.Peers),
		"added", strings.Join(added, ","), "removed", strings.Join(removed, ","))
	return nil
}

// restartOnly rejects changes a reload cannot make.
func restartOnly(old, nw *Config) error {
	switch {
	case nw.Site != old.Site:
		return fmt.Errorf("site changed from %q to %q: that is another site; stop this one first", old.Site, nw.Site)
	case nw.LAN.Interface != old.LAN.Interface:
		return fmt.Errorf("lan.interface changed from %s to %s: restart the agent for that", old.LAN.Interface, nw.LAN.Interface)
	case nw.Tunnel.Listen != old.Tunnel.Listen:
		return fmt.Errorf("tunnel.listen changed from %s to %s: restart the agent for that", old.Tunnel.Listen, nw.Tunnel.Listen)
	case nw.LAN.Capture != old.LAN.Capture:
		return fmt.Errorf("lan.capture changed: restart the agent for that")
	case nw.Metrics != old.Metrics:
		return fmt.Errorf("metrics.listen changed: restart the agent for that")
	}
	return nil
}

func peerDiff(old, nw *Config) (added, removed []string) {
	names := func(c *Config) map[string]bool { // a map: a hub has thousands of peers
		m := make(map[string]bool, len(c.Tunnel.Peers))
		for _, p := range c.Tunnel.Peers {
			m[p.Name] = true
		}
		return m
	}
	o, n := names(old), names(nw)
	for _, p := range nw.Tunnel.Peers {
		if !o[p.Name] {
			added = append(added, p.Name)
		}
	}
	for _, p := range old.Tunnel.Peers {
		if !n[p.Name] {
			removed = append(removed, p.Name)
		}
	}
	return added, removed
}

// runReload validates the file and sends SIGHUP to the agent running the
// site, whose PID is in <state-dir>/<site>.lock. An invalid file is
// refused here already (exit 2), and the agent re-checks it.
func runReload(o *options) error {
	cfg, err := loadConfig(o, hostLinks{})
	if err != nil {
		return err
	}
	pid, err := runningPID(o.stateDir, cfg.Site)
	if err != nil {
		return err
	}
	if err := unix.Kill(pid, unix.SIGHUP); err != nil {
		return fmt.Errorf("signal the agent of site %q (pid %d): %w", cfg.Site, pid, err)
	}
	fmt.Fprintf(o.stdout, "site %s: asked agent pid %d to reload %s; its log says what changed\n", cfg.Site, pid, o.config)
	return nil
}

// runningPID returns the PID of the agent holding the site's lock, or an
// error if none holds it.
func runningPID(stateDir, site string) (int, error) {
	path := filepath.Join(stateDir, site+".lock")
	f, err := os.Open(path)
	if err != nil {
		return 0, fmt.Errorf("no agent is running for site %q (%w)", site, err)
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_SH|unix.LOCK_NB); err == nil {
		return 0, fmt.Errorf("no agent is running for site %q (lock %s is free)", site, path)
	} else if !errors.Is(err, unix.EWOULDBLOCK) {
		return 0, fmt.Errorf("check lock %s: %w", path, err)
	}
	pid, err := strconv.Atoi(readPID(f))
	if err != nil || pid <= 1 {
		return 0, fmt.Errorf("lock %s does not hold a PID", path)
	}
	return pid, nil
}

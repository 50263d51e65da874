package agent

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"strings"
	"time"
	"tunnel-agent/agent/config"
)

// ReloadVerdict is the running agent's answer to a reload asked on its
// status socket (`tunnel-agent reload`).
type ReloadVerdict struct {
	Result string `json:"result"` // ReloadApplied, ReloadRefused or ReloadInvalid
	PID    int    `json:"pid"`
	File   string `json:"file"` // the file the agent read (its -c)
	// Summary says what changed (applied).
	Summary string `json:"summary,omitempty"`
	// Reason says why the running configuration stays (refused).
	Reason string `json:"reason,omitempty"`
	// Errors are the file's problems as the agent found them in its own
	// namespace (invalid): FILE:LINE:COLUMN: FIELD: MESSAGE.
	Errors []string `json:"errors,omitempty"`
}

// Results of a reload.
const (
	ReloadApplied = "applied" // the new file runs
	ReloadRefused = "refused" // valid, but the agent could not or would not apply it
	ReloadInvalid = "invalid" // the file has errors
)

// handleReloads reloads the file on every SIGHUP and every reload asked
// on the status socket, one at a time, until ctx is done.
func (l *liveSite) handleReloads(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-l.hup:
			l.reloadNow()
		case reply := <-l.reloads:
			reply <- l.reloadNow()
		}
	}
}

// requestReload asks handleReloads for a reload and waits for its verdict
// (the status socket's "reload" command).
func (l *liveSite) requestReload(ctx context.Context) ReloadVerdict {
	stopping := ReloadVerdict{Result: ReloadRefused, PID: os.Getpid(), File: l.o.config,
		Reason: "the agent is starting or stopping; try again"}
	reply := make(chan ReloadVerdict, 1) // handleReloads never blocks on it
	select {
	case l.reloads <- reply:
	case <-ctx.Done():
		return stopping
	}
	select {
	case v := <-reply:
		return v
	case <-ctx.Done():
		stopping.Reason = "gave up waiting for the reload to finish; the agent's log says how it ended"
		return stopping
	}
}

// reloadNow reloads the file, logs and counts the result, and returns the
// verdict. The memory the parse took is handed back to the system.
func (l *liveSite) reloadNow() ReloadVerdict {
	notifyReloading(l.o)
	defer notifyReady(l.o)
	defer debug.FreeOSMemory()
	summary, err := l.reload()
	v := ReloadVerdict{Result: ReloadApplied, PID: os.Getpid(), File: l.o.config, Summary: summary}
	var ce *config.Error
	switch {
	case err == nil:
		l.met.reloads.WithLabelValues("ok").Inc()
		return v
	case errors.As(err, &ce):
		v.Result = ReloadInvalid
		for _, fe := range ce.Errors {
			v.Errors = append(v.Errors, fe.Error())
		}
	default:
		v.Result, v.Reason = ReloadRefused, err.Error()
	}
	l.met.reloads.WithLabelValues("failed").Inc()
	l.o.log.Error("reload rejected; the running configuration stays", "file", l.o.config, "err", err)
	return v
}

// reload re-reads the file and applies only the difference: the dataplane
// first (peers, prefixes, keepalives; an invalid set changes nothing), then
// the capture filter, then the host (blackholes, MTUs, offloads, addresses,
// namespaces) through the watcher, which journals it and watches the new
// state from then on. It returns what changed.
func (l *liveSite) reload() (string, error) {
	if err := l.o.sys.checkFile(context.Background(), l.o.config); err != nil {
		return "", err
	}
	host := l.o.host()
	cfg, err := loadConfig(l.o, host)
	if err != nil {
		return "", err
	}
	if err := config.LoadKeys(cfg, l.o.config); err != nil {
		return "", err
	}
	if err := resolveEndpoints(cfg, l.lookup); err != nil {
		return "", err
	}
	if err := config.CheckResolved(cfg, l.o.config); err != nil {
		return "", err
	}
	dir, err := l.o.stateDir.lock(l.o.log)
	if err != nil {
		return "", err
	}
	defer dir.release()
	if err := config.CheckClaims(cfg, l.o.config, host); err != nil {
		return "", err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := restartOnly(l.cfg, cfg); err != nil {
		return "", err
	}
	if err := l.w.CheckReconfigure(Desired(cfg), l.j); err != nil {
		return "", err // a route of someone else's is in the way: refused before anything changes
	}
	lanAddrs, err := l.o.sys.linkAddrs(cfg.LAN.Interface)
	if err != nil {
		return "", err
	}
	if err := l.tun.Reconfigure(cfg, engineConfig(cfg, lanAddrs, l.o), peerPrefixes(cfg)); err != nil {
		return "", err
	}
	if err := l.w.Reconfigure(Desired(cfg), l.j, l.o.log); err != nil {
		return "", fmt.Errorf("change host configuration (the dataplane runs the new file; what was changed is journaled): %w", err)
	}
	added, removed := peerDiff(l.cfg, cfg)
	l.cfg = cfg
	l.o.log.Info("configuration reloaded", "file", l.o.config, "peers", len(cfg.Tunnel.Peers),
		"added", strings.Join(added, ","), "removed", strings.Join(removed, ","))
	return fmt.Sprintf("%d peers, added: %s, removed: %s", len(cfg.Tunnel.Peers),
		cmp.Or(strings.Join(added, ","), "none"), cmp.Or(strings.Join(removed, ","), "none")), nil
}

// restartOnly rejects changes a reload cannot make.
func restartOnly(old, nw *config.Config) error {
	switch {
	case nw.Site != old.Site:
		return fmt.Errorf("site changed from %q to %q: that is another site; stop this one first", old.Site, nw.Site)
	case nw.Tunnel.Mode != old.Tunnel.Mode:
		return fmt.Errorf("tunnel.mode changed: restart the agent for that")
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

func peerDiff(old, nw *config.Config) (added, removed []string) {
	names := func(c *config.Config) map[string]bool { // a map: a hub has thousands of peers
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

// runReload asks the agent running the site for a reload through its
// status socket and waits for the verdict: exit 0 when the new file runs,
// 1 when the agent refused it (the reason is printed), 2 when the file is
// invalid (the agent's own check, in its namespace, is printed). Here the
// file is read only for the site's name.
func runReload(o *options) error {
	cfg, err := loadConfig(o, nil)
	if err != nil {
		return err
	}
	var v ReloadVerdict
	if err := statusCall(o.stateDir, cfg.Site, statusRequest{Command: "reload"}, statusReloadWait+10*time.Second, &v); err != nil {
		return err
	}
	return reloadResult(o, cfg.Site, v)
}

// reloadResult prints a verdict and turns it into the exit status.
func reloadResult(o *options, site string, v ReloadVerdict) error {
	switch v.Result {
	case ReloadApplied:
		fmt.Fprintf(o.stdout, "site %s: agent pid %d reloaded %s: %s\n", site, v.PID, v.File, v.Summary)
		return nil
	case ReloadInvalid:
		return exitError{ExitUsage, fmt.Errorf("site %s: agent pid %d refused %s, the running configuration stays:\n%s",
			site, v.PID, v.File, strings.Join(v.Errors, "\n"))}
	case ReloadRefused:
		return fmt.Errorf("site %s: agent pid %d refused the reload of %s, the running configuration stays: %s", site, v.PID, v.File, v.Reason)
	}
	return fmt.Errorf("site %s: the agent answered the reload with %q: is it an older version? Restart it", site, v.Result)
}

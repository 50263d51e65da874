package agent

import (
	"errors"
	"fmt"
	"os"
	"slices"

	"tunnel-agent/agent/config"
	"tunnel-agent/netcfg"
)

// runDown reverts the journal a killed `up` left behind. It reads only the
// site name and state directory from the file: the host check is skipped,
// since the LAN interface may be gone. Nothing to revert is success. With
// --force, a journal that cannot be used (damaged, missing, or made in a
// namespace that is gone) is replaced by the agent's marks (forceDown).
func runDown(o *options) error {
	cfg, err := loadConfig(o, nil)
	if err != nil {
		return err
	}
	lock, err := o.stateDir.lockSite(cfg.Site)
	if err != nil {
		return err
	}
	defer lock.release()
	jp := o.stateDir.journal(cfg.Site)
	o.stateDir.removeTemporaries(cfg.Site, o.log)
	j, err := netcfg.LoadJournal(jp)
	if err != nil {
		if o.force {
			return forceDown(o, cfg, jp, err)
		}
		return fmt.Errorf("%w\nIf the journal is damaged, `tunnel-agent down --force -c %s` removes what the site file names and carries the agent's marks (docs/operations.md, \"A damaged journal\")",
			err, o.config)
	}
	if j == nil {
		if o.force {
			return forceDown(o, cfg, jp, errors.New("no journal"))
		}
		fmt.Fprintf(o.stdout, "site %s: nothing to revert (no journal at %s)\n", cfg.Site, jp)
		return nil
	}
	h, err := o.sys.journalHost(j, o.log)
	if err != nil {
		if o.force && errors.Is(err, netcfg.ErrNotFound) {
			return forceDown(o, cfg, jp, err)
		}
		return err
	}
	defer h.Close()
	n := 0 // the entries that changed something (the others have nothing to revert)
	for _, e := range j.Entries {
		if e.State != netcfg.Unchanged {
			n++
		}
	}
	if err := netcfg.Revert(h, j, o.log); err != nil {
		return fmt.Errorf("revert journal %s: %w", jp, err)
	}
	fmt.Fprintf(o.stdout, "site %s: reverted %d recorded changes of pid %d\n", cfg.Site, n, j.PID)
	return nil
}

// forceDown removes, in the agent's namespace and without the journal,
// what the site file names and carries the agent's marks (route protocol
// 227, the file's veth pairs and then-empty namespaces:
// netcfg.ForceRemove), leaves what other sites' journals claim, prints
// both, and then removes the unusable journal.
func forceDown(o *options, cfg *config.Config, jp string, cause error) error {
	fmt.Fprintf(o.stdout, "site %s: journal %s not used (%v); removing what %s names and carries the agent's marks\n",
		cfg.Site, jp, cause, o.config)
	h, err := o.sys.openHost()
	if err != nil {
		return err
	}
	defer h.Close()
	fr, ok := h.(forceRemover)
	if !ok {
		return fmt.Errorf("down --force: %w on this host", errors.ErrUnsupported)
	}
	removed, left, err := fr.ForceRemove(Desired(cfg), otherOwners(o, cfg))
	if cfg.Tunnel.Dataplane == config.DataplaneEBPF {
		r, l, herr := forceRemoveHooks(o, cfg, h) // tunnel_ebpf.go
		removed, left, err = append(removed, r...), append(left, l...), errors.Join(err, herr)
	}
	for _, r := range removed {
		fmt.Fprintf(o.stdout, "  removed %s\n", r)
	}
	for _, l := range left {
		fmt.Fprintf(o.stdout, "  left as found: %s\n", l)
	}
	if !slices.ContainsFunc(cfg.Namespaces, func(ns config.Namespace) bool { return ns.Veth.Host == cfg.LAN.Interface }) &&
		(cfg.LAN.MTU > 0 || len(cfg.LAN.Offloads) > 0) {
		fmt.Fprintf(o.stdout, "  not restored: the MTU and offloads of %s (their earlier values were only in the journal)\n", cfg.LAN.Interface)
	}
	if err != nil {
		return fmt.Errorf("remove by the agent's marks (journal %s kept): %w", jp, err)
	}
	if err := os.Remove(jp); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove journal %s: %w", jp, err)
	}
	fmt.Fprintf(o.stdout, "site %s: done; no journal left at %s\n", cfg.Site, jp)
	return nil
}

// forceRemover removes what a desired state names and carries the agent's
// marks (netcfg.NetlinkHost.ForceRemove).
type forceRemover interface {
	ForceRemove(d netcfg.Desired, owner func(kind, name string) string) (removed, left []string, err error)
}

// otherOwners names, for ForceRemove, the other site whose journal
// claims an object. Journals that cannot be read are logged.
func otherOwners(o *options, cfg *config.Config) func(kind, name string) string {
	sites, err := o.host().OtherSites(cfg.Site)
	if err != nil {
		o.log.Warn("cannot read the other sites' journals; objects they claim are not known", "err", err)
	}
	owner := map[[2]string]string{} // kind and name: the first site that claims it
	claim := func(s config.SiteClaims, kind string, names ...string) {
		for _, n := range names {
			if _, ok := owner[[2]string{kind, n}]; !ok {
				owner[[2]string{kind, n}] = s.String()
			}
		}
	}
	for _, s := range sites {
		if s.Err != nil {
			o.log.Warn("cannot read another site's journal; objects it claims are not known", "journal", s.Journal, "err", s.Err)
			continue
		}
		claim(s, "namespace", s.Namespaces...)
		claim(s, "link", s.Links...)
		for _, r := range s.Routes {
			claim(s, "route", r.String())
		}
	}
	return func(kind, name string) string { return owner[[2]string{kind, name}] }
}

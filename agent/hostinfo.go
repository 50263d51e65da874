package agent

import (
	"errors"
	"io/fs"
	"log/slog"

	"tunnel-agent/agent/config"
	"tunnel-agent/netcfg"
)

// hostLinks answers the config validator's questions about the host
// from the namespace the agent runs in (read-only, no root): does this
// interface exist, which addresses and default routes are there (the
// system's namespaceReader), and what other sites' journals in the state
// directory claim.
type hostLinks struct {
	sys      system
	stateDir stateDir     // "" = no journals to read
	log      *slog.Logger // notes what could not be checked; nil = none
}

func (h hostLinks) LinkExists(name string) bool                { return h.sys.linkExists(name) }
func (h hostLinks) Addrs() ([]config.HostAddr, error)          { return h.sys.addrs() }
func (h hostLinks) DefaultRoutes() ([]config.HostRoute, error) { return h.sys.defaultRoutes() }

// host is the HostInfo of the commands that check a file against the
// host and the other sites in the state directory.
func (o *options) host() hostLinks { return hostLinks{sys: o.sys, stateDir: o.stateDir, log: o.log} }

// OtherSites reads every journal in the state directory but site's own
// (a missing directory holds none) and returns what each claims. A
// state directory this user may not read (a `check` without root) is
// skipped with a note: `up` runs as root and checks again.
func (h hostLinks) OtherSites(site string) ([]config.SiteClaims, error) {
	if h.stateDir == "" {
		return nil, nil
	}
	if err := h.stateDir.check(); err != nil {
		return nil, err
	}
	files, err := h.stateDir.otherJournals(site)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, nil
	case errors.Is(err, fs.ErrPermission):
		if h.log != nil {
			h.log.Warn("cannot read the state directory; the sites running on this host are not checked against this one (`up` checks them)",
				"dir", h.stateDir, "err", err)
		}
		return nil, nil
	case err != nil:
		return nil, err
	}
	here, err := h.sys.selfNetNS()
	if err != nil {
		return nil, err
	}
	var out []config.SiteClaims
	for _, f := range files {
		j, err := netcfg.LoadJournal(f.path)
		switch {
		case j == nil && err == nil:
			continue // removed meanwhile
		case err != nil:
			out = append(out, config.SiteClaims{Site: f.site, Journal: f.path, Err: err})
		default:
			out = append(out, journalClaims(f.path, j, j.NetNS != nil && !j.NetNS.Same(here)))
		}
	}
	return out, nil
}

// journalClaims lists what a journal's entries claim; unchanged entries
// count (the other site relies on them). Of a journal made in another
// network namespace (elsewhere), only the named namespaces count: its
// interfaces and routes are not in this one.
func journalClaims(path string, j *netcfg.Journal, elsewhere bool) config.SiteClaims {
	c := config.SiteClaims{Site: j.Site, Journal: path}
	for _, e := range j.Entries {
		for _, ns := range []string{e.NS, e.PeerNS} {
			if ns != "" {
				c.Namespaces = append(c.Namespaces, ns)
			}
		}
		if e.NS != "" || elsewhere {
			continue
		}
		if e.Link != "" {
			c.Links = append(c.Links, e.Link)
		}
		if e.Kind == netcfg.KindVeth && e.PeerNS == "" && e.Peer != "" {
			c.Links = append(c.Links, e.Peer)
		}
		if e.Kind == netcfg.KindAddr {
			c.Addrs = append(c.Addrs, config.HostAddr{Link: e.Link, Prefix: e.Prefix})
		}
		if e.Kind == netcfg.KindRoute && e.Route != nil {
			c.Routes = append(c.Routes, e.Route.Dst.Masked())
		}
	}
	return c
}

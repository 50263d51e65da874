package agent

import (
	"errors"
	"fmt"
	"log/slog"

	"github.com/vishvananda/netns"

	"tunnel-agent/netcfg"
)

// journalHost opens the host a journal is reverted on: the network
// namespace its changes were made in. That is the agent's own namespace
// in the usual case; a journal of another namespace (an `up` run under
// `nsenter --net=...`) is reverted there through per-namespace netlink
// handles when the namespace has a name under /run/netns, and refused,
// naming it, when it cannot be opened. The calling thread never changes
// namespace.
func journalHost(j *netcfg.Journal, log *slog.Logger) (*netcfg.NetlinkHost, error) {
	h, err := netcfg.NewNetlinkHost()
	if err != nil {
		return nil, err
	}
	here, err := h.NetNS()
	if err != nil {
		h.Close()
		return nil, err
	}
	target, err := revertNetNS(j, here, netcfg.OpenNetNS)
	if err != nil || target == netns.None() {
		if err != nil {
			h.Close()
			return nil, err
		}
		if j.NetNS == nil {
			log.Warn("the journal does not say which network namespace its changes were made in (written by an older agent); reverting in this one",
				"journal", j.Path(), "netns", here)
		}
		return h, nil
	}
	h.Close()
	log.Info("the journal's changes were made in another network namespace; reverting them there",
		"journal", j.Path(), "netns", *j.NetNS, "here", here)
	return netcfg.NewNetlinkHostAt(target), nil
}

// revertNetNS decides where j is reverted: netns.None() for here (the
// agent's namespace, or a journal that does not say), an open handle of
// the journal's namespace, or an error naming it when it cannot be
// opened. open is netcfg.OpenNetNS (a fake in tests).
func revertNetNS(j *netcfg.Journal, here netcfg.NetNSID, open func(netcfg.NetNSID) (netns.NsHandle, error)) (netns.NsHandle, error) {
	if j.NetNS == nil || j.NetNS.Same(here) {
		return netns.None(), nil
	}
	h, err := open(*j.NetNS)
	if err == nil {
		return h, nil
	}
	hint := "run `tunnel-agent down` inside it (nsenter --net=/proc/PID/ns/net of a process in it)"
	if errors.Is(err, netcfg.ErrNotFound) {
		hint = "if it no longer exists, its interfaces and routes went with it: remove the namespaces the file names " +
			"(`tunnel-agent down --force`), or run `down` inside it (nsenter --net=/proc/PID/ns/net of a process in it)"
	}
	return netns.None(), fmt.Errorf("the changes in journal %s were made in network namespace %s, not in this one (%s), and it cannot be opened (%w); nothing was reverted: %s",
		j.Path(), *j.NetNS, here, err, hint)
}

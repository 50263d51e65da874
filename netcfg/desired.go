// Package netcfg configures the host for a tunnel site: network namespaces,
// veth pairs, MTUs, ethtool features, addresses, links up, and routes.
//
// The model follows the ADD/DEL contract of CNI plugins and tailscale's
// router: a Desired state is turned into an ordered list of Entries (the
// plan); Apply reads the prior value of each entry, writes it to the
// journal, then makes the change; Revert walks the journal backwards and
// restores every prior value. Values that already matched are recorded as
// unchanged and left as they were found. Apply and Revert tolerate "already
// exists" and "already gone", so both are idempotent.
//
// The package knows nothing of the agent's YAML schema; it only sees
// Desired. All OS access goes through the small Host interface, which has a
// netlink/ethtool implementation (host_linux.go) and an in-memory fake in
// the tests.
package netcfg

import "net/netip"

// Desired is the host configuration a site asks for. The zero value asks
// for nothing; applying it changes nothing.
type Desired struct {
	// Namespaces are named network namespaces to create (under /run/netns).
	Namespaces []string
	// Veths are veth pairs to create, host end in the agent's namespace.
	Veths []Veth
	// Links are settings for links, existing or created by Veths.
	Links []Link
	// Routes are routes to add, after all links are configured.
	Routes []Route
}

// Veth is a veth pair whose peer end is created directly inside PeerNS.
type Veth struct {
	Name   string // host end, in the agent's namespace
	Peer   string // peer end
	PeerNS string // named namespace of the peer end ("" = agent's)
}

// Link holds the settings wanted for one link. Zero fields are left alone.
type Link struct {
	NS       string         // named namespace, "" = the agent's
	Name     string         // interface name
	MTU      int            // 0 = leave as is
	Features []Feature      // ethtool features (short or kernel names)
	Addrs    []netip.Prefix // addresses to add (interface address form)
	Up       bool           // bring the link up
}

// Feature is one ethtool feature setting. Name is an ethtool short name
// ("rx", "tx", "tso", ...) or a kernel feature name ("rx-checksum").
type Feature struct {
	Name string
	On   bool
}

// Route is one IPv4 or IPv6 route in the main table. A Blackhole route has
// no gateway; otherwise Gw is the next hop (a default route has Dst /0).
// It is added with the family's default metric (DefaultMetric), and only
// where the host has no route of its own to Dst at that metric.
type Route struct {
	NS        string
	Dst       netip.Prefix
	Gw        netip.Addr
	Blackhole bool
}

package netcfg

import (
	"fmt"
	"net/netip"
)

// Kind names one type of host change.
type Kind string

// The kinds of host change, in the order Plan emits them.
const (
	KindNamespace Kind = "namespace"
	KindVeth      Kind = "veth"
	KindMTU       Kind = "mtu"
	KindFeatures  Kind = "features"
	KindAddr      Kind = "addr"
	KindUp        Kind = "up"
	KindRoute     Kind = "route"
)

// State says how far an entry got.
type State string

// Entry states. An entry is journaled as Pending before its change is
// made, so a crash between the two leaves a record of it.
const (
	Pending   State = "pending"   // prior recorded, change may or may not have happened
	Done      State = "done"      // change made
	Unchanged State = "unchanged" // host already matched; nothing to revert
)

// Entry is one host change: what is wanted, and (once read) what was
// there before. Entries are what the journal stores.
type Entry struct {
	Kind     Kind            `json:"kind"`
	NS       string          `json:"ns,omitempty"`
	Link     string          `json:"link,omitempty"`
	Peer     string          `json:"peer,omitempty"`
	PeerNS   string          `json:"peer_ns,omitempty"`
	MTU      int             `json:"mtu,omitempty"`
	Features map[string]bool `json:"features,omitempty"`
	Prefix   netip.Prefix    `json:"prefix,omitzero"`
	Route    *RouteSpec      `json:"route,omitempty"`
	Prior    Prior           `json:"prior"`
	State    State           `json:"state,omitempty"`
}

// Prior is the value an entry's target had before the change.
type Prior struct {
	Exists   bool            `json:"exists,omitempty"`
	MTU      int             `json:"mtu,omitempty"`
	Up       bool            `json:"up,omitempty"`
	Features map[string]bool `json:"features,omitempty"`
	Route    *RouteSpec      `json:"route,omitempty"`
}

// RouteSpec is a route as read from or written to the kernel, with the
// fields needed to restore it exactly.
type RouteSpec struct {
	Dst      netip.Prefix `json:"dst"`
	Gw       netip.Addr   `json:"gw,omitzero"`
	Dev      string       `json:"dev,omitempty"`
	Type     int          `json:"type"`
	Protocol int          `json:"protocol"`
	Scope    int          `json:"scope"`
	Src      netip.Addr   `json:"src,omitzero"`
}

// where names the entry's namespace for messages.
func where(ns string) string {
	if ns == "" {
		return ""
	}
	return " in " + ns
}

// String describes the change in the words of an error or a plan line.
func (e *Entry) String() string {
	switch e.Kind {
	case KindNamespace:
		return "create namespace " + e.NS
	case KindVeth:
		return fmt.Sprintf("create veth pair %s <-> %s (%s%s)", e.Link, e.Peer, e.Peer, where(e.PeerNS))
	case KindMTU:
		return fmt.Sprintf("set MTU of %s%s to %d", e.Link, where(e.NS), e.MTU)
	case KindFeatures:
		return fmt.Sprintf("set features of %s%s: %s", e.Link, where(e.NS), formatFeatures(e.Features))
	case KindAddr:
		return fmt.Sprintf("add address %s to %s%s", e.Prefix, e.Link, where(e.NS))
	case KindUp:
		return fmt.Sprintf("bring up %s%s", e.Link, where(e.NS))
	case KindRoute:
		return "add route " + e.Route.String() + where(e.NS)
	}
	return string(e.Kind)
}

// String formats a route as `ip route` would.
func (r *RouteSpec) String() string {
	if r == nil {
		return "none"
	}
	if r.Type == rtnBlackhole {
		return "blackhole " + r.Dst.String()
	}
	dst := r.Dst.String()
	if r.Dst.Bits() == 0 {
		dst = "default"
	}
	s := dst
	if r.Gw.IsValid() {
		s += " via " + r.Gw.String()
	}
	if r.Dev != "" {
		s += " dev " + r.Dev
	}
	return s
}

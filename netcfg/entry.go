package netcfg

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"strconv"
)

// Kind names one type of host change.
type Kind string

// The kinds of host change, in the order Entries (plan.go) emits them.
const (
	KindNamespace Kind = "namespace"
	KindVeth      Kind = "veth"
	KindMTU       Kind = "mtu"
	KindFeatures  Kind = "features"
	KindAddr      Kind = "addr"
	KindUp        Kind = "up"
	KindRoute     Kind = "route"
	// KindTC is a program hooked to tc through a clsact qdisc (the eBPF
	// dataplane on kernels without tcx): not part of a plan, recorded by
	// the agent with RecordTC after it attached, and removed by Revert
	// (tc.go).
	KindTC Kind = "tc"
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
	TC       *TCSpec         `json:"tc,omitempty"`
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
//
// A route's identity is the kernel's: its family (Dst's), table (always
// main here), destination and Metric. Two routes with the same identity
// cannot both exist; Type and Gw say what the route does.
type RouteSpec struct {
	Dst      netip.Prefix `json:"dst"`
	Gw       netip.Addr   `json:"gw,omitzero"`
	Dev      string       `json:"dev,omitempty"`
	Type     int          `json:"type"`
	Protocol int          `json:"protocol"`
	Scope    int          `json:"scope"`
	Src      netip.Addr   `json:"src,omitzero"`
	// Metric is the route's priority as the kernel reports it. A journal
	// written before the field existed has none: it means the family's
	// default, which is what those agents used (see UnmarshalJSON).
	Metric int `json:"metric"`
}

// Default route metrics, as the kernel stores a route given without one:
// 0 for IPv4, IP6_RT_PRIO_USER (1024) for IPv6.
const (
	defaultMetric4 = 0
	defaultMetric6 = 1024
)

// DefaultMetric is the metric the kernel gives a route to dst that is
// added without one, and the metric of every route the agent adds.
func DefaultMetric(dst netip.Prefix) int {
	if dst.Addr().Is6() {
		return defaultMetric6
	}
	return defaultMetric4
}

// UnmarshalJSON reads a route; a missing "metric" (journals of earlier
// versions) is the family's default metric, the metric those versions'
// routes got from the kernel.
func (r *RouteSpec) UnmarshalJSON(b []byte) error {
	type plain RouteSpec // without this method
	p := plain{Metric: -1}
	if err := json.Unmarshal(b, &p); err != nil {
		return err
	}
	if p.Metric == -1 {
		p.Metric = DefaultMetric(p.Dst)
	}
	*r = RouteSpec(p)
	return nil
}

// routeKey is a route's identity within one namespace's main table.
type routeKey struct {
	dst    netip.Prefix
	metric int
}

func (r *RouteSpec) key() routeKey { return routeKey{r.Dst, r.Metric} }

// sameRoute reports whether the host's route have does what want asks
// for: the same type and, for a unicast route, the same gateway (the
// kernel fills in the device, protocol and scope).
func sameRoute(have, want *RouteSpec) bool {
	return have.Type == want.Type && have.Gw == want.Gw
}

// routeProtocols names the route protocols `ip route` names (rt_protos).
var routeProtocols = map[int]string{2: "kernel", 3: "boot", 4: "static", 9: "ra", 16: "dhcp", RouteProtocol: "tunnel-agent"}

// routeTypes names the route types of rtnetlink.h that a main table holds.
var routeTypes = map[int]string{RouteUnicast: "", 2: "local", 3: "broadcast", 4: "anycast", 5: "multicast",
	RouteBlackhole: "blackhole", 7: "unreachable", 8: "prohibit", 9: "throw", 10: "nat"}

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
	case KindTC:
		return e.TC.String() + where(e.NS)
	}
	return string(e.Kind)
}

// String formats a route as `ip route` would, without the protocol and
// metric (the plan's and the journal's words for the agent's routes).
func (r *RouteSpec) String() string {
	if r == nil {
		return "none"
	}
	if r.Type == RouteBlackhole {
		return "blackhole " + r.Dst.String()
	}
	dst := r.Dst.String()
	if r.Dst.Bits() == 0 {
		dst = "default"
	}
	s := dst
	if t, ok := routeTypes[r.Type]; !ok {
		s = "type " + strconv.Itoa(r.Type) + " " + dst
	} else if t != "" {
		s = t + " " + dst
	}
	if r.Gw.IsValid() {
		s += " via " + r.Gw.String()
	}
	if r.Dev != "" && r.Type == RouteUnicast {
		s += " dev " + r.Dev
	}
	return s
}

// Describe formats a route found on the host as `ip route` shows it, with
// its protocol and metric: "blackhole fd00:202::/48 proto static metric 1024".
func (r *RouteSpec) Describe() string {
	proto, ok := routeProtocols[r.Protocol]
	if !ok {
		proto = strconv.Itoa(r.Protocol)
	}
	return fmt.Sprintf("%s proto %s metric %d", r.String(), proto, r.Metric)
}

package netcfg

import (
	"errors"
	"net/netip"
)

// ErrNotFound is returned (wrapped) by Host methods when the namespace,
// link, address or route does not exist.
var ErrNotFound = errors.New("not found")

// ErrExists is returned (wrapped) by Host create methods when the object
// already exists.
var ErrExists = errors.New("already exists")

// RouteProtocol marks every route the agent adds (as `proto 227` in
// `ip route`), so that its routes can be told apart from everyone else's.
const RouteProtocol = 227

// Route types (RouteSpec.Type), as in the kernel's rtnetlink.h.
const (
	RouteUnicast   = 1
	RouteBlackhole = 6
)

// LinkInfo is what Apply needs to know of a link.
type LinkInfo struct {
	Name string
	Type string // "veth", "device", ...
	MTU  int
	Up   bool // administratively up (IFF_UP)
}

// FeatureInfo is one ethtool feature of a link.
type FeatureInfo struct {
	Requested bool // what was asked for (the "wanted" bit): what revert restores
	Active    bool
	Fixed     bool // cannot be changed on this device
}

// Host is the narrow view of the operating system that netcfg needs. NS ""
// is the agent's own namespace. Implementations never change the calling
// thread's namespace.
//
// Reads list a whole table of a namespace at once (Links, Addrs, Routes):
// a pass over the plan reads each table once and indexes it (view.go),
// so that the cost of a pass grows with the size of the tables, not with
// their product.
type Host interface {
	NamespaceExists(name string) (bool, error)
	CreateNamespace(name string) error
	DeleteNamespace(name string) error

	// Links lists the links of namespace ns (ErrNotFound: no such
	// namespace).
	Links(ns string) ([]LinkInfo, error)
	AddVeth(name, peer, peerNS string) error
	DeleteLink(ns, name string) error
	SetMTU(ns, name string, mtu int) error
	SetUp(ns, name string, up bool) error
	Features(ns, name string) (map[string]FeatureInfo, error)
	SetFeatures(ns, name string, f map[string]bool) error

	// Addrs lists the addresses (interface form, e.g. 10.0.0.1/24) of
	// every link of namespace ns, by link name.
	Addrs(ns string) (map[string][]netip.Prefix, error)
	AddAddr(ns, link string, p netip.Prefix) error
	DelAddr(ns, link string, p netip.Prefix) error

	// Routes lists the main-table routes of one family (IPv6 when ipv6)
	// of namespace ns, each with its metric as the kernel reports it.
	Routes(ns string, ipv6 bool) ([]RouteSpec, error)
	// AddRoute adds r (with r.Metric) and never replaces a route: when
	// the table has a route with r's destination and metric it fails
	// with ErrExists.
	AddRoute(ns string, r RouteSpec) error
	// ReplaceRoute adds r, replacing the route with its destination and
	// metric. netcfg uses it only to put back a route that a journal of
	// an earlier version recorded as replaced.
	ReplaceRoute(ns string, r RouteSpec) error
	// DelRoute deletes the route with r's destination, metric, type and
	// protocol (zero type or protocol: any).
	DelRoute(ns string, r RouteSpec) error

	// NetNS identifies the namespace that is NS "" (netns.go): a journal
	// records it, and Revert refuses a journal of another namespace.
	NetNS() (NetNSID, error)
}

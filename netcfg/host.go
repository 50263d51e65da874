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

// Route types, as in the kernel's rtnetlink.h.
const (
	rtnUnicast   = 1
	rtnBlackhole = 6
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
type Host interface {
	NamespaceExists(name string) (bool, error)
	CreateNamespace(name string) error
	DeleteNamespace(name string) error

	Link(ns, name string) (LinkInfo, error)
	AddVeth(name, peer, peerNS string) error
	DeleteLink(ns, name string) error
	SetMTU(ns, name string, mtu int) error
	SetUp(ns, name string, up bool) error
	Features(ns, name string) (map[string]FeatureInfo, error)
	SetFeatures(ns, name string, f map[string]bool) error

	HasAddr(ns, link string, p netip.Prefix) (bool, error)
	AddAddr(ns, link string, p netip.Prefix) error
	DelAddr(ns, link string, p netip.Prefix) error

	// Route returns the main-table route to exactly dst with metric 0, or
	// ErrNotFound.
	Route(ns string, dst netip.Prefix) (RouteSpec, error)
	ReplaceRoute(ns string, r RouteSpec) error
	DelRoute(ns string, r RouteSpec) error

	// NetNS identifies the namespace that is NS "" (netns.go): a journal
	// records it, and Revert refuses a journal of another namespace.
	NetNS() (NetNSID, error)
}

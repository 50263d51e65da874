// Package config is a site's configuration file: its schema (Config),
// parsing with defaults (Load, Parse), and validation that reports every
// problem at once, each placed at FILE:LINE:COLUMN and field (Error,
// FieldError). Checks against the host and the other sites on it go
// through HostInfo, which the caller implements. It imports neither
// netcfg nor dataplane: the agent maps a Config onto both.
package config

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"time"
)

// Config is one site's configuration, as read from its YAML file by
// Load: validated, with defaults applied. docs/config.md describes
// every field.
type Config struct {
	// Site names this end of the tunnel; the journal of the changes `up`
	// makes is <state-dir>/<Site>.json.
	Site string
	// LAN is the anchor interface: packets for the remote prefixes arrive
	// on it and are captured there.
	LAN LAN
	// Namespaces are network namespaces built on `up` and removed on
	// `down` (the tutorial's server-side setup). Optional.
	Namespaces []Namespace
	// Tunnel is the UDP side: where to listen and which peers own which
	// prefixes.
	Tunnel Tunnel
	// Metrics is the Prometheus endpoint (metrics.go); off by
	// default.
	Metrics Metrics
}

// LAN is the interface the agent captures from.
type LAN struct {
	Interface string   // interface name; exists on the host or is a Namespaces[].Veth.Host
	MTU       int      // set on up, restored on down; 0 = leave as is
	Offloads  Offloads // ethtool features set on up, restored on down
	// Capture is how the capture receives: socket (the zero value) or
	// ring (capture.go).
	Capture CaptureMode
}

// Namespace is a network namespace joined to the host by a veth pair.
type Namespace struct {
	Name        string       // namespace name (under /run/netns)
	Veth        Veth         // the pair: Host end here, Peer end inside the namespace
	HostAddress netip.Prefix // address of Veth.Host, interface form (e.g. 11.11.11.1/24)
	Address     netip.Prefix // address of Veth.Peer, interface form (e.g. 11.11.11.100/24)
	Gateway     netip.Addr   // default route inside the namespace; zero = none
	// HostAddress6, Address6 and Gateway6 optionally add IPv6 to the
	// veth ends and an IPv6 default route (config_ipv6.go); zero = none.
	HostAddress6 netip.Prefix
	Address6     netip.Prefix
	Gateway6     netip.Addr
}

// Veth is a veth pair created for a Namespace.
type Veth struct {
	Host     string   // end that stays in the host's namespace
	Peer     string   // end moved into the namespace
	MTU      int      // set on both ends; 0 = leave as is
	Offloads Offloads // ethtool features set on both ends
}

// Tunnel is the UDP tunnel: the local socket and the peers.
type Tunnel struct {
	// Listen is the local UDP address; [::]:port listens on both families.
	Listen netip.AddrPort
	// LocalPrefixes are the destinations at this site: a packet from the
	// tunnel is delivered only to them. Empty means the default: the
	// subnets of the LAN interface's addresses and of the namespaces' Address,
	// which the agent works out on `up` since it needs the host's addresses.
	LocalPrefixes []netip.Prefix
	// Peers are the remote sites; each owns the prefixes tunneled to it.
	Peers []Peer
	// Blackhole are the prefixes that get blackhole routes on `up`, so the
	// kernel drops the packets the agent captures and tunnels. Defaults to
	// every peer prefix.
	Blackhole []netip.Prefix
	// BlackholeSet reports whether the file gave blackhole (possibly
	// empty: no blackhole routes at all).
	BlackholeSet bool
	// Relay makes this site a hub: traffic from one peer to another
	// peer's prefixes is forwarded between them (dataplane Config.Relay).
	Relay bool
	// Mode is plain (the default) or wireguard; WireGuard holds the
	// wireguard-mode settings (wireguard.go).
	Mode      TunnelMode
	WireGuard WireGuardTunnel
	// Dataplane is userspace (the default) or ebpf (dataplane.go).
	Dataplane DataplaneKind
}

// Peer is a remote site.
type Peer struct {
	Name string
	// Endpoint is the peer's UDP address. The zero value means "learn
	// it": a peer behind NAT is known from its first valid datagram.
	Endpoint netip.AddrPort
	// EndpointName is the endpoint as a DNS name and port
	// ("vpn.example.com:50000") when the file gives one: `up` resolves it
	// into Endpoint, and re-resolves it while keepalives go unanswered
	// (endpoint.go; the agent's resolve.go).
	EndpointName string
	// Prefixes are the destinations tunneled to this peer (masked form):
	// those the file lists, then those of PrefixesFile.
	Prefixes []netip.Prefix
	// PrefixesFile is the file of further prefixes, one a line
	// (prefixes_file.go), resolved against the site file's
	// directory; "" = none. It is read again on every reload.
	PrefixesFile string
	// fileLines are the lines of PrefixesFile the last len(fileLines)
	// Prefixes come from, for error messages.
	fileLines []int
	// Keepalive is how often to send a keepalive when Endpoint is set
	// (to keep NAT state open); 0 = never. Defaults to DefaultKeepalive.
	Keepalive time.Duration
	// WireGuard holds the peer's keys in wireguard mode (wireguard.go).
	WireGuard WireGuardPeer
}

// DefaultKeepalive is Peer.Keepalive when the file does not give one.
const DefaultKeepalive = 25 * time.Second

// MaxFileSize is the largest site file Load reads (1 MiB); a larger one
// is refused.
const MaxFileSize = 1 << 20

// HostInfo answers questions about the host that validation needs.
type HostInfo interface {
	// LinkExists reports whether a network interface with this name
	// exists in the agent's namespace.
	LinkExists(name string) bool
	// Addrs lists the addresses of every interface in the agent's
	// namespace.
	Addrs() ([]HostAddr, error)
	// DefaultRoutes lists the default routes (IPv4 and IPv6) of the main
	// table in the agent's namespace.
	DefaultRoutes() ([]HostRoute, error)
	// OtherSites lists what each other site on this host (running, or
	// killed and not yet reverted) has claimed, as its journal in the
	// state directory says: every site but the one named site. An
	// unreadable journal comes back with Err set.
	OtherSites(site string) ([]SiteClaims, error)
}

// HostAddr is an address on one of the host's interfaces.
type HostAddr struct {
	Link   string
	Prefix netip.Prefix // interface form, e.g. 198.18.0.2/24
}

// HostRoute is one of the host's default routes.
type HostRoute struct {
	Dst netip.Prefix // 0.0.0.0/0 or ::/0
	Gw  netip.Addr   // zero for a route without a gateway
	Dev string
}

// SiteClaims is what another site on this host claims: the objects its
// journal records, changed or found as wanted (the site relies on both).
// Objects of a journal made in another network namespace are not in this
// one: of those, only the named namespaces it claims count (which every
// namespace sees).
type SiteClaims struct {
	Site    string // the site the journal is of
	Journal string // its path
	Err     error  // the journal could not be read: what it claims is unknown
	// Namespaces are the named namespaces it claims.
	Namespaces []string
	// Links are the interfaces it claims in the agent's namespace, Addrs
	// the addresses it added there, Routes the destinations of its routes
	// there (masked).
	Links  []string
	Addrs  []HostAddr
	Routes []netip.Prefix
}

// String names the site and its journal, as messages do.
func (s SiteClaims) String() string {
	return fmt.Sprintf("site %q (journal %s)", s.Site, s.Journal)
}

// Load reads, parses and validates the YAML file at path, and applies
// defaults. host answers the checks against the host and the other sites
// on it (lan.interface exists, subnets, default routes, claims); nil
// skips them. Every problem found comes back at once, as a *Error (also
// when the file cannot be read).
func Load(path string, host HostInfo) (*Config, error) {
	data, err := readConfigFile(path)
	if err != nil {
		return nil, &Error{Errors: []FieldError{{File: path, Msg: err.Error(), Err: errors.Unwrap(err)}}}
	}
	return Parse(path, data, host)
}

// Parse is Load on data already read; name is the file name
// used in error messages, and the directory that relative file names in
// it (tunnel.peers[].prefixes_file) are read from.
func Parse(name string, data []byte, host HostInfo) (*Config, error) {
	ps := &problems{}
	doc, raw := decodeFile(data, ps)
	var cfg *Config
	var facts fileFacts
	if raw != nil {
		cfg, facts = convert(raw, ps, filepath.Dir(name))
		validate(cfg, host, ps)
	}
	if errs := ps.fieldErrors(name, doc); len(errs) > 0 {
		return nil, &Error{Errors: errs}
	}
	applyDefaults(cfg, facts)
	return cfg, nil
}

func readConfigFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("cannot read the config file: %w", pathCause(err))
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("cannot read the config file: %w", pathCause(err))
	}
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("the config file is larger than %d bytes", MaxFileSize)
	}
	return data, nil
}

// pathCause strips the operation and path that *fs.PathError repeats.
func pathCause(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// applyDefaults fills in what the file left out. It runs after validation.
func applyDefaults(cfg *Config, facts fileFacts) {
	for i := range cfg.Tunnel.Peers {
		if !facts.keepaliveSet[i] {
			cfg.Tunnel.Peers[i].Keepalive = DefaultKeepalive
		}
	}
	if !cfg.Tunnel.BlackholeSet {
		cfg.Tunnel.Blackhole = allPeerPrefixes(cfg.Tunnel.Peers)
	}
}

func allPeerPrefixes(peers []Peer) []netip.Prefix {
	var out []netip.Prefix
	for _, p := range peers {
		out = append(out, p.Prefixes...)
	}
	return out
}

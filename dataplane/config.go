package dataplane

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"time"
)

const (
	// DefaultBatchSize is the batch size when Config.BatchSize is 0.
	DefaultBatchSize = 32
	// maxBatchSize matches Linux's UIO_MAXIOV, the most recvmmsg/sendmmsg
	// take in one call.
	maxBatchSize = 1024
	// DefaultPathMTU is the path MTU when PeerConfig.PathMTU is 0.
	DefaultPathMTU = 1500
	// minPathMTU is the datagram size every IPv4 host must accept
	// (RFC 791); a smaller path MTU is surely a configuration mistake.
	minPathMTU = 576
	// maxPacketSize is the size of each read buffer: the largest IP
	// packet, so that no capture or datagram is ever cut short.
	maxPacketSize = 0xffff
)

// newEngine builds an engine without I/O objects from cfg.
func newEngine(cfg Config) (*Engine, error) {
	e := &Engine{}
	if err := e.r.init(cfg); err != nil {
		return nil, err
	}
	e.configure(cfg)
	e.eps.Store(initialEndpoints(e.r.peers))
	return e, nil
}

// configure sets the tunnel side's part of cfg, which the Router has
// checked.
func (e *Engine) configure(cfg Config) {
	e.ka = newKeepaliveState(cfg)
	for i := range e.r.peers {
		e.learns = e.learns || !e.r.peers[i].configured.IsValid()
	}
}

// takeTables replaces r's configuration (peers, prefixes, ICMP sources,
// LAN MTU, relaying) with n's, keeping its counters, limiters, log and
// Injector, and moves the counters of the peers that stay (carryPeers);
// it returns what carryPeers returns. The caller has stopped every
// packet path of r between batches.
func (r *Router) takeTables(n *Router) []int {
	r.mu.Lock()
	defer r.mu.Unlock()
	was := carryPeers(r.peers, n.peers)
	r.peers, r.routes, r.local, r.notHosts = n.peers, n.routes, n.local, n.notHosts
	r.lanMTU.Store(n.lanMTU.Load())
	r.icmpSrc, r.icmpSrc6, r.relay = n.icmpSrc, n.icmpSrc6, n.relay
	r.gen++
	return was
}

// init builds a new router from cfg.
func (r *Router) init(cfg Config) error {
	r.log = cfg.Logger
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	r.epoch = time.Now()
	r.icmpBucket = newTokenBucket(icmpInterval, icmpBurst)
	return r.configure(cfg)
}

// configure checks cfg and builds the router's peers and tables from it.
func (r *Router) configure(cfg Config) error {
	var err error
	r.icmpSrc, r.icmpSrc6, r.relay = cfg.ICMPSource.Unmap(), cfg.ICMPSource6, cfg.Relay
	if r.peers, err = newPeers(cfg.Peers); err != nil {
		return err
	}
	if r.routes, err = newPeerTable(cfg.Peers); err != nil {
		return err
	}
	if r.local, err = newLocalPrefixes(cfg.LocalPrefixes); err != nil {
		return err
	}
	if r.batch, err = batchSize(cfg.BatchSize); err != nil {
		return err
	}
	if err := checkLANMTU(cfg.LANMTU); err != nil {
		return err
	}
	r.lanMTU.Store(int64(min(cfg.LANMTU, maxPacketSize)))
	r.notHosts = newNotHosts(cfg.LocalPrefixes, cfg.LANPrefixes)
	if r.icmpSrc.IsValid() && !r.icmpSrc.Is4() {
		return fmt.Errorf("ICMP source %v is not an IPv4 address", cfg.ICMPSource)
	}
	if r.icmpSrc6.IsValid() && !isUnicast6(r.icmpSrc6) {
		return fmt.Errorf("ICMPv6 source %v is not an IPv6 unicast address", cfg.ICMPSource6)
	}
	return nil
}

// newPeers checks the peer configs and resolves their defaults.
func newPeers(cfgs []PeerConfig) ([]peer, error) {
	if len(cfgs) == 0 {
		return nil, errors.New("no peers")
	}
	peers := make([]peer, len(cfgs))
	names := make(map[string]bool, len(cfgs))
	eps := make(map[netip.AddrPort]string, len(cfgs))
	for i, pc := range cfgs {
		if err := checkPeer(pc, names, eps); err != nil {
			return nil, fmt.Errorf("peer %d (%q): %w", i, pc.Name, err)
		}
		peers[i] = peer{idx: i, name: pc.Name, configured: unmapAddrPort(pc.Endpoint),
			keepalive: pc.Keepalive, pathMTU: cmp.Or(pc.PathMTU, DefaultPathMTU),
			learnLog:  newTokenBucket(learnLogInterval, learnLogBurst),
			kaReplies: newTokenBucket(kaReplyInterval, kaReplyBurst)}
	}
	return peers, nil
}

// checkPeer validates one peer against the names and endpoints seen so far
// (and records its own): both must be unique, or statistics and the
// sender→peer lookup would be ambiguous.
func checkPeer(pc PeerConfig, names map[string]bool, eps map[netip.AddrPort]string) error {
	if pc.Name == "" || names[pc.Name] {
		return errors.New("name empty or not unique")
	}
	names[pc.Name] = true
	if len(pc.Prefixes) == 0 {
		return errors.New("no prefixes")
	}
	if pc.Keepalive < 0 {
		return errors.New("negative keepalive")
	}
	if mtu := cmp.Or(pc.PathMTU, DefaultPathMTU); mtu < minPathMTU || mtu > maxPacketSize {
		return fmt.Errorf("path MTU %d outside [%d, %d]", mtu, minPathMTU, maxPacketSize)
	}
	return checkEndpoint(unmapAddrPort(pc.Endpoint), pc.Name, eps)
}

// checkEndpoint accepts a zero (learned) endpoint, or a unique one with a
// valid address and non-zero port.
func checkEndpoint(ep netip.AddrPort, name string, eps map[netip.AddrPort]string) error {
	if ep == (netip.AddrPort{}) {
		return nil
	}
	if !ep.Addr().IsValid() || ep.Port() == 0 || ep.Addr().IsUnspecified() {
		return fmt.Errorf("invalid endpoint %v", ep)
	}
	if other, dup := eps[ep]; dup {
		return fmt.Errorf("endpoint %v is also peer %q's", ep, other)
	}
	eps[ep] = name
	return nil
}

// newLocalPrefixes builds the set of accepted inner destinations.
func newLocalPrefixes(pfxs []netip.Prefix) (*prefixSet, error) {
	if len(pfxs) == 0 {
		return nil, errors.New("no local prefixes: every packet from the tunnel would be dropped")
	}
	s, err := newPrefixSet(pfxs)
	if err != nil {
		return nil, fmt.Errorf("local prefixes: %w", err)
	}
	return s, nil
}

// batchSize resolves and bounds Config.BatchSize.
func batchSize(n int) (int, error) {
	if n < 0 || n > maxBatchSize {
		return 0, fmt.Errorf("batch size %d outside [0, %d]", n, maxBatchSize)
	}
	return cmp.Or(n, DefaultBatchSize), nil
}

// unmapAddrPort turns an IPv4-mapped IPv6 address into plain IPv4, so that
// a dual-stack socket's view of a sender matches an IPv4 configuration.
func unmapAddrPort(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

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
	e := &Engine{
		icmpSrc: cfg.ICMPSource.Unmap(), icmpSrc6: cfg.ICMPSource6, log: cfg.Logger,
		epoch: time.Now(), icmpBucket: newTokenBucket(icmpInterval, icmpBurst),
	}
	if err := e.configure(cfg); err != nil {
		return nil, err
	}
	if e.log == nil {
		e.log = slog.New(slog.DiscardHandler)
	}
	e.eps.Store(initialEndpoints(e.peers))
	for i := range e.peers {
		e.learns = e.learns || !e.peers[i].configured.IsValid()
	}
	return e, nil
}

// configure checks cfg and builds the engine's peers and tables from it.
func (e *Engine) configure(cfg Config) error {
	var err error
	if e.peers, err = newPeers(cfg.Peers); err != nil {
		return err
	}
	if e.routes, err = newPeerTable(cfg.Peers); err != nil {
		return err
	}
	if e.local, err = newLocalPrefixes(cfg.LocalPrefixes); err != nil {
		return err
	}
	if e.batch, err = batchSize(cfg.BatchSize); err != nil {
		return err
	}
	if err := checkLANMTU(cfg.LANMTU); err != nil {
		return err
	}
	e.lanMTU.Store(int64(min(cfg.LANMTU, maxPacketSize)))
	e.notHosts = newNotHosts(cfg.LocalPrefixes, cfg.LANPrefixes)
	e.relay = cfg.Relay
	e.ka = newKeepaliveState(cfg)
	if e.icmpSrc.IsValid() && !e.icmpSrc.Is4() {
		return fmt.Errorf("ICMP source %v is not an IPv4 address", cfg.ICMPSource)
	}
	if e.icmpSrc6.IsValid() && !isUnicast6(e.icmpSrc6) {
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

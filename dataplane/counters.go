package dataplane

import (
	"net/netip"
	"sync/atomic"
	"time"
)

// DropReason says why the engine dropped a packet. Its String form is a
// stable snake_case name used in status output and metric labels, so names
// must never be renamed, only added.
type DropReason uint8

// Drop reasons. DropNone (the zero value) means "not dropped".
const (
	DropNone          DropReason = iota
	DropTooShort                 // shorter than its headers or its total length
	DropBadHeader                // IHL, total length or header checksum wrong
	DropNotIPv4                  // version nibble is neither 4 nor 6 (name kept: "not_ipv4")
	DropNotFromPeer              // datagram from an address that is no peer's endpoint
	DropSrcNotAllowed            // inner source outside the sending peer's prefixes
	DropDstNotAllowed            // inner destination outside LocalPrefixes
	DropNoRoute                  // captured destination in no peer's prefixes
	DropNoEndpoint               // peer's endpoint not configured nor learned yet
	DropTooBig                   // DF set and packet does not fit the path MTU
	DropTTLExpired               // TTL would reach zero at this hop
	DropSendError                // Transport.WriteBatch failed for the datagram
	DropInjectError              // Injector.WriteBatch failed for the packet
	DropTooBigLAN                // from the tunnel, larger than the LAN MTU, and DF set or IPv6
	DropBadKeepalive             // keepalive magic, but malformed (length, type or prefixes)
	DropNoSession                // WireGuard mode: no session with the peer, and its share of packets waiting for the handshake is taken
	DropTunnelBusy               // WireGuard mode: the queue back into the tunnel (relayed packets) is full
	numDropReasons
)

var dropNames = [numDropReasons]string{
	DropNone:          "none",
	DropTooShort:      "too_short",
	DropBadHeader:     "bad_header",
	DropNotIPv4:       "not_ipv4",
	DropNotFromPeer:   "not_from_peer",
	DropSrcNotAllowed: "src_not_allowed",
	DropDstNotAllowed: "dst_not_allowed",
	DropNoRoute:       "no_route",
	DropNoEndpoint:    "no_endpoint",
	DropTooBig:        "too_big",
	DropTTLExpired:    "ttl_expired",
	DropSendError:     "send_error",
	DropInjectError:   "inject_error",
	DropTooBigLAN:     "too_big_lan",
	DropBadKeepalive:  "bad_keepalive",
	DropNoSession:     "no_session",
	DropTunnelBusy:    "tunnel_busy",
}

// String returns the stable snake_case name of r.
func (r DropReason) String() string {
	if r < numDropReasons {
		return dropNames[r]
	}
	return "unknown"
}

// DropReasons lists every real drop reason (DropNone excluded), in a fixed
// order, so exporters can pre-register one label per reason.
func DropReasons() []DropReason {
	rs := make([]DropReason, 0, numDropReasons-1)
	for r := DropNone + 1; r < numDropReasons; r++ {
		rs = append(rs, r)
	}
	return rs
}

// Stats is a point-in-time copy of the engine's counters. It is plain data
// so that it marshals to JSON as is.
type Stats struct {
	Peers []PeerStats `json:"peers"`
	// Drops has one entry per drop reason name, zeros included, so that
	// consumers see a stable set of keys.
	Drops map[string]uint64 `json:"drops"`
	// ICMPSent counts ICMP errors (time exceeded, fragmentation needed,
	// packet too big) handed to the Injector, or to the Transport for a
	// sender across the tunnel; ICMPRateLimited those the limiter held
	// back; ICMPBadSource those never generated because the packet's
	// source (or destination) is not one host: a broadcast, multicast,
	// unspecified or loopback address, or the broadcast (IPv6: the
	// subnet-router anycast) address of a local prefix.
	ICMPSent        uint64 `json:"icmp_sent"`
	ICMPRateLimited uint64 `json:"icmp_rate_limited"`
	ICMPBadSource   uint64 `json:"icmp_bad_source"`
	// Fragmented counts IPv4 packets from the tunnel larger than the LAN
	// MTU, with DF clear, that were fragmented before injection, and
	// Fragments the fragments injected for them.
	Fragmented uint64 `json:"fragmented"`
	Fragments  uint64 `json:"fragments"`
	// KeepaliveRepliesRateLimited counts keepalive requests left
	// unanswered because their peer's reply limit was reached.
	KeepaliveRepliesRateLimited uint64 `json:"keepalive_replies_rate_limited"`
}

// PeerStats are one peer's counters. Rx counts valid packets accepted from
// the peer; Tx counts datagrams the Transport accepted for sending. Neither
// counts keepalives, which have their own counters.
type PeerStats struct {
	Name               string         `json:"name"`
	ConfiguredEndpoint netip.AddrPort `json:"configured_endpoint"` // "" when learning
	CurrentEndpoint    netip.AddrPort `json:"current_endpoint"`    // "" until learned
	RxPackets          uint64         `json:"rx_packets"`
	RxBytes            uint64         `json:"rx_bytes"`
	TxPackets          uint64         `json:"tx_packets"`
	TxBytes            uint64         `json:"tx_bytes"`
	LastReceived       time.Time      `json:"last_received,omitzero"`
	// KeepalivesSent counts our keepalive requests to the peer's
	// configured endpoint, KeepalivesAnswered our replies to its requests,
	// KeepalivesReceived its requests, replies and (older agents)
	// zero-length keepalives.
	KeepalivesSent     uint64 `json:"keepalives_sent"`
	KeepalivesReceived uint64 `json:"keepalives_received"`
	KeepalivesAnswered uint64 `json:"keepalives_answered"`
}

// peerCounters are one peer's counters. The rx group is written only by
// the transport goroutine and the tx group only by the capture and
// keepalive goroutines; the padding keeps the groups on separate cache
// lines so that the two directions do not false-share.
type peerCounters struct {
	rxPackets, rxBytes atomic.Uint64
	lastRx             atomic.Int64 // wall clock, UnixNano; 0 = never
	keepalivesRx       atomic.Uint64
	_                  [64]byte
	txPackets, txBytes atomic.Uint64
	keepalivesTx       atomic.Uint64
	keepalivesAnswered atomic.Uint64
}

// countRx counts a packet of n bytes received from p at wall (UnixNano).
func (p *peer) countRx(n int, wall int64) {
	p.ctr.rxPackets.Add(1)
	p.ctr.rxBytes.Add(uint64(n))
	p.ctr.lastRx.Store(wall)
}

// countTx counts a packet of n bytes sent to p.
func (p *peer) countTx(n int) {
	p.ctr.txPackets.Add(1)
	p.ctr.txBytes.Add(uint64(n))
}

// engineCounters are the engine-wide counters.
type engineCounters struct {
	drops         [numDropReasons]atomic.Uint64
	icmpSent      atomic.Uint64
	icmpLimited   atomic.Uint64
	icmpBadSource atomic.Uint64
	fragmented    atomic.Uint64
	fragments     atomic.Uint64
	// kaRepliesLimited: keepalive requests not answered (rate limit).
	kaRepliesLimited atomic.Uint64
}

// dropsMap renders the drop counters keyed by reason name.
func (c *engineCounters) dropsMap() map[string]uint64 {
	m := make(map[string]uint64, numDropReasons-1)
	for r := DropNone + 1; r < numDropReasons; r++ {
		m[r.String()] = c.drops[r].Load()
	}
	return m
}

// snapshot copies p's counters into a PeerStats (endpoints left to caller).
func (p *peerCounters) snapshot() PeerStats {
	s := PeerStats{
		RxPackets:          p.rxPackets.Load(),
		RxBytes:            p.rxBytes.Load(),
		TxPackets:          p.txPackets.Load(),
		TxBytes:            p.txBytes.Load(),
		KeepalivesSent:     p.keepalivesTx.Load(),
		KeepalivesReceived: p.keepalivesRx.Load(),
		KeepalivesAnswered: p.keepalivesAnswered.Load(),
	}
	if ns := p.lastRx.Load(); ns != 0 {
		s.LastReceived = time.Unix(0, ns)
	}
	return s
}

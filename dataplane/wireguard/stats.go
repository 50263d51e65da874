package wireguard

import (
	"bufio"
	"encoding/base64"
	"encoding/hex"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"tunnel-agent/dataplane"
)

// Stats is what `wg show` shows per peer, plus what WireGuard refused. It
// is plain data, for JSON.
type Stats struct {
	PublicKey  string      `json:"public_key"` // base64, as wg prints it
	ListenPort uint16      `json:"listen_port"`
	Peers      []PeerStats `json:"peers"`
	// Every datagram the UDP socket delivered is counted once more below,
	// by where it ended (figures inferred from wireguard-go's silence, the
	// rejected and rate-limited ones, are exact once its queues drain):
	//
	//	DatagramsReceived = NotWireGuard
	//	  + HandshakeReceived (all handshake outcomes below, malformed included)
	//	  + TransportReceived (all transport outcomes below, malformed included)
	DatagramsReceived uint64 `json:"datagrams_received"`
	// SocketDrops: datagrams the kernel dropped before the agent read
	// them (the socket's receive buffer full: a flood, or backpressure
	// from wireguard-go); SocketTruncated: larger than a buffer. Neither
	// is in DatagramsReceived.
	SocketDrops     uint64 `json:"socket_drops"`
	SocketTruncated uint64 `json:"socket_truncated"`
	// NotWireGuard: an unknown message type or reserved bytes set (a
	// plain-mode datagram, garbage).
	NotWireGuard uint64 `json:"not_wireguard"`

	// Handshakes by outcome. Initiated: initiations we sent (first ones
	// and retries). Completed: responses that completed a handshake of
	// ours and initiations we answered.
	HandshakesInitiated uint64 `json:"handshakes_initiated"`
	HandshakesCompleted uint64 `json:"handshakes_completed"`
	// HandshakeReceived = HandshakesCompleted (each completion is a
	// message received: a response to ours or an initiation we answered)
	// + CookieRepliesReceived + HandshakeRejected.
	HandshakeReceived uint64 `json:"handshake_received"`
	// HandshakeRejected is the sum of the HandshakeRejected* reasons.
	HandshakeRejected uint64 `json:"handshake_rejected"`
	// UnknownKey: an initiation or response with a valid MAC that did not
	// authenticate: a public key not among the peers, forged content, a
	// stale timestamp.
	HandshakeRejectedUnknownKey uint64 `json:"handshake_rejected_unknown_key"`
	// BadMAC: the MAC1 (keyed with our public key) did not verify.
	HandshakeRejectedBadMAC uint64 `json:"handshake_rejected_bad_mac"`
	// Replay: identical to a recent handshake message.
	HandshakeRejectedReplay uint64 `json:"handshake_rejected_replay"`
	// UnderLoad: answered with a cookie reply instead of being processed
	// (the device is under load and the message carried no valid MAC2).
	HandshakeRejectedUnderLoad uint64 `json:"handshake_rejected_under_load"`
	// Malformed: a handshake type with the wrong size, or undecodable;
	// a bad cookie reply to one of ours.
	HandshakeRejectedMalformed uint64 `json:"handshake_rejected_malformed"`
	// RateLimited: dropped by wireguard-go without a word: its
	// per-source rate limit under load, its handshake queue full, and
	// cookie replies for no handshake of ours.
	HandshakeRejectedRateLimited uint64 `json:"handshake_rejected_rate_limited"`
	// Overload: more handshake messages in flight than the device may
	// hold (flight.go); dropped.
	HandshakeRejectedOverload uint64 `json:"handshake_rejected_overload"`
	// CookieRepliesReceived: cookie replies to our handshakes that
	// decrypted (a peer under load).
	CookieRepliesReceived uint64 `json:"cookie_replies_received"`

	// Transport messages by outcome: TransportReceived =
	// TransportMalformed + TransportUnknownSession + TransportDelivered +
	// KeepalivesReceived + TransportDisallowed + TransportRejected.
	TransportReceived uint64 `json:"transport_received"`
	// Malformed: shorter than a transport header and tag.
	TransportMalformed uint64 `json:"transport_malformed"`
	// UnknownSession: no session with that receiver index, or an expired
	// one.
	TransportUnknownSession uint64 `json:"transport_unknown_session"`
	// Delivered: authenticated packets handed to the LAN side (whose own
	// counters say what it did with them).
	TransportDelivered uint64 `json:"transport_delivered"`
	KeepalivesReceived uint64 `json:"keepalives_received"`
	// Disallowed: authenticated packets whose inner source is not among
	// the sending peer's prefixes (or not IP).
	TransportDisallowed uint64 `json:"transport_disallowed"`
	// TransportRejected: transport messages refused after the session
	// lookup: failed authentication (a flipped bit, a wrong key), a
	// replayed or too old counter.
	TransportRejected uint64 `json:"transport_rejected"`

	// InFlightOutbound and InFlightInbound are packets charged to
	// wireguard-go within the last 100 ms and not yet seen leaving it
	// (flight.go): those inside it now, and those it dropped without a
	// word (TransportRejected, packets staged for a peer without a
	// session) until their credit is forgiven; InFlightForgiven counts
	// the packets forgiven so.
	InFlightOutbound int    `json:"in_flight_outbound"`
	InFlightInbound  int    `json:"in_flight_inbound"`
	InFlightForgiven uint64 `json:"in_flight_forgiven"`
}

// PeerStats is one peer as wireguard-go reports it. RxBytes and TxBytes
// count WireGuard payload with its 32 bytes of overhead, as `wg show`
// does.
type PeerStats struct {
	Name          string         `json:"name"`
	PublicKey     string         `json:"public_key"`
	Endpoint      netip.AddrPort `json:"endpoint"`
	LastHandshake time.Time      `json:"last_handshake,omitzero"`
	RxBytes       uint64         `json:"rx_bytes"`
	TxBytes       uint64         `json:"tx_bytes"`
	Keepalive     time.Duration  `json:"persistent_keepalive"`
}

// Stats returns the LAN-side counters as plain mode has them, with each
// peer's current endpoint as WireGuard knows it.
func (w *Tunnel) Stats() dataplane.Stats {
	st := w.lan.Stats()
	wg := w.WireGuardStats()
	ep := make(map[string]netip.AddrPort, len(wg.Peers))
	for _, p := range wg.Peers { // by name: a reload may run between the two reads
		ep[p.Name] = p.Endpoint
	}
	for i := range st.Peers {
		st.Peers[i].CurrentEndpoint = ep[st.Peers[i].Name]
	}
	return st
}

// WireGuardStats reads the device's state; safe at any time.
func (w *Tunnel) WireGuardStats() Stats {
	w.idMu.RLock()
	defer w.idMu.RUnlock()
	c := w.ctr
	st := Stats{
		PublicKey:  w.pub,
		ListenPort: w.ListenPort(),
		Peers:      make([]PeerStats, len(w.names)),
	}
	c.fill(&st)
	if ub, ok := w.bind.Bind.(*udpBind); ok {
		st.SocketDrops, st.SocketTruncated = ub.drops()
	}
	for k, i := range w.keys {
		st.Peers[i] = PeerStats{Name: w.names[i], PublicKey: base64.StdEncoding.EncodeToString(k[:])}
	}
	dev := w.dev.Load()
	if dev == nil {
		return st
	}
	if text, err := dev.IpcGet(); err == nil {
		w.parseIPC(text, &st)
	}
	return st
}

// parseIPC fills st from the device's UAPI "get" text.
func (w *Tunnel) parseIPC(text string, st *Stats) {
	var cur *PeerStats
	var sec, nsec int64
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		key, val, _ := strings.Cut(sc.Text(), "=")
		switch key {
		case "public_key":
			cur = w.peerByHex(val, st)
		case "endpoint":
			setIf(cur, func(p *PeerStats) { p.Endpoint, _ = netip.ParseAddrPort(val) })
		case "last_handshake_time_sec":
			sec, _ = strconv.ParseInt(val, 10, 64)
		case "last_handshake_time_nsec":
			nsec, _ = strconv.ParseInt(val, 10, 64)
			setIf(cur, func(p *PeerStats) { p.LastHandshake = handshakeTime(sec, nsec) })
		case "rx_bytes":
			setIf(cur, func(p *PeerStats) { p.RxBytes, _ = strconv.ParseUint(val, 10, 64) })
		case "tx_bytes":
			setIf(cur, func(p *PeerStats) { p.TxBytes, _ = strconv.ParseUint(val, 10, 64) })
		case "persistent_keepalive_interval":
			setIf(cur, func(p *PeerStats) { s, _ := strconv.Atoi(val); p.Keepalive = time.Duration(s) * time.Second })
		}
	}
}

// peerByHex returns the stats entry of the peer with this hex public key.
func (w *Tunnel) peerByHex(h string, st *Stats) *PeerStats {
	var k Key
	if b, err := hex.DecodeString(h); err != nil || len(b) != len(k) {
		return nil
	} else {
		copy(k[:], b)
	}
	if i, ok := w.keys[k]; ok {
		return &st.Peers[i]
	}
	return nil
}

func setIf(p *PeerStats, f func(*PeerStats)) {
	if p != nil {
		f(p)
	}
}

// handshakeTime is the zero time for "never" (0 s 0 ns).
func handshakeTime(sec, nsec int64) time.Time {
	if sec == 0 && nsec == 0 {
		return time.Time{}
	}
	return time.Unix(sec, nsec)
}

// fill sets st's counters.
func (c *wgCounters) fill(st *Stats) {
	st.DatagramsReceived = c.received.Load()
	st.NotWireGuard = c.notWireGuard.Load()
	st.HandshakesInitiated = c.initiated.Load()
	st.HandshakesCompleted = c.completed.Load()
	st.HandshakeReceived = c.hsRx.Load() + c.hsMalformed.Load()
	st.HandshakeRejectedUnknownKey = c.hsInvalid.Load()
	st.HandshakeRejectedBadMAC = c.hsBadMAC.Load()
	st.HandshakeRejectedReplay = c.hsReplay.Load()
	st.HandshakeRejectedUnderLoad = c.hsCookie.Load()
	st.HandshakeRejectedMalformed = c.hsMalformed.Load() + c.hsDecode.Load() + c.cookieBad.Load()
	st.HandshakeRejectedRateLimited = c.handshakeSilent()
	st.HandshakeRejectedOverload = c.hsOverload.Load()
	st.CookieRepliesReceived = remainder(c.cookieRx.Load(), c.cookieBad.Load())
	st.HandshakeRejected = st.HandshakeRejectedUnknownKey + st.HandshakeRejectedBadMAC + st.HandshakeRejectedReplay +
		st.HandshakeRejectedUnderLoad + st.HandshakeRejectedMalformed + st.HandshakeRejectedRateLimited +
		st.HandshakeRejectedOverload
	st.TransportReceived = c.transportRx.Load() + c.transportMalformed.Load()
	st.TransportMalformed = c.transportMalformed.Load()
	st.TransportUnknownSession = c.transportSkipped.Load()
	st.TransportDelivered = c.delivered.Load()
	st.KeepalivesReceived = c.keepalivesRx.Load()
	st.TransportDisallowed = c.wgDropped.Load()
	st.TransportRejected = c.transportRejected()
	st.InFlightOutbound = c.out.InFlight()
	st.InFlightInbound = c.in.InFlight()
	// after InFlight*, which move the window
	st.InFlightForgiven = c.out.forgiven.Load() + c.in.forgiven.Load() + c.hs.forgiven.Load()
}

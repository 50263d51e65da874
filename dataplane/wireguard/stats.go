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
	// NotWireGuard counts datagrams that are no WireGuard message (a
	// plain-mode datagram, garbage); HandshakeRejected handshake messages
	// refused (unknown public key, bad MAC); TransportRejected transport
	// messages refused (failed authentication, replay, unknown session).
	NotWireGuard      uint64 `json:"not_wireguard"`
	HandshakeRejected uint64 `json:"handshake_rejected"`
	TransportRejected uint64 `json:"transport_rejected"`
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
	st := Stats{
		PublicKey:         w.pub,
		ListenPort:        w.ListenPort(),
		NotWireGuard:      w.ctr.notWireGuard.Load(),
		HandshakeRejected: w.ctr.handshakeInvalid.Load(),
		TransportRejected: w.ctr.transportRejected(),
		Peers:             make([]PeerStats, len(w.names)),
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

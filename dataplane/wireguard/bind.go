package wireguard

import (
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"sync/atomic"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
)

// countingBind is wireguard-go's UDP bind with a look at every received
// datagram before the device gets it: what is not a WireGuard message
// (unknown type, wrong size for its type; a plain-mode datagram, say) is
// dropped here and counted, and transport messages are counted so that
// the ones wireguard-go rejects silently (failed authentication, replay,
// unknown receiver index) can be counted too (see wgCounters).
type countingBind struct {
	conn.Bind
	ctr  *wgCounters
	port atomic.Uint32
}

// Open opens the underlying bind and wraps its receive functions.
func (b *countingBind) Open(port uint16) ([]conn.ReceiveFunc, uint16, error) {
	fns, actual, err := b.Bind.Open(port)
	if err != nil {
		return nil, 0, err
	}
	b.port.Store(uint32(actual))
	for i, fn := range fns {
		fns[i] = b.wrap(fn)
	}
	return fns, actual, nil
}

// wrap classifies each datagram fn receives; a non-WireGuard one gets
// size 0, which the device skips.
func (b *countingBind) wrap(fn conn.ReceiveFunc) conn.ReceiveFunc {
	return func(bufs [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
		n, err := fn(bufs, sizes, eps)
		for i := range n {
			if sizes[i] > 0 && !b.ctr.classify(bufs[i][:sizes[i]]) {
				sizes[i] = 0
			}
		}
		return n, err
	}
}

// wgCounters count what WireGuard refuses. wireguard-go has no counters
// of its own: rejections it logs are counted from its log calls (see
// logger), and transport messages it drops silently are the difference
// between those received and those that authenticated.
type wgCounters struct {
	notWireGuard     atomic.Uint64 // not a WireGuard message: dropped by countingBind
	handshakeRx      atomic.Uint64 // initiations, responses, cookie replies received
	handshakeInvalid atomic.Uint64 // ... that wireguard-go refused (unknown key, bad MAC, undecodable)
	transportRx      atomic.Uint64 // transport messages received
	keepalivesRx     atomic.Uint64 // authenticated keepalives (from the log)
	delivered        atomic.Uint64 // authenticated packets handed to wgTUN.Write
	wgDropped        atomic.Uint64 // authenticated packets wireguard-go dropped (source, version)
}

// WireGuard message types and sizes (the protocol's wire format).
const (
	wgMsgInitiation = 1
	wgMsgResponse   = 2
	wgMsgCookie     = 3
	wgMsgTransport  = 4
)

// classify counts one received datagram and reports whether it is a
// WireGuard message: a known type, the three reserved bytes zero, and the
// size that type has.
func (c *wgCounters) classify(b []byte) bool {
	if len(b) < 4 || b[1]|b[2]|b[3] != 0 {
		c.notWireGuard.Add(1)
		return false
	}
	ok := false
	switch binary.LittleEndian.Uint32(b) {
	case wgMsgInitiation:
		ok = len(b) == device.MessageInitiationSize
	case wgMsgResponse:
		ok = len(b) == device.MessageResponseSize
	case wgMsgCookie:
		ok = len(b) == device.MessageCookieReplySize
	case wgMsgTransport:
		if ok = len(b) >= device.MessageTransportSize; ok {
			c.transportRx.Add(1)
			return true
		}
	}
	if !ok {
		c.notWireGuard.Add(1)
		return false
	}
	c.handshakeRx.Add(1)
	return true
}

// wireguard-go's log formats that mark a refusal or an authenticated
// packet. They belong to the pinned wireguard-go version; the tests of
// WireGuard mode fail if they change.
var (
	wgHandshakeRefusals = map[string]bool{
		"Received invalid initiation message from %s": true,
		"Received invalid response message from %s":   true,
		"Received packet with invalid mac1":           true,
		"Could not decrypt invalid cookie response":   true,
		"Failed to decode cookie reply":               true,
		"Failed to decode initiation message":         true,
		"Failed to decode response message":           true,
	}
	wgAuthenticatedDrops = map[string]bool{
		"IPv4 packet with disallowed source address from %v": true,
		"IPv6 packet with disallowed source address from %v": true,
		"Packet with invalid IP version from %v":             true,
	}
)

const wgKeepaliveLog = "%v - Receiving keepalive packet"

// note counts the event a wireguard-go log call reports, if any.
func (c *wgCounters) note(format string) {
	switch {
	case format == wgKeepaliveLog:
		c.keepalivesRx.Add(1)
	case wgHandshakeRefusals[format]:
		c.handshakeInvalid.Add(1)
	case wgAuthenticatedDrops[format]:
		c.wgDropped.Add(1)
	}
}

// logger is the device's logger: it counts what the log calls report and
// passes them to slog, verbose ones at debug level.
func (c *wgCounters) logger(log *slog.Logger) *device.Logger {
	logf := func(level slog.Level) func(string, ...any) {
		return func(format string, args ...any) {
			c.note(format)
			if log.Enabled(context.Background(), level) {
				log.Log(context.Background(), level, "wireguard: "+fmt.Sprintf(format, args...))
			}
		}
	}
	return &device.Logger{Verbosef: logf(slog.LevelDebug), Errorf: logf(slog.LevelWarn)}
}

// transportRejected is the number of transport messages wireguard-go
// refused without a word: authentication failed (a flipped bit, a wrong
// key), replayed or too old a counter, unknown receiver index, expired
// keypair. While traffic flows, messages still queued inside wireguard-go
// show here until processed; the figure is exact once the queues drain.
func (c *wgCounters) transportRejected() uint64 {
	rx := c.transportRx.Load()
	ok := c.delivered.Load() + c.keepalivesRx.Load() + c.wgDropped.Load()
	if ok >= rx {
		return 0
	}
	return rx - ok
}

package wireguard

import (
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
)

// countingBind is a UDP bind (wireguard-go's, or ours: see NewBind) with
// a look at every datagram before the device gets it and every one it
// sends:
//   - what is not a WireGuard message (unknown type, reserved bytes set)
//     or has the wrong size for its type is dropped here and counted;
//   - a handshake message identical to a recent one is a replay: dropped
//     and counted;
//   - handshake messages are bounded in flight (hsCredit), above the
//     queue length at which wireguard-go goes "under load" and answers
//     with cookies; beyond it they are dropped and counted, where
//     wireguard-go's own queue would hold 1024 of 64 KiB each;
//   - transport messages wait for inbound credit (flight.go) and are
//     charged; Send releases outbound credit for each data message sent.
type countingBind struct {
	conn.Bind
	ctr    *wgCounters
	port   atomic.Uint32
	replay replayFilter
}

// Message classes, as keptMask records them.
const (
	kindTransport = 1 + iota
	kindHandshake
)

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

// wrap classifies each datagram fn receives; one the device must not see
// gets size 0, which it skips. fn gets the whole batch: wireguard-go's
// StdNetBind reads GRO batches into its last buffers and splits them into
// the others, so it needs all of them.
func (b *countingBind) wrap(fn conn.ReceiveFunc) conn.ReceiveFunc {
	n := b.BatchSize()
	mask := newKeptMask(n)
	kinds := make([]uint8, n)
	timer := newStoppedTimer()
	c := b.ctr
	return func(bufs [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
		// Only transport messages are recorded: a handshake message's
		// buffer seen again proves nothing, as wireguard-go queues it
		// before it takes a fresh buffer from its pool, and a handshake
		// worker may have handled it and put the buffer back by then
		// (the same buffer comes back). wireguard-go skips a handshake
		// message of the right size only when its queue is full: that
		// drop is counted as silent (handshakeSilent) and its credit
		// forgiven (flight.go).
		mask.skipped(bufs, func(uint8) {
			c.transportSkipped.Add(1)
			c.in.Release(1)
		})
		c.in.wait(timer)
		got, err := fn(bufs, sizes, eps)
		got = min(max(got, 0), len(bufs), len(sizes))
		var data int
		var now time.Time
		for i := range got {
			kinds[i] = 0
			if sizes[i] <= 0 {
				continue
			}
			msg := bufs[i][:sizes[i]]
			switch k := c.classify(msg); {
			case k == kindTransport:
				kinds[i] = kindTransport
				data++
			case k == kindHandshake:
				if now.IsZero() {
					now = time.Now()
				}
				switch {
				case b.replay.seen(msg):
					c.hsReplay.Add(1)
					sizes[i] = 0
				case c.hs.full(now):
					c.hsOverload.Add(1)
					sizes[i] = 0
				default:
					c.hs.Charge(1)
				}
			default:
				sizes[i] = 0
			}
		}
		c.in.Charge(data)
		mask.record(bufs, kinds, got)
		return got, err
	}
}

// Send sends bufs and releases the outbound credit of the data messages
// among them (transport messages longer than a keepalive).
func (b *countingBind) Send(bufs [][]byte, ep conn.Endpoint) error {
	data := 0
	for _, m := range bufs {
		if len(m) > device.MessageKeepaliveSize && m[0] == wgMsgTransport {
			data++
		}
	}
	err := b.Bind.Send(bufs, ep)
	b.ctr.out.Release(data)
	return err
}

// wgCounters count what WireGuard receives, by outcome, and hold the
// credits that bound what is in flight. wireguard-go has no counters of
// its own: outcomes it logs are counted from its log calls (see note),
// and those it does not log are differences (see handshakeSilent and
// transportRejected).
type wgCounters struct {
	received           atomic.Uint64 // datagrams from the bind
	notWireGuard       atomic.Uint64 // unknown type or reserved bytes set: dropped here
	hsMalformed        atomic.Uint64 // a handshake type with the wrong size: dropped here
	transportMalformed atomic.Uint64 // a transport message shorter than header and tag: dropped here

	// Handshake messages (initiation, response, cookie reply).
	hsRx       atomic.Uint64 // received with the right size
	hsReplay   atomic.Uint64 // identical to a recent one: dropped here
	hsOverload atomic.Uint64 // beyond the handshake bound: dropped here
	hsBadMAC   atomic.Uint64 // wireguard-go: invalid mac1
	hsCookie   atomic.Uint64 // wireguard-go under load: answered with a cookie reply, not processed
	hsInvalid  atomic.Uint64 // wireguard-go: initiation or response refused (unknown key, undecryptable, stale timestamp)
	hsDecode   atomic.Uint64 // wireguard-go: failed to decode
	hsAccepted atomic.Uint64 // initiations answered and responses that completed our handshake
	cookieRx   atomic.Uint64 // cookie replies for one of our handshakes (consumed or refused)
	cookieBad  atomic.Uint64 // ... that did not decrypt
	initiated  atomic.Uint64 // initiations we sent
	completed  atomic.Uint64 // handshakes completed: responses we accepted, initiations we answered

	// Transport messages.
	transportRx      atomic.Uint64 // received
	transportSkipped atomic.Uint64 // not queued by the device: unknown receiver index, expired session
	keepalivesRx     atomic.Uint64 // authenticated keepalives (from the log)
	delivered        atomic.Uint64 // authenticated packets handed to wgTUN.Write
	wgDropped        atomic.Uint64 // authenticated packets wireguard-go dropped (source, version)

	out, in, hs *credit
}

func newWGCounters() *wgCounters {
	return &wgCounters{out: newCredit(creditOutbound), in: newCredit(creditInbound), hs: newCredit(handshakeBound())}
}

// handshakeBound is how many handshake messages may be inside the device:
// enough for its queue to reach QueueHandshakeSize/8, where it goes under
// load and answers with cookies, while each of its handshake workers (one
// per CPU) holds one more.
func handshakeBound() int {
	return device.QueueHandshakeSize/8 + runtime.NumCPU() + 16
}

// WireGuard message types and sizes (the protocol's wire format).
const (
	wgMsgInitiation = 1
	wgMsgResponse   = 2
	wgMsgCookie     = 3
	wgMsgTransport  = 4
)

// classify counts one received datagram and returns its class, or 0 if
// it is no WireGuard message: a known type, the three reserved bytes
// zero, and the size that type has.
func (c *wgCounters) classify(b []byte) uint8 {
	c.received.Add(1)
	if len(b) < 4 || b[1]|b[2]|b[3] != 0 {
		c.notWireGuard.Add(1)
		return 0
	}
	size := 0
	switch binary.LittleEndian.Uint32(b) {
	case wgMsgInitiation:
		size = device.MessageInitiationSize
	case wgMsgResponse:
		size = device.MessageResponseSize
	case wgMsgCookie:
		size = device.MessageCookieReplySize
	case wgMsgTransport:
		if len(b) < device.MessageTransportSize {
			c.transportMalformed.Add(1)
			return 0
		}
		c.transportRx.Add(1)
		return kindTransport
	default:
		c.notWireGuard.Add(1)
		return 0
	}
	if len(b) != size {
		c.hsMalformed.Add(1)
		return 0
	}
	c.hsRx.Add(1)
	return kindHandshake
}

// replayFilter remembers the MACs of recent handshake messages. A
// handshake message is never sent twice (each has a fresh ephemeral key,
// timestamp or nonce), so one seen before is a replay, which wireguard-go
// would refuse after the work of a Diffie-Hellman.
type replayFilter struct {
	mu   sync.Mutex
	set  map[[16]byte]struct{}
	ring [replayWindow][16]byte
	next int
}

const replayWindow = 1024

// seen reports whether msg, a handshake message of the right size, was
// seen among the last replayWindow ones, and remembers it.
func (r *replayFilter) seen(msg []byte) bool {
	var k [16]byte
	if binary.LittleEndian.Uint32(msg) == wgMsgCookie {
		copy(k[:], msg[len(msg)-16:]) // the tag of the encrypted cookie
	} else {
		copy(k[:], msg[len(msg)-32:]) // mac1
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.set == nil {
		r.set = make(map[[16]byte]struct{}, replayWindow)
	}
	if _, ok := r.set[k]; ok {
		return true
	}
	if r.next >= replayWindow {
		delete(r.set, r.ring[r.next%replayWindow])
	}
	r.ring[r.next%replayWindow] = k
	r.set[k] = struct{}{}
	r.next++
	return false
}

// wireguard-go's log formats that mark an outcome. They belong to the
// pinned wireguard-go version; the tests of WireGuard mode fail if they
// change.
const (
	logBadMAC      = "Received packet with invalid mac1"
	logCookieSent  = "Sending cookie response for denied handshake message for %v"
	logInitiation  = "%v - Received handshake initiation"
	logResponse    = "%v - Received handshake response"
	logBadInit     = "Received invalid initiation message from %s"
	logBadResp     = "Received invalid response message from %s"
	logDecodeInit  = "Failed to decode initiation message"
	logDecodeResp  = "Failed to decode response message"
	logDecodeCook  = "Failed to decode cookie reply"
	logCookieRx    = "Receiving cookie response from %s"
	logCookieBad   = "Could not decrypt invalid cookie response"
	logInitiating  = "%v - Sending handshake initiation"
	logKeepaliveRx = "%v - Receiving keepalive packet"
	logSrcV4       = "IPv4 packet with disallowed source address from %v"
	logSrcV6       = "IPv6 packet with disallowed source address from %v"
	logBadVersion  = "Packet with invalid IP version from %v"
)

// note counts the event a wireguard-go log call reports, if any, and
// releases the credit of a packet that left the device with it.
func (c *wgCounters) note(format string) {
	switch format {
	case logKeepaliveRx:
		c.keepalivesRx.Add(1)
		c.in.Release(1)
	case logSrcV4, logSrcV6, logBadVersion:
		c.wgDropped.Add(1)
		c.in.Release(1)
	case logBadMAC:
		c.hsBadMAC.Add(1)
		c.hs.Release(1)
	case logCookieSent:
		c.hsCookie.Add(1)
		c.hs.Release(1)
	case logInitiation, logResponse:
		c.hsAccepted.Add(1)
		c.completed.Add(1)
		c.hs.Release(1)
	case logBadInit, logBadResp:
		c.hsInvalid.Add(1)
		c.hs.Release(1)
	case logDecodeInit, logDecodeResp, logDecodeCook:
		c.hsDecode.Add(1)
		c.hs.Release(1)
	case logCookieRx:
		c.cookieRx.Add(1)
		c.hs.Release(1)
	case logCookieBad:
		c.cookieBad.Add(1)
	case logInitiating:
		c.initiated.Add(1)
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

// remainder is in − out, 0 if out ≥ in (messages still queued).
func remainder(in, out uint64) uint64 {
	if out >= in {
		return 0
	}
	return in - out
}

// transportRejected is the number of transport messages wireguard-go
// queued and then refused without a word: authentication failed (a
// flipped bit, a wrong key), replayed or too old a counter. While traffic
// flows, messages still queued inside wireguard-go show here until
// processed; the figure is exact once the queues drain.
func (c *wgCounters) transportRejected() uint64 {
	queued := remainder(c.transportRx.Load(), c.transportSkipped.Load())
	return remainder(queued, c.delivered.Load()+c.keepalivesRx.Load()+c.wgDropped.Load())
}

// handshakeQueued is the number of handshake messages handed to
// wireguard-go.
func (c *wgCounters) handshakeQueued() uint64 {
	return remainder(c.hsRx.Load(), c.hsReplay.Load()+c.hsOverload.Load())
}

// handshakeSilent is the number of handshake messages wireguard-go was
// handed and dropped without a word: rate-limited under load, its queue
// full, or cookie replies for no handshake of ours. Exact once the queue
// drains.
func (c *wgCounters) handshakeSilent() uint64 {
	logged := c.hsBadMAC.Load() + c.hsCookie.Load() + c.hsInvalid.Load() + c.hsDecode.Load() +
		c.hsAccepted.Load() + c.cookieRx.Load()
	return remainder(c.handshakeQueued(), logged)
}

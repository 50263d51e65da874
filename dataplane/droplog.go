package dataplane

import (
	"context"
	"log/slog"
	"net/netip"
	"sync/atomic"
	"time"
)

// logEvery is the minimum interval between two log lines of one kind, so
// that a flood of bad packets costs an atomic add each, not a log line.
const logEvery = int64(10 * time.Second)

// logSlot rate-limits one kind of log line. It is lock-free and
// allocation-free, so it can sit on the per-packet path.
type logSlot struct {
	next       atomic.Int64 // monotonic ns before which lines are suppressed
	suppressed atomic.Uint64
}

// allow reports whether a line may be logged at monotonic time now, and
// how many were suppressed since the last one. Exactly one of concurrent
// callers wins a slot; the others count as suppressed.
func (s *logSlot) allow(now int64) (bool, uint64) {
	next := s.next.Load()
	if now < next || !s.next.CompareAndSwap(next, now+logEvery) {
		s.suppressed.Add(1)
		return false, 0
	}
	return true, s.suppressed.Swap(0)
}

// dropInfo is what a drop log line can say about the packet.
type dropInfo struct {
	peer     *peer          // nil when no peer was identified
	addr     netip.AddrPort // outer address: sender, or destination
	src, dst netip.Addr     // inner addresses, when parsed
	err      error          // I/O error, for send_error and inject_error
}

// dropLevel is the log level per reason: I/O failures are warnings,
// signs of misconfiguration or attack are info, and what a busy LAN
// produces all day (IPv6, traffic not for the tunnel, traceroute) is debug.
var dropLevel = [numDropReasons]slog.Level{
	DropTooShort: slog.LevelInfo, DropBadHeader: slog.LevelInfo,
	DropNotIPv4: slog.LevelDebug, DropNotFromPeer: slog.LevelInfo,
	DropSrcNotAllowed: slog.LevelInfo, DropDstNotAllowed: slog.LevelInfo,
	DropNoRoute: slog.LevelDebug, DropNoEndpoint: slog.LevelInfo,
	DropTooBig: slog.LevelDebug, DropTTLExpired: slog.LevelDebug,
	DropSendError: slog.LevelWarn, DropInjectError: slog.LevelWarn,
	DropTooBigLAN:    slog.LevelDebug,
	DropBadKeepalive: slog.LevelInfo,
}

// drop counts one packet dropped for reason why and logs it if why's limiter
// allows. It does not allocate unless it logs.
func (r *Router) drop(why DropReason, d dropInfo, now int64) {
	r.ctr.drops[why].Add(1)
	if ok, suppressed := r.dropLog[why].allow(now); ok {
		r.logDrop(why, d, suppressed)
	}
}

// logDrop writes the (rate-limited) log line for a drop.
func (r *Router) logDrop(why DropReason, d dropInfo, suppressed uint64) {
	if !r.log.Enabled(context.Background(), dropLevel[why]) {
		return
	}
	attrs := make([]slog.Attr, 0, 7)
	attrs = append(attrs, slog.String("reason", why.String()))
	if d.peer != nil {
		attrs = append(attrs, slog.String("peer", d.peer.name))
	}
	if d.addr.IsValid() {
		attrs = append(attrs, slog.String("addr", d.addr.String()))
	}
	if d.src.IsValid() {
		attrs = append(attrs, slog.String("src", d.src.String()), slog.String("dst", d.dst.String()))
	}
	if d.err != nil {
		attrs = append(attrs, slog.String("err", d.err.Error()))
	}
	attrs = append(attrs, slog.Uint64("suppressed", suppressed))
	r.log.LogAttrs(context.Background(), dropLevel[why], "packet dropped", attrs...)
}

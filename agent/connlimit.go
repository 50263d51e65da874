package agent

import (
	"net"
	"net/http"
	"sync"
	"time"
)

// connLimiter bounds the connections an HTTP server holds at once. When a
// connection arrives at the limit, the one that has waited longest
// without a request in progress (new, or idle between keep-alive
// requests) is closed to make room; when every one is busy, the new one
// is closed. Accept never blocks on the limit, so a crowd of idle
// connections cannot keep a scrape waiting in the kernel's accept queue,
// as netutil.LimitListener would, and costs at most max descriptors.
// Install ConnState as the server's ConnState hook.
type connLimiter struct {
	net.Listener
	max int
	now func() time.Time

	mu    sync.Mutex
	conns map[net.Conn]*connUse
}

type connUse struct {
	busy  bool      // a request is being read or answered
	since time.Time // of the last state change
}

func newConnLimiter(ln net.Listener, max int) *connLimiter {
	return &connLimiter{Listener: ln, max: max, now: time.Now, conns: map[net.Conn]*connUse{}}
}

// Accept returns the next connection, making room for it if needed.
func (l *connLimiter) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.admit(c) {
			return c, nil
		}
		c.Close()
	}
}

func (l *connLimiter) admit(c net.Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.conns) >= l.max {
		var victim net.Conn
		var oldest time.Time
		for vc, u := range l.conns {
			if !u.busy && (victim == nil || u.since.Before(oldest)) {
				victim, oldest = vc, u.since
			}
		}
		if victim == nil {
			return false
		}
		victim.Close() // the server sees it closed and reports StateClosed
		delete(l.conns, victim)
	}
	l.conns[c] = &connUse{since: l.now()}
	return true
}

// ConnState tracks what each connection is doing (http.Server.ConnState).
func (l *connLimiter) ConnState(c net.Conn, s http.ConnState) {
	l.mu.Lock()
	defer l.mu.Unlock()
	u, ok := l.conns[c]
	if !ok {
		return
	}
	switch s {
	case http.StateClosed, http.StateHijacked:
		delete(l.conns, c)
	default:
		u.busy, u.since = s == http.StateActive, l.now()
	}
}

// open returns how many connections are held.
func (l *connLimiter) open() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.conns)
}

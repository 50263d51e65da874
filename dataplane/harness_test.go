package dataplane_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"tunnel-agent/dataplane"
	"tunnel-agent/dataplane/dptest"
)

// The fakes satisfy the interfaces (checked here: dptest cannot import
// dataplane, whose internal tests import dptest).
var (
	_ dataplane.Capture   = (*dptest.Capture)(nil)
	_ dataplane.Transport = (*dptest.Transport)(nil)
	_ dataplane.Injector  = (*dptest.Injector)(nil)
	_ dataplane.Injector  = dptest.Discard{}
)

func ap(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }
func ip(s string) netip.Addr     { return netip.MustParseAddr(s) }
func pfxs(ss ...string) []netip.Prefix {
	ps := make([]netip.Prefix, len(ss))
	for i, s := range ss {
		ps[i] = netip.MustParsePrefix(s)
	}
	return ps
}

// gateway is one Engine running over dptest fakes.
type gateway struct {
	eng       *dataplane.Engine
	capture   *dptest.Capture
	transport *dptest.Transport
	injector  *dptest.Injector
	logs      *logRecorder
	stop      func() error // cancels Run and returns its result
}

// startGateway runs an engine with cfg on nw at addr until the test ends.
func startGateway(t *testing.T, nw *dptest.Network, addr netip.AddrPort, cfg dataplane.Config) *gateway {
	t.Helper()
	g := &gateway{capture: dptest.NewCapture(), transport: nw.Listen(addr),
		injector: dptest.NewInjector(), logs: &logRecorder{}}
	cfg.Logger = slog.New(g.logs)
	eng, err := dataplane.New(cfg, g.capture, g.transport, g.injector)
	if err != nil {
		t.Fatal(err)
	}
	g.eng = eng
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- eng.Run(ctx) }()
	var once sync.Once
	var runErr error
	g.stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case runErr = <-done:
			case <-time.After(5 * time.Second):
				runErr = fmt.Errorf("Run did not return within 5 s of cancel")
			}
		})
		return runErr
	}
	t.Cleanup(func() {
		if err := g.stop(); err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return g
}

// peerStats returns the named peer's statistics.
func (g *gateway) peerStats(t *testing.T, name string) dataplane.PeerStats {
	t.Helper()
	for _, p := range g.eng.Stats().Peers {
		if p.Name == name {
			return p
		}
	}
	t.Fatalf("no peer %q in stats", name)
	return dataplane.PeerStats{}
}

// drops returns the drop counters.
func (g *gateway) drops() map[string]uint64 { return g.eng.Stats().Drops }

// waitFor polls cond until it holds or 5 s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// waitDrop waits until the gateway has counted want drops for reason.
func waitDrop(t *testing.T, g *gateway, reason string, want uint64) {
	t.Helper()
	waitFor(t, fmt.Sprintf("%s == %d", reason, want), func() bool { return g.drops()[reason] == want })
}

// checkNoLeaks fails the test if goroutines started during it are still
// running once its cleanups (which stop the engines) have run.
func checkNoLeaks(t *testing.T) {
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(2 * time.Second)
		for runtime.NumGoroutine() > before || engineGoroutines() != "" {
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<20)
				t.Fatalf("goroutines leaked: %d before, %d after\n%s", before, runtime.NumGoroutine(),
					buf[:runtime.Stack(buf, true)])
			}
			time.Sleep(5 * time.Millisecond)
		}
	})
}

// engineGoroutines returns the stacks of goroutines inside the engine.
func engineGoroutines() string {
	buf := make([]byte, 1<<20)
	var out []string
	for _, g := range strings.Split(string(buf[:runtime.Stack(buf, true)]), "\n\n") {
		if strings.Contains(g, "dataplane.(*Engine)") {
			out = append(out, g)
		}
	}
	return strings.Join(out, "\n\n")
}

// logRecorder is a slog.Handler keeping every record, debug included.
type logRecorder struct {
	mu   sync.Mutex
	recs []logRecord
}

// logRecord is a record flattened for assertions.
type logRecord struct {
	level slog.Level
	msg   string
	attrs map[string]string
}

func (l *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (l *logRecorder) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *logRecorder) WithGroup(string) slog.Handler            { return l }

func (l *logRecorder) Handle(_ context.Context, r slog.Record) error {
	rec := logRecord{level: r.Level, msg: r.Message, attrs: map[string]string{}}
	r.Attrs(func(a slog.Attr) bool {
		rec.attrs[a.Key] = a.Value.String()
		return true
	})
	l.mu.Lock()
	defer l.mu.Unlock()
	l.recs = append(l.recs, rec)
	return nil
}

// find returns the records with message msg whose attributes include all
// of the given key=value pairs.
func (l *logRecorder) find(msg string, kv ...string) []logRecord {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []logRecord
	for _, r := range l.recs {
		if r.msg == msg && hasAttrs(r, kv) {
			out = append(out, r)
		}
	}
	return out
}

func hasAttrs(r logRecord, kv []string) bool {
	for i := 0; i+1 < len(kv); i += 2 {
		if r.attrs[kv[i]] != kv[i+1] {
			return false
		}
	}
	return true
}

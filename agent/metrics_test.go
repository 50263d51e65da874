package agent

import (
	"context"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// startTestMetrics serves the metrics endpoint on a unix socket (no
// network needed) and returns a client for it and the limiter.
func startTestMetrics(t *testing.T) (*http.Client, *connLimiter, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "metrics.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	m := newMetrics()
	m.rebindFailures.Add(3)
	srv, lim := newMetricsServer(ln, m.reg, discardLog)
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(lim) }()
	t.Cleanup(func() { srv.Close(); <-done })
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", path)
		}}}
	return c, lim, path
}

func get(c *http.Client, path string) (int, string, error) {
	resp, err := c.Get("http://agent" + path)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

func TestMetricsOnlyMetrics(t *testing.T) {
	c, _, _ := startTestMetrics(t)
	code, body, err := get(c, "/metrics")
	if err != nil || code != 200 || !strings.Contains(body, "tunnel_agent_capture_rebind_failures_total 3") {
		t.Fatalf("GET /metrics = %d, %v:\n%.300s", code, err, body)
	}
	for _, p := range []string{"/", "/metrics/x", "/debug/pprof/", "/favicon.ico"} {
		if code, _, err := get(c, p); err != nil || code != http.StatusNotFound {
			t.Errorf("GET %s = %d, %v; want 404", p, code, err)
		}
	}
	resp, err := c.Post("http://agent/metrics", "text/plain", strings.NewReader("x"))
	if err != nil || resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /metrics = %v, %v; want 405", resp.Status, err)
	} else {
		resp.Body.Close()
	}
}

// TestMetricsIdleConnections holds many more connections than the limit,
// idle after a request (keep-alive) or never sending one, as the local
// user of the report did with 21,000: a real scrape still succeeds at
// once, and the server holds at most the limit.
func TestMetricsIdleConnections(t *testing.T) {
	c, lim, path := startTestMetrics(t)
	const crowd = 3 * metricsMaxConns
	for i := range crowd {
		conn, err := net.Dial("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		if i%2 == 0 { // one request, then idle on the kept-alive connection
			if _, err := io.WriteString(conn, "GET /metrics HTTP/1.1\r\nHost: agent\r\n\r\n"); err != nil {
				t.Fatal(err)
			}
		}
	}
	for range 3 {
		start := time.Now()
		code, _, err := get(c, "/metrics")
		if err != nil || code != 200 {
			t.Fatalf("scrape with %d idle connections: %d, %v", crowd, code, err)
		}
		t.Logf("scrape with %d idle connections took %v", crowd, time.Since(start).Round(time.Millisecond))
		c.CloseIdleConnections()
	}
	if n := lim.open(); n > metricsMaxConns {
		t.Errorf("server holds %d connections, limit %d", n, metricsMaxConns)
	}
}

func TestConnLimiterRefusesWhenAllBusy(t *testing.T) {
	lim := newConnLimiter(nil, 2)
	a, b, c := &stubConn{}, &stubConn{}, &stubConn{}
	for _, x := range []*stubConn{a, b} {
		if !lim.admit(x) {
			t.Fatal("refused below the limit")
		}
		lim.ConnState(x, http.StateActive)
	}
	if lim.admit(c) {
		t.Error("admitted a third connection while both were busy")
	}
	lim.ConnState(a, http.StateIdle)
	if !lim.admit(c) || !a.closed || b.closed {
		t.Errorf("with a idle: admitted=%v, a closed=%v, b closed=%v; want a closed to make room", lim.open(), a.closed, b.closed)
	}
}

type stubConn struct {
	net.Conn
	closed bool
}

func (s *stubConn) Close() error { s.closed = true; return nil }

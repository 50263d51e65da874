package agent

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

var (
	discardLog = slog.New(slog.DiscardHandler)
	errEACCES  = syscall.EACCES
)

// startTestStatus serves h on a unix socket in a temporary directory with
// a short read timeout; it returns the state directory and site to dial.
func startTestStatus(t *testing.T, h statusHandlers, readTimeout time.Duration) (dir, site string) {
	t.Helper()
	dir, site = t.TempDir(), "s"
	ln, err := net.Listen("unix", stateDir(dir).socket(site))
	if err != nil {
		t.Fatal(err)
	}
	s := newStatusServer(ln, h, discardLog)
	s.readTimeout = readTimeout
	go s.serve()
	t.Cleanup(s.Close)
	return dir, site
}

func dialStatus(t *testing.T, dir, site string) net.Conn {
	t.Helper()
	c, err := net.Dial("unix", stateDir(dir).socket(site))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// cutOff waits (bounded) until the server closes c without answering.
func cutOff(t *testing.T, c net.Conn, within time.Duration) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(within))
	b, err := io.ReadAll(c)
	if errors.Is(err, syscall.ECONNRESET) { // closed with the request unread
		err = nil
	}
	if err != nil || len(b) != 0 {
		t.Fatalf("read %q, %v: want the server to close the connection without an answer within %v", b, err, within)
	}
}

func TestStatusSocketBounds(t *testing.T) {
	var snaps atomic.Int32
	h := statusHandlers{snapshot: func() Status { snaps.Add(1); return Status{Site: "s", PID: 42} }}
	dir, site := startTestStatus(t, h, 200*time.Millisecond)

	t.Run("a client that never sends is cut off", func(t *testing.T) {
		cutOff(t, dialStatus(t, dir, site), 5*time.Second)
	})
	t.Run("a request larger than the limit is cut off", func(t *testing.T) {
		c := dialStatus(t, dir, site)
		go func() { _, _ = c.Write([]byte(`{"command":"` + strings.Repeat("x", statusMaxRequest) + `"}`)) }()
		cutOff(t, c, 5*time.Second)
	})
	t.Run("silent clients filling every slot only delay an answer", func(t *testing.T) {
		for range statusMaxConns + 4 {
			dialStatus(t, dir, site)
		}
		st, err := readStatus(stateDir(dir), site)
		if err != nil || st.PID != 42 {
			t.Fatalf("readStatus = %+v, %v", st, err)
		}
	})
	t.Run("unknown command", func(t *testing.T) {
		var ans map[string]string
		if err := statusCall(stateDir(dir), site, statusRequest{Command: "dance"}, 5*time.Second, &ans); err != nil || !strings.Contains(ans["error"], "unknown command") {
			t.Errorf("answer %v, %v", ans, err)
		}
	})
	t.Run("reload is refused when the agent cannot reload", func(t *testing.T) {
		var v ReloadVerdict
		if err := statusCall(stateDir(dir), site, statusRequest{Command: "reload"}, 5*time.Second, &v); err != nil || v.Result != ReloadRefused {
			t.Errorf("verdict %+v, %v", v, err)
		}
	})
}

func TestStatusSocketReload(t *testing.T) {
	h := statusHandlers{snapshot: func() Status { return Status{} }, reload: func(ctx context.Context) ReloadVerdict {
		return ReloadVerdict{Result: ReloadInvalid, PID: 7, File: "/etc/x.yaml", Errors: []string{"/etc/x.yaml:3:5: lan.mtu: out of range"}}
	}}
	dir, site := startTestStatus(t, h, time.Second)
	var v ReloadVerdict
	if err := statusCall(stateDir(dir), site, statusRequest{Command: "reload"}, 5*time.Second, &v); err != nil {
		t.Fatal(err)
	}
	if v.Result != ReloadInvalid || v.PID != 7 || len(v.Errors) != 1 {
		t.Errorf("verdict %+v", v)
	}
}

// TestLiveSiteRequestReload checks the hand-over between the status
// socket and the reload loop, and that a request gives up when asked.
func TestLiveSiteRequestReload(t *testing.T) {
	l := &liveSite{o: &options{config: "site.yaml"}, reloads: make(chan chan ReloadVerdict)}
	go func() {
		reply := <-l.reloads
		reply <- ReloadVerdict{Result: ReloadApplied}
	}()
	if v := l.requestReload(context.Background()); v.Result != ReloadApplied {
		t.Errorf("verdict %+v, want applied", v)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if v := l.requestReload(ctx); v.Result != ReloadRefused || !strings.Contains(v.Reason, "starting or stopping") {
		t.Errorf("verdict with nobody reloading: %+v", v)
	}
}

func TestStatusPermissionDenied(t *testing.T) {
	dir := t.TempDir()
	// A socket that is not one: connect fails with ECONNREFUSED, which is
	// "no running agent"; a permission failure is told apart.
	if _, err := readStatus(stateDir(dir), "s"); err == nil || !strings.Contains(err.Error(), "no running agent") {
		t.Errorf("no socket: %v", err)
	}
	err := statusDialError(filepath.Join(dir, "s.sock"), "s", &net.OpError{Op: "dial", Net: "unix", Err: errEACCES})
	if !strings.HasPrefix(err.Error(), "permission denied: run as root or with CAP_NET_ADMIN") {
		t.Errorf("EACCES: %v", err)
	}
}

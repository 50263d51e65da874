package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"time"

	"golang.org/x/net/netutil"

	"tunnel-agent/dataplane"
	"tunnel-agent/dataplane/wireguard"
	"tunnel-agent/internal/fstrust"
)

// Status is what the running agent reports on its status socket and what
// `tunnel-agent status --json` prints.
type Status struct {
	Site             string         `json:"site"`
	PID              int            `json:"pid"`
	Started          time.Time      `json:"started"`
	Listen           netip.AddrPort `json:"listen"`
	CaptureTruncated uint64         `json:"capture_truncated"`
	// CaptureGSODropped, CaptureKernelDrops and CaptureUnreadable are the
	// capture's other drops (status_capture.go).
	CaptureGSODropped  uint64 `json:"capture_gso_dropped"`
	CaptureKernelDrops uint64 `json:"capture_kernel_drops"`
	CaptureUnreadable  uint64 `json:"capture_unreadable"`
	// CaptureRebindFailures counts failed attempts to re-open the capture
	// on a re-created LAN interface; CaptureRebindFailing is true while
	// one is retried (nothing is captured then).
	CaptureRebindFailures uint64          `json:"capture_rebind_failures"`
	CaptureRebindFailing  bool            `json:"capture_rebind_failing,omitempty"`
	Dataplane             dataplane.Stats `json:"dataplane"`
	// WireGuard is set in wireguard mode (status_wireguard.go).
	WireGuard *wireguard.Stats `json:"wireguard,omitempty"`
	// Transport is the tunnel socket's counters in plain mode
	// (status_transport.go).
	Transport *TransportStatus `json:"transport,omitempty"`
}

// statusSource answers `tunnel-agent status` for a running tunnel.
type statusSource struct {
	site    string
	started time.Time
	tun     tunnel
	live    *liveSite // its capture re-binds (status_capture.go)
}

func (s *statusSource) snapshot() Status {
	st := s.tun.status()
	st.Site, st.PID, st.Started = s.site, os.Getpid(), s.started.UTC()
	return s.live.withRebinds(st)
}

// Bounds of the status socket. Only root can reach it (mode 0600 in a
// 0700 directory), but a stuck or broken client must neither stall the
// agent nor hold its descriptors.
const (
	statusMaxConns     = 8               // served at once; more wait in the kernel's queue
	statusReadTimeout  = 2 * time.Second // to send the request
	statusWriteTimeout = 5 * time.Second // to read the answer
	statusMaxRequest   = 4 << 10         // bytes of a request
	statusReloadWait   = 2 * time.Minute // for the verdict of a reload
	statusMaxAnswer    = 256 << 20       // bytes of an answer the client reads
)

// statusRequest is what a client sends on the status socket: one JSON
// object. Command is "status" (the default) or "reload".
type statusRequest struct {
	Command string `json:"command"`
}

// statusHandlers answer the commands of the status socket.
type statusHandlers struct {
	snapshot func() Status
	// reload asks the running agent to reload its file and returns its
	// verdict (reload.go); nil when the agent cannot.
	reload func(ctx context.Context) ReloadVerdict
}

// statusServer answers each connection on a unix socket with one JSON
// object, the answer to the request the client sent, and closes it. The
// socket is mode 0600 (root only) in the state directory (0700).
type statusServer struct {
	ln          net.Listener
	h           statusHandlers
	readTimeout time.Duration // statusReadTimeout; tests shorten it
	log         *slog.Logger
	ctx         context.Context // cancelled by Close: a waiting reload gives up
	cancel      context.CancelFunc
	wg          sync.WaitGroup
	done        chan struct{}

	mu    sync.Mutex
	conns map[net.Conn]bool
}

func serveStatus(path string, h statusHandlers, log *slog.Logger) (*statusServer, error) {
	_ = os.Remove(path) // a stale socket of a killed run; the site lock says none runs
	old := umask(0o177)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	umask(old)
	if err != nil {
		return nil, fmt.Errorf("listen on status socket %s: %w", path, err)
	}
	s := newStatusServer(ln, h, log)
	go s.serve()
	return s, nil
}

func newStatusServer(ln net.Listener, h statusHandlers, log *slog.Logger) *statusServer {
	ctx, cancel := context.WithCancel(context.Background())
	return &statusServer{ln: netutil.LimitListener(ln, statusMaxConns), h: h, readTimeout: statusReadTimeout,
		log: log, ctx: ctx, cancel: cancel, done: make(chan struct{}), conns: map[net.Conn]bool{}}
}

func (s *statusServer) serve() {
	defer close(s.done)
	for {
		c, err := s.ln.Accept()
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil {
			s.log.Warn("status socket accept", "err", err)
			time.Sleep(100 * time.Millisecond)
			continue
		}
		s.mu.Lock()
		s.conns[c] = true
		s.mu.Unlock()
		s.wg.Go(func() {
			s.answer(c)
			s.mu.Lock()
			delete(s.conns, c)
			s.mu.Unlock()
			c.Close()
		})
	}
}

// answer reads one request from c and writes the answer.
func (s *statusServer) answer(c net.Conn) {
	_ = c.SetReadDeadline(time.Now().Add(s.readTimeout))
	var req statusRequest
	if err := json.NewDecoder(io.LimitReader(c, statusMaxRequest)).Decode(&req); err != nil {
		s.log.Debug("status socket: no valid request", "err", err)
		return
	}
	var ans any
	switch req.Command {
	case "", "status":
		ans = s.h.snapshot()
	case "reload":
		if s.h.reload == nil {
			ans = ReloadVerdict{Result: ReloadRefused, PID: os.Getpid(), Reason: "this agent cannot reload"}
			break
		}
		ctx, cancel := context.WithTimeout(s.ctx, statusReloadWait)
		ans = s.h.reload(ctx)
		cancel()
	default:
		ans = map[string]string{"error": fmt.Sprintf("unknown command %q", req.Command)}
	}
	_ = c.SetWriteDeadline(time.Now().Add(statusWriteTimeout))
	_ = json.NewEncoder(c).Encode(ans)
}

// Close stops serving, cuts the clients off and removes the socket file.
func (s *statusServer) Close() {
	s.cancel()
	s.ln.Close() // also unlinks the socket file
	<-s.done
	s.mu.Lock()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// readStatus asks the agent of a site for its status.
func readStatus(stateDir stateDir, site string) (Status, error) {
	var st Status
	err := statusCall(stateDir, site, statusRequest{Command: "status"}, 5*time.Second, &st)
	return st, err
}

// statusCall sends req to the agent of a site and decodes its answer into
// ans, all within timeout.
func statusCall(stateDir stateDir, site string, req statusRequest, timeout time.Duration, ans any) error {
	path := stateDir.socket(site)
	if err := stateDir.check(); err != nil {
		return err
	}
	if err := fstrust.CheckSocket("status socket", path); err != nil {
		return err
	}
	c, err := net.DialTimeout("unix", path, 2*time.Second)
	if err != nil {
		return statusDialError(path, site, err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	if err := json.NewEncoder(c).Encode(req); err != nil {
		return fmt.Errorf("send %s request to %s: %w", req.Command, path, err)
	}
	if err := json.NewDecoder(io.LimitReader(c, statusMaxAnswer)).Decode(ans); err != nil {
		return fmt.Errorf("read the answer to %s from %s: %w", req.Command, path, err)
	}
	return nil
}

// statusDialError explains why the status socket at path could not be
// reached: no agent runs, or the caller may not reach it (EACCES, EPERM).
func statusDialError(path, site string, err error) error {
	if errors.Is(err, fs.ErrPermission) {
		return privilegeError{fmt.Errorf("connect to the status socket %s: %w", path, err)}
	}
	return fmt.Errorf("no running agent for site %q answers on %s: %w", site, path, err)
}

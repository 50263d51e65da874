package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"tunnel-agent/dataplane"
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
	CaptureGSODropped  uint64          `json:"capture_gso_dropped"`
	CaptureKernelDrops uint64          `json:"capture_kernel_drops"`
	CaptureUnreadable  uint64          `json:"capture_unreadable"`
	Dataplane          dataplane.Stats `json:"dataplane"`
	// WireGuard is set in wireguard mode (status_wireguard.go).
	WireGuard *dataplane.WireGuardStats `json:"wireguard,omitempty"`
	// Transport is the tunnel socket's counters in plain mode
	// (status_transport.go).
	Transport *TransportStatus `json:"transport,omitempty"`
}

type statusSource struct {
	site    string
	started time.Time
	listen  netip.AddrPort
	eng     *dataplane.Engine
	capture *dataplane.PacketCapture // as opened at start
	live    *liveSite                // re-binds the capture (status_capture.go); nil in tests
	wg      *dataplane.WireGuard     // wireguard mode: instead of eng
	// transport is the tunnel socket in plain mode (nil in wireguard mode).
	transport *dataplane.UDPTransport
}

func (s *statusSource) snapshot() Status {
	if s.wg != nil {
		return s.wireguardSnapshot()
	}
	return Status{Site: s.site, PID: os.Getpid(), Started: s.started.UTC(), Listen: s.listen,
		Dataplane: s.eng.Stats()}.withCapture(s.captureCounters()).withTransport(s.transport)
}

func statusPath(stateDir, site string) string {
	return filepath.Join(stateDir, site+".sock")
}

// statusServer answers every connection on a unix socket with one JSON
// Status and closes it. The socket is mode 0600 (root only) in the state
// directory (0700).
type statusServer struct {
	ln   *net.UnixListener
	done chan struct{}
}

func serveStatus(path string, snap func() Status, log *slog.Logger) (*statusServer, error) {
	_ = os.Remove(path) // a stale socket of a killed run; the site lock says none runs
	old := umask(0o177)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	umask(old)
	if err != nil {
		return nil, fmt.Errorf("listen on status socket %s: %w", path, err)
	}
	s := &statusServer{ln: ln, done: make(chan struct{})}
	go s.serve(snap, log)
	return s, nil
}

func (s *statusServer) serve(snap func() Status, log *slog.Logger) {
	defer close(s.done)
	for {
		c, err := s.ln.Accept()
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil {
			log.Warn("status socket accept", "err", err)
			time.Sleep(100 * time.Millisecond)
			continue
		}
		_ = c.SetWriteDeadline(time.Now().Add(2 * time.Second))
		_ = json.NewEncoder(c).Encode(snap())
		c.Close()
	}
}

// Close stops serving and removes the socket file.
func (s *statusServer) Close() {
	s.ln.Close() // also unlinks the socket file
	<-s.done
}

// readStatus asks the agent of a site for its status.
func readStatus(stateDir, site string) (Status, error) {
	var st Status
	path := statusPath(stateDir, site)
	c, err := net.DialTimeout("unix", path, 2*time.Second)
	if err != nil {
		return st, fmt.Errorf("no running agent for site %q answers on %s: %w", site, path, err)
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if err := json.NewDecoder(c).Decode(&st); err != nil {
		return st, fmt.Errorf("read status from %s: %w", path, err)
	}
	return st, nil
}

package agent

import (
	"errors"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"tunnel-agent/dataplane"
	"tunnel-agent/dataplane/afpacket"
)

// fakeTimers records the retries rebindRetry schedules instead of
// running them.
type fakeTimers struct {
	mu     sync.Mutex
	delays []time.Duration
	fns    []func()
}

func (f *fakeTimers) after(d time.Duration, fn func()) *time.Timer {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.delays, f.fns = append(f.delays, d), append(f.fns, fn)
	return time.NewTimer(time.Hour)
}

func TestRebindRetryBackoff(t *testing.T) {
	ft := &fakeTimers{}
	r := rebindRetry{after: ft.after}
	for range 10 {
		r.failed(7, func() {})
	}
	want := []time.Duration{200 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond, 1600 * time.Millisecond,
		3200 * time.Millisecond, 6400 * time.Millisecond, 12800 * time.Millisecond, 25600 * time.Millisecond, 30 * time.Second, 30 * time.Second}
	if !equalDurations(ft.delays, want) {
		t.Errorf("delays %v, want %v", ft.delays, want)
	}
	r.failed(8, func() {}) // the interface changed again: start over
	if d := ft.delays[len(ft.delays)-1]; d != rebindFirstRetry || r.attempts != 1 {
		t.Errorf("after a new interface: delay %v, attempts %d; want %v, 1", d, r.attempts, rebindFirstRetry)
	}
	r.reset()
	if r.failing() || r.failures != 11 {
		t.Errorf("after reset: failing %v, failures %d; want false, 11", r.failing(), r.failures)
	}
}

func equalDurations(a, b []time.Duration) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// The capture, transport and injector of an engine that never runs.
type (
	stubCapture   struct{}
	stubTransport struct{}
	stubInjector  struct{}
)

func (stubCapture) ReadBatch([][]byte, []int) (int, error) { return 0, errors.New("stub") }
func (stubCapture) Close() error                           { return nil }
func (stubTransport) ReadBatch([][]byte, []int, []netip.AddrPort) (int, error) {
	return 0, errors.New("stub")
}
func (stubTransport) WriteBatch([][]byte, []netip.AddrPort) (int, error) { return 0, nil }
func (stubTransport) LocalAddr() netip.AddrPort                          { return netip.AddrPort{} }
func (stubTransport) Close() error                                       { return nil }
func (stubInjector) WriteBatch([][]byte) (int, error)                    { return 0, nil }
func (stubInjector) Close() error                                        { return nil }

// TestRebindCaptureFailureRetried: the LAN interface has a new index but
// the capture cannot be opened (EMFILE in the report): the failure is
// logged, counted in status and metrics, and retried with backoff.
func TestRebindCaptureFailureRetried(t *testing.T) {
	eng, err := dataplane.New(dataplane.Config{LocalPrefixes: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/24")}, Peers: []dataplane.PeerConfig{{Name: "p", Prefixes: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/24")}}}},
		stubCapture{}, stubTransport{}, stubInjector{})
	if err != nil {
		t.Fatal(err)
	}
	var logBuf strings.Builder
	ft := &fakeTimers{}
	opens := 0
	l := &liveSite{o: &options{log: slog.New(slog.NewTextHandler(&logBuf, nil))}, met: newMetrics(), eng: eng,
		cfg: &Config{LAN: LAN{Interface: "lo"}}, capIdx: -1, // "lo" has another index now
		openCapture: func(string, []netip.Prefix, afpacket.Options) (*afpacket.Capture, error) {
			opens++
			return nil, errors.New("socket: too many open files")
		}}
	l.rebind.after = ft.after
	l.rebindCapture()
	ft.fns[0]() // the retry
	if opens != 2 || len(ft.delays) != 2 || ft.delays[1] != 2*rebindFirstRetry {
		t.Errorf("opens %d, retries scheduled after %v; want 2 opens, retries after 200ms then 400ms", opens, ft.delays)
	}
	if got := testutil.ToFloat64(l.met.rebindFailures); got != 2 {
		t.Errorf("metric capture_rebind_failures_total = %v, want 2", got)
	}
	cc, _ := l.captureCounters()
	if st := (Status{}).withCapture(cc); st.CaptureRebindFailures != 2 || !st.CaptureRebindFailing {
		t.Errorf("status: failures %d failing %v; want 2, true", st.CaptureRebindFailures, st.CaptureRebindFailing)
	}
	if !strings.Contains(logBuf.String(), "capture cannot be re-opened") || !strings.Contains(logBuf.String(), "too many open files") {
		t.Errorf("log:\n%s", logBuf.String())
	}
	// The capture is bound to the interface again (say, it was re-created
	// once more with the old index): the retries stop.
	l.capIdx = ifindex("lo")
	l.rebindCapture()
	if cc, _ := l.captureCounters(); cc.rebindFailing || l.rebind.timer != nil || opens != 2 {
		t.Errorf("after the interface came back: failing %v, timer %v, opens %d", cc.rebindFailing, l.rebind.timer, opens)
	}
}

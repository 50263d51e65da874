package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"tunnel-agent/agent/config"
	"tunnel-agent/dataplane"
	"tunnel-agent/dataplane/afpacket"
	"tunnel-agent/dataplane/dptest"
	"tunnel-agent/netcfg"
	"tunnel-agent/netcfg/netcfgtest"
)

// fakeSystem is a machine in memory for the agent's tests (system.go):
// its host is a netcfgtest.Host, which is also what validation and the
// LAN lookups read; plain mode's packet paths are dptest fakes on a
// dptest.Network that several sites share; signals, the service
// manager's notifications and the reload check are the test's to drive
// and read. Nothing in it needs root.
type fakeSystem struct {
	host *netcfgtest.Host
	net  *dptest.Network
	wan  netip.Addr // the address of a transport that listens on an unspecified one

	mu         sync.Mutex
	captures   []*fakeCapture
	injectors  []*dptest.Injector
	transports []*dptest.Transport
	captureErr error // openCapture fails with it
	opens      int   // openCapture's calls
	sigs       map[chan os.Signal][]os.Signal
	states     []string      // notify's, in order
	changed    chan struct{} // closed (and replaced) when one of the above changes
}

var _ system = (*fakeSystem)(nil)

func newFakeSystem(host *netcfgtest.Host, net *dptest.Network, wan netip.Addr) *fakeSystem {
	return &fakeSystem{host: host, net: net, wan: wan, sigs: map[chan os.Signal][]os.Signal{}, changed: make(chan struct{})}
}

// event records a change for waitFor (f.mu held).
func (f *fakeSystem) eventLocked() {
	close(f.changed)
	f.changed = make(chan struct{})
}

// waitFor waits until cond holds, or fails the test after a while. It
// wakes on the fake's events and polls besides (cond may read what the
// fake does not record: the host, the agent's status). cond is called
// without f.mu; what it reads of the fake it reads under f.mu (locked).
func (f *fakeSystem) waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.After(20 * time.Second)
	poll := time.NewTicker(5 * time.Millisecond)
	defer poll.Stop()
	for {
		f.mu.Lock()
		changed := f.changed
		f.mu.Unlock()
		if cond() {
			return
		}
		select {
		case <-changed:
		case <-poll.C:
		case <-deadline:
			t.Fatalf("gave up waiting for %s", what)
		}
	}
}

// locked returns what read returns, read under f.mu.
func locked[T any](f *fakeSystem, read func() T) T {
	f.mu.Lock()
	defer f.mu.Unlock()
	return read()
}

// notified counts the notifications of state (its first line).
func (f *fakeSystem) notified(state string) int {
	return locked(f, func() int {
		n := 0
		for _, s := range f.states {
			if s == state || strings.HasPrefix(s, state+"\n") {
				n++
			}
		}
		return n
	})
}

// signal delivers sig as the kernel would: to every channel registered
// for it, dropped when the channel's buffer is full.
func (f *fakeSystem) signal(sig os.Signal) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for c, sigs := range f.sigs {
		if slices.Contains(sigs, sig) {
			select {
			case c <- sig:
			default:
			}
		}
	}
}

// capture returns the i-th capture opened (the first, then each re-bind's).
func (f *fakeSystem) capture(t *testing.T, i int) *fakeCapture {
	t.Helper()
	f.waitFor(t, fmt.Sprintf("capture #%d", i), func() bool { return locked(f, func() int { return len(f.captures) }) > i })
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.captures[i]
}

// injector returns the injector the tunnel opened.
func (f *fakeSystem) injector(t *testing.T) *dptest.Injector {
	t.Helper()
	f.waitFor(t, "an injector", func() bool { return locked(f, func() int { return len(f.injectors) }) > 0 })
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.injectors[len(f.injectors)-1]
}

// ---- hostSystem ----

// fakeSiteHost is the fake host as a siteHost.
type fakeSiteHost struct{ *netcfgtest.Host }

func (fakeSiteHost) Close() {}

func (f *fakeSystem) openHost() (siteHost, error) { return fakeSiteHost{f.host}, nil }

func (f *fakeSystem) journalHost(*netcfg.Journal, *slog.Logger) (siteHost, error) {
	return fakeSiteHost{f.host}, nil // Revert refuses a journal of another namespace
}

func (f *fakeSystem) selfNetNS() (netcfg.NetNSID, error) { return f.host.NetNS() }

// ---- namespaceReader: the host's namespace "" ----

func (f *fakeSystem) linkExists(name string) bool {
	_, ok := f.host.LinkState("", name)
	return ok
}

func (f *fakeSystem) addrs() ([]config.HostAddr, error) {
	byLink, err := f.host.Addrs("")
	if err != nil {
		return nil, err
	}
	var out []config.HostAddr
	for _, link := range slices.Sorted(maps.Keys(byLink)) {
		for _, p := range byLink[link] {
			out = append(out, config.HostAddr{Link: link, Prefix: p})
		}
	}
	return out, nil
}

func (f *fakeSystem) defaultRoutes() ([]config.HostRoute, error) {
	var out []config.HostRoute
	for _, v6 := range []bool{false, true} {
		rs, err := f.host.Routes("", v6)
		if err != nil {
			return nil, err
		}
		for _, r := range rs {
			if r.Dst.Bits() == 0 {
				out = append(out, config.HostRoute{Dst: r.Dst, Gw: r.Gw, Dev: r.Dev})
			}
		}
	}
	return out, nil
}

func (f *fakeSystem) linkIndex(name string) (int, error) {
	l, _ := f.host.LinkState("", name)
	return l.Index, nil
}

func (f *fakeSystem) linkMTU(name string) int {
	l, _ := f.host.LinkState("", name)
	return l.MTU
}

func (f *fakeSystem) linkAddrs(name string) ([]netip.Prefix, error) {
	l, ok := f.host.LinkState("", name)
	if !ok {
		return nil, fmt.Errorf("LAN interface %s: %w", name, netcfg.ErrNotFound)
	}
	return l.Addrs, nil
}

// ---- plainIO: the dptest fakes ----

// fakeCapture is a dptest.Capture as a lanCapture: it records the
// prefixes it takes, and the test sets its counters.
type fakeCapture struct {
	*dptest.Capture
	lan       string
	truncated atomic.Uint64
	closed    atomic.Bool

	mu       sync.Mutex
	prefixes []netip.Prefix
}

func (c *fakeCapture) SetPrefixes(p []netip.Prefix) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.prefixes = slices.Clone(p)
	return nil
}

func (c *fakeCapture) Close() error {
	c.closed.Store(true)
	return c.Capture.Close()
}

// takes returns the prefixes the capture takes.
func (c *fakeCapture) takes() []netip.Prefix {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.prefixes)
}

func (c *fakeCapture) counters() captureCounters {
	return captureCounters{truncated: c.truncated.Load() + c.Dropped.Load()}
}

// fakeTransport is a dptest.Transport as a tunnelTransport.
type fakeTransport struct{ *dptest.Transport }

func (t fakeTransport) status() *TransportStatus {
	return &TransportStatus{Truncated: t.Dropped.Load()}
}

func (f *fakeSystem) openCapture(lan string, prefixes []netip.Prefix, _ afpacket.Options) (lanCapture, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.opens++
	if f.captureErr != nil {
		return nil, f.captureErr
	}
	c := &fakeCapture{Capture: dptest.NewCapture(), lan: lan, prefixes: slices.Clone(prefixes)}
	f.captures = append(f.captures, c)
	f.eventLocked()
	return c, nil
}

func (f *fakeSystem) openInjector() (dataplane.Injector, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	inj := dptest.NewInjector()
	f.injectors = append(f.injectors, inj)
	f.eventLocked()
	return inj, nil
}

func (f *fakeSystem) listenUDP(addr netip.AddrPort) (tunnelTransport, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if addr.Addr().IsUnspecified() {
		addr = netip.AddrPortFrom(f.wan, addr.Port())
	}
	t := f.net.Listen(addr)
	f.transports = append(f.transports, t)
	f.eventLocked()
	return fakeTransport{t}, nil
}

func (f *fakeSystem) pathMTU(netip.Addr) (int, error) { return 1500, nil }

// ---- process ----

func (f *fakeSystem) signals(sig ...os.Signal) (<-chan os.Signal, func()) {
	c := make(chan os.Signal, 1)
	f.mu.Lock()
	f.sigs[c] = sig
	f.mu.Unlock()
	return c, func() {
		f.mu.Lock()
		delete(f.sigs, c)
		f.mu.Unlock()
	}
}

func (f *fakeSystem) notify(state string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.states = append(f.states, state)
	f.eventLocked()
	return nil
}

// checkFile checks the file in this process, as the child would in its.
func (f *fakeSystem) checkFile(_ context.Context, file string) error {
	_, err := config.Load(file, hostLinks{sys: f})
	return err
}

func (f *fakeSystem) lookup(context.Context, string) ([]netip.Addr, error) {
	return nil, errors.New("no resolver in this test")
}

// plainForTest opens plain mode's tunnel for cfg on a fake system (its
// engine is not running).
func plainForTest(t *testing.T, cfg *config.Config, log *slog.Logger) (*plainTunnel, *fakeSystem, *options) {
	t.Helper()
	sys := newFakeSystem(netcfgtest.New(), dptest.NewNetwork(), netip.MustParseAddr("198.18.0.1"))
	o := &options{log: log, sys: sys}
	tun, err := openPlain(cfg, engineConfig(cfg, nil, o), sys, log)
	if err != nil {
		t.Fatal(err)
	}
	return tun, sys, o
}

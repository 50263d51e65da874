package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"tunnel-agent/agent/config"
	"tunnel-agent/dataplane/dptest"
	"tunnel-agent/netcfg"
	"tunnel-agent/netcfg/netcfgtest"
)

// The agent's life cycle in memory, in the manner of Nebula's e2e tests
// over fake connections: `up`, `reload`, `status` and `down` run through
// the command line (dispatch) on fake systems (fakesystem_test.go), two
// sites in one process exchanging packets over a dptest.Network. The host
// is a netcfgtest.Host, compared whole before and after. No root, no
// sleeps: every wait is on a condition, with a deadline. The real paths
// (netlink, sockets, signals, the child check) are the e2e tests'.

var (
	wanA = netip.MustParseAddr("198.18.0.1")
	wanB = netip.MustParseAddr("198.18.0.2")
)

// clientYAML is the tutorial's client side: its LAN lan0 on the host,
// whose MTU the agent lowers; the server is at wanB.
const clientYAML = `site: client
lan: {interface: lan0, mtu: 1420}
tunnel:
  listen: 0.0.0.0:60000
  peers:
    - name: server
      endpoint: 198.18.0.2:50000
      prefixes: [11.11.11.0/24]
`

// serverYAML is the tutorial's VPS: the agent builds ns1 behind
// veth0/veth1; the client's endpoint is learned.
const serverYAML = `site: server
lan: {interface: veth0}
namespaces:
  - name: ns1
    veth: {host: veth0, peer: veth1, mtu: 1420, offloads: {rx: off, tx: off}}
    host_address: 11.11.11.1/24
    address: 11.11.11.100/24
    gateway: 11.11.11.1
tunnel:
  listen: 0.0.0.0:50000
  peers:
    - name: client
      prefixes: [192.168.111.0/24]
`

// hostWithWAN is a booted host: eth0 with wan/24 and the default route.
func hostWithWAN(t *testing.T, wan netip.Addr) *netcfgtest.Host {
	h := netcfgtest.New()
	h.AddLink(t, "", "eth0", "device", 1500, true)
	gw := wan.As4()
	gw[3] = 254
	h.Must(t,
		h.AddAddr("", "eth0", netip.PrefixFrom(wan, 24)),
		h.ReplaceRoute("", netcfg.RouteSpec{Dst: netip.MustParsePrefix("0.0.0.0/0"), Gw: netip.AddrFrom4(gw),
			Type: netcfg.RouteUnicast, Protocol: 4}))
	return h
}

// clientHost is the client's host: the WAN and lan0 with its /24.
func clientHost(t *testing.T) *netcfgtest.Host {
	h := hostWithWAN(t, wanA)
	h.AddLink(t, "", "lan0", "device", 1500, true)
	h.Must(t, h.AddAddr("", "lan0", netip.MustParsePrefix("192.168.111.1/24")))
	return h
}

// testSite is one site's agent: its fake system, file and state
// directory, and the `up` running on them.
type testSite struct {
	t        *testing.T
	sys      *fakeSystem
	file     string
	stateDir string
	before   string // the host's dump before `up`
	logs     *syncBuffer
	exited   chan error // `up`'s result; netcfgtest.ErrKilled when it was killed
}

// newTestSite writes yaml as the site's file, next to its state
// directory.
func newTestSite(t *testing.T, host *netcfgtest.Host, net *dptest.Network, wan netip.Addr, yaml string) *testSite {
	dir := t.TempDir()
	s := &testSite{t: t, sys: newFakeSystem(host, net, wan), file: filepath.Join(dir, "site.yaml"),
		stateDir: filepath.Join(dir, "state"), before: host.Dump(), logs: &syncBuffer{}}
	s.write(yaml)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("log of %s:\n%s", s.file, s.logs.String())
		}
	})
	return s
}

func (s *testSite) write(yaml string) {
	if err := os.WriteFile(s.file, []byte(yaml), 0o600); err != nil {
		s.t.Fatal(err)
	}
}

// run runs a command of the site's (with -c and --state-dir) to the end
// and returns its output and error; a simulated kill comes back as
// netcfgtest.ErrKilled.
func (s *testSite) run(args ...string) (out string, err error) {
	var stdout syncBuffer
	o := &options{stdout: &stdout, stderr: s.logs, sys: s.sys}
	defer func() {
		if p := recover(); p != nil {
			if p != netcfgtest.ErrKilled {
				panic(p)
			}
			out, err = stdout.String(), netcfgtest.ErrKilled
		}
	}()
	err = dispatch(append(args, "-c", s.file, "--state-dir", s.stateDir), o)
	return stdout.String(), err
}

// up starts `up` and waits until it says it is ready (READY=1).
func (s *testSite) up() {
	s.t.Helper()
	s.exited = make(chan error, 1)
	go func() {
		_, err := s.run("up")
		s.exited <- err
	}()
	s.waitReady(1)
}

// waitReady waits for the n-th READY=1 (the first says `up` is running,
// each reload ends with one).
func (s *testSite) waitReady(n int) {
	s.t.Helper()
	var exited error
	gone := false
	s.sys.waitFor(s.t, fmt.Sprintf("READY=1 #%d", n), func() bool {
		select {
		case exited, gone = <-s.exited:
			return true
		default:
		}
		return s.sys.notified("READY=1") >= n
	})
	if gone {
		s.t.Fatalf("up exited: %v", exited)
	}
}

// stop sends SIGTERM and returns `up`'s result.
func (s *testSite) stop() error {
	s.t.Helper()
	s.sys.signal(syscall.SIGTERM)
	select {
	case err := <-s.exited:
		return err
	case <-time.After(20 * time.Second):
		s.t.Fatal("up did not stop within 20 s of SIGTERM")
		return nil
	}
}

// status asks the running agent for its status, as `status --json` does.
func (s *testSite) status() Status {
	s.t.Helper()
	out, err := s.run("status", "--json")
	var st Status
	if err == nil {
		err = json.Unmarshal([]byte(out), &st)
	}
	if err != nil {
		s.t.Fatalf("status: %v\n%s", err, out)
	}
	return st
}

// checkRestored fails unless the host is as before `up` and no journal
// is left.
func (s *testSite) checkRestored(what string) {
	s.t.Helper()
	if got := s.sys.host.Dump(); got != s.before {
		s.t.Errorf("%s: host\n%s\nwant as before:\n%s", what, got, s.before)
	}
	if _, err := os.Stat(stateDir(s.stateDir).journal(siteName(s.file))); !errors.Is(err, os.ErrNotExist) {
		s.t.Errorf("%s: journal left (%v)", what, err)
	}
}

// siteName reads the site's name from its file.
func siteName(file string) string {
	cfg, err := config.Load(file, nil)
	if err != nil {
		return ""
	}
	return cfg.Site
}

// send puts an echo request from src to dst on capture c (as if it
// arrived on the LAN) and waits for it to come out of inj.
func send(t *testing.T, c *fakeCapture, inj *dptest.Injector, src, dst string) {
	t.Helper()
	pkt := dptest.EchoRequest(netip.MustParseAddr(src), netip.MustParseAddr(dst), 7, 1, 32)
	if !c.Send(pkt) {
		t.Fatalf("%s -> %s: the capture is closed", src, dst)
	}
	got, err := inj.Recv(10 * time.Second)
	if err != nil {
		t.Fatalf("%s -> %s: %v", src, dst, err)
	}
	if len(got) != len(pkt) || !slices.Equal(got[12:20], pkt[12:20]) {
		t.Fatalf("%s -> %s: injected % x, want the packet sent", src, dst, got)
	}
}

// twoSites starts the client and the server on one network.
func twoSites(t *testing.T) (client, server *testSite) {
	net := dptest.NewNetwork()
	client = newTestSite(t, clientHost(t), net, wanA, clientYAML)
	server = newTestSite(t, hostWithWAN(t, wanB), net, wanB, serverYAML)
	client.up()
	server.up()
	return client, server
}

// TestLifecycleTwoSites: `up` configures each host as its file says,
// packets cross the tunnel both ways (the server learns the client's
// endpoint from its first), status counts them, and SIGTERM reverts each
// host exactly.
func TestLifecycleTwoSites(t *testing.T) {
	client, server := twoSites(t)
	if l, _ := client.sys.host.LinkState("", "lan0"); l.MTU != 1420 {
		t.Errorf("client lan0 MTU %d, want 1420", l.MTU)
	}
	if r, err := client.sys.host.Route("", netip.MustParsePrefix("11.11.11.0/24")); err != nil || r.Type != netcfg.RouteBlackhole {
		t.Errorf("client blackhole: %+v, %v", r, err)
	}
	if l, ok := server.sys.host.LinkState("ns1", "veth1"); !ok || !l.Up || !slices.Contains(l.Addrs, netip.MustParsePrefix("11.11.11.100/24")) {
		t.Errorf("server ns1/veth1: %+v, %v", l, ok)
	}
	send(t, client.sys.capture(t, 0), server.sys.injector(t), "192.168.111.10", "11.11.11.100")
	send(t, server.sys.capture(t, 0), client.sys.injector(t), "11.11.11.100", "192.168.111.10")
	var st Status
	client.sys.waitFor(t, "the client's counters", func() bool { // a packet is counted once it is sent
		st = client.status()
		return st.Site == "client" && len(st.Dataplane.Peers) == 1 && st.Dataplane.Peers[0].TxPackets == 1 && st.Dataplane.Peers[0].RxPackets == 1
	})
	if ep := server.status().Dataplane.Peers[0].CurrentEndpoint; ep != netip.AddrPortFrom(wanA, 60000) {
		t.Errorf("server learned the client at %v", ep)
	}
	for _, s := range []*testSite{client, server} {
		if err := s.stop(); err != nil {
			t.Errorf("up: %v", err)
		}
		s.checkRestored("after SIGTERM")
	}
}

// TestLifecycleApplyFaults: `up` on the server's host with a fault at
// each step of Apply fails and leaves the host as it was; killed at each
// step (before or after the change), it leaves a journal from which
// `down` restores the host.
func TestLifecycleApplyFaults(t *testing.T) {
	s := newTestSite(t, hostWithWAN(t, wanB), dptest.NewNetwork(), wanB, serverYAML)
	plan, err := s.run("check")
	if err != nil {
		t.Fatalf("check: %v", err)
	}
	s.up()
	steps := len(s.sys.host.MutatingCalls())
	if err := s.stop(); err != nil || steps < 10 {
		t.Fatalf("clean run: %d steps, up: %v", steps, err)
	}
	s.checkRestored("clean run")
	if want := fmt.Sprintf("valid. Site %q, %d host changes", "server", steps); !strings.Contains(plan, want) {
		t.Errorf("check printed\n%s\nwant %q: one change per step of up", plan, want)
	}
	for n := 1; n <= steps; n++ {
		s.sys.host.Must(t)
		s.sys.host.FailAt(n)
		_, err := s.run("up")
		if !errors.Is(err, netcfgtest.ErrInjected) || !strings.Contains(err.Error(), "configure host") {
			t.Errorf("fault at step %d: up = %v, want the injected fault", n, err)
		}
		s.checkRestored(fmt.Sprintf("fault at step %d", n))
		for _, after := range []bool{false, true} {
			s.sys.host.Must(t)
			s.sys.host.KillAt(n, after)
			if _, err := s.run("up"); err != netcfgtest.ErrKilled {
				t.Fatalf("kill at step %d (after: %v): up = %v", n, after, err)
			}
			s.sys.host.ClearFaults()
			out, err := s.run("down")
			if err != nil || !strings.Contains(out, "reverted") {
				t.Errorf("down after a kill at step %d (after: %v): %v\n%s", n, after, err, out)
			}
			s.checkRestored(fmt.Sprintf("down after a kill at step %d (after: %v)", n, after))
		}
		s.sys.host.ClearFaults()
	}
}

// TestLifecycleKilledWhileRunning: an agent killed while it reverts
// leaves its journal; `down` reverts the rest, and a later `up` would
// find nothing left over.
func TestLifecycleKilledWhileRunning(t *testing.T) {
	s := newTestSite(t, hostWithWAN(t, wanB), dptest.NewNetwork(), wanB, serverYAML)
	s.up()
	s.sys.host.Must(t)
	s.sys.host.KillAt(3, false)
	if err := s.stop(); err != netcfgtest.ErrKilled {
		t.Fatalf("up = %v, want it killed", err)
	}
	s.sys.host.ClearFaults()
	if got := s.sys.host.Dump(); got == s.before {
		t.Fatal("the kill came after the revert")
	}
	out, err := s.run("down")
	if err != nil || !strings.Contains(out, "site server: reverted") {
		t.Fatalf("down: %v\n%s", err, out)
	}
	s.checkRestored("down")
	if out, err := s.run("down"); err != nil || !strings.Contains(out, "nothing to revert") {
		t.Errorf("second down: %v\n%s", err, out)
	}
}

// TestLifecycleReload: a changed file is applied while the server runs
// (a new peer with its prefix and blackhole, another prefix for the
// client), through `tunnel-agent reload` and through SIGHUP; an invalid
// file and a change that needs a restart are refused with the running
// configuration untouched.
func TestLifecycleReload(t *testing.T) {
	client, server := twoSites(t)
	send(t, client.sys.capture(t, 0), server.sys.injector(t), "192.168.111.10", "11.11.11.100") // the server learns the client's endpoint
	branch := server.sys.net.Listen(netip.MustParseAddrPort("198.18.0.3:60000"))
	changed := strings.Replace(serverYAML, "      prefixes: [192.168.111.0/24]\n",
		"      prefixes: [192.168.111.0/24, 192.168.112.0/24]\n"+
			"    - name: branch\n      endpoint: 198.18.0.3:60000\n      prefixes: [10.9.0.0/24]\n", 1)
	server.write(changed)
	out, err := server.run("reload")
	if err != nil || !strings.Contains(out, "added: branch") {
		t.Fatalf("reload: %v\n%s", err, out)
	}
	host := server.sys.host
	for _, p := range []string{"192.168.112.0/24", "10.9.0.0/24"} {
		if r, err := host.Route("", netip.MustParsePrefix(p)); err != nil || r.Type != netcfg.RouteBlackhole || r.Protocol != netcfg.RouteProtocol {
			t.Errorf("blackhole %s after the reload: %+v, %v", p, r, err)
		}
	}
	capture := server.sys.capture(t, 0)
	if got := fmt.Sprint(capture.takes()); got != "[192.168.111.0/24 192.168.112.0/24 10.9.0.0/24]" {
		t.Errorf("the capture takes %s", got)
	}
	pkt := dptest.EchoRequest(netip.MustParseAddr("11.11.11.100"), netip.MustParseAddr("10.9.0.5"), 7, 1, 32)
	capture.Send(pkt)
	for { // after the new peer's first keepalive
		d, err := branch.Recv(10 * time.Second)
		if err != nil {
			t.Fatalf("to the new peer: %v", err)
		}
		if len(d.Data) == len(pkt) && slices.Equal(d.Data[12:20], pkt[12:20]) {
			break
		}
	}
	applied := host.Dump()

	// Valid as a file, invalid on this host (the agent checks that): the
	// prefix's blackhole route would take the host's default gateway.
	server.write(strings.Replace(changed, "[10.9.0.0/24]", "[10.9.0.0/24, 198.18.0.252/30]", 1))
	out, err = server.run("reload")
	var ee exitError
	if !errors.As(err, &ee) || ee.code != ExitUsage || !strings.Contains(err.Error(), "tunnel.peers[1].prefixes[1]: 198.18.0.252/30 contains the gateway") {
		t.Errorf("reload of an invalid file: %v\n%s", err, out)
	}
	server.write(strings.Replace(changed, "0.0.0.0:50000", "0.0.0.0:50001", 1))
	if _, err := server.run("reload"); err == nil || !strings.Contains(err.Error(), "restart the agent") {
		t.Errorf("reload of a new listen port: %v", err)
	}
	if got := host.Dump(); got != applied {
		t.Errorf("refused reloads changed the host:\n%s\nwant:\n%s", got, applied)
	}

	server.write(serverYAML) // back, on SIGHUP
	server.sys.signal(syscall.SIGHUP)
	server.waitReady(5) // up, then four reloads
	if _, err := host.Route("", netip.MustParsePrefix("10.9.0.0/24")); !errors.Is(err, netcfg.ErrNotFound) {
		t.Errorf("blackhole of the removed peer after SIGHUP: %v", err)
	}
	send(t, server.sys.capture(t, 0), client.sys.injector(t), "11.11.11.100", "192.168.111.10") // the client kept its endpoint
	for _, s := range []*testSite{client, server} {
		if err := s.stop(); err != nil {
			t.Errorf("up: %v", err)
		}
		s.checkRestored("after the reloads")
	}
}

// TestLifecycleCaptureRebind: the client's LAN interface deleted and made
// again (a new index): the watcher puts its MTU back, the capture is
// re-opened on it (after a failed attempt, retried) with the counters of
// the old one carried, and packets flow again.
func TestLifecycleCaptureRebind(t *testing.T) {
	client, server := twoSites(t)
	first := client.sys.capture(t, 0)
	send(t, first, server.sys.injector(t), "192.168.111.10", "11.11.11.100")
	first.truncated.Store(3)
	host := client.sys.host
	client.sys.mu.Lock()
	client.sys.captureErr = errors.New("socket: too many open files")
	client.sys.mu.Unlock()
	host.Must(t, host.DeleteLink("", "lan0"))
	host.AddLink(t, "", "lan0", "device", 1500, true)
	host.Must(t, host.AddAddr("", "lan0", netip.MustParsePrefix("192.168.111.1/24")))
	client.sys.waitFor(t, "a failed re-bind in the status", func() bool {
		st := client.status()
		return st.CaptureRebindFailing && st.CaptureRebindFailures > 0
	})
	client.sys.mu.Lock()
	client.sys.captureErr = nil
	client.sys.mu.Unlock()
	second := client.sys.capture(t, 1) // the retry
	client.sys.waitFor(t, "the re-bind", func() bool { return first.closed.Load() && !client.status().CaptureRebindFailing })
	client.sys.waitFor(t, "lan0's MTU put back", func() bool {
		l, _ := host.LinkState("", "lan0")
		return l.MTU == 1420
	})
	send(t, second, server.sys.injector(t), "192.168.111.10", "11.11.11.100")
	if st := client.status(); st.CaptureTruncated != 3 || st.CaptureRebindFailing {
		t.Errorf("status after the re-bind: truncated %d (want the old capture's 3), failing %v", st.CaptureTruncated, st.CaptureRebindFailing)
	}
	for _, s := range []*testSite{client, server} {
		if err := s.stop(); err != nil {
			t.Errorf("up: %v", err)
		}
		s.checkRestored("after the re-bind")
	}
}

// syncBuffer is a bytes.Buffer safe for concurrent use (logs, output).
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

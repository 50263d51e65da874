package e2e

import (
	"fmt"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netns"

	"tunnel-agent/internal/nstest"
	"tunnel-agent/internal/nsutil"
)

// vpsSite is the tutorial's server side in a throwaway namespace: the
// test's "VPS" namespace stands in for the host, and the agent builds
// the namespace ns1 (a unique name) behind veth0/veth1 itself.
type vpsSite struct {
	host   *nstest.NS
	prefix string // every named namespace of this test starts with it
	ns1    string
	dir    string
}

func newVPSSite(t *testing.T) *vpsSite {
	host := nstest.New(t, "tae2e")
	s := &vpsSite{host: host, prefix: host.Name, ns1: host.Name + "n1", dir: t.TempDir()}
	// The agent removes ns1 itself; this is for a test that fails half-way.
	t.Cleanup(func() { _ = netns.DeleteNamed(s.ns1) })
	return s
}

func (s *vpsSite) config(t *testing.T, extra string) string {
	return writeFile(t, s.dir, "server.yaml", fmt.Sprintf(`
site: server
lan:
  interface: veth0
  mtu: 1420
  offloads: {rx: off, tx: off}
namespaces:
  - name: %s
    veth: {host: veth0, peer: veth1, mtu: 1420, offloads: {rx: off, tx: off%s}}
    host_address: 11.11.11.1/24
    address: 11.11.11.100/24
    gateway: 11.11.11.1
tunnel:
  listen: 127.0.0.1:50000
  peers:
    - name: client
      prefixes: [192.168.111.2/32]
  blackhole: [192.168.111.0/30]
`, s.ns1, extra))
}

func (s *vpsSite) args(cmd, cfg string) []string {
	return []string{cmd, "-c", cfg, "--state-dir", s.dir + "/state"}
}

func (s *vpsSite) state(t *testing.T) string { return hostState(t, s.host, s.prefix) }

// nsState dumps the agent-created ns1.
func (s *vpsSite) ns1State(t *testing.T) string {
	t.Helper()
	h, err := netns.GetFromName(s.ns1)
	if err != nil {
		t.Fatalf("open %s: %v", s.ns1, err)
	}
	defer h.Close()
	return hostState(t, &nstest.NS{Name: s.ns1, Handle: h}, "-")
}

func wantLines(t *testing.T, where, dump string, lines ...string) {
	t.Helper()
	for _, l := range lines {
		if !strings.Contains(dump, l) {
			t.Errorf("%s lacks %q; dump:\n%s", where, l, dump)
		}
	}
}

// assertTutorialState checks that the running agent made the host look as
// the tutorial's manual commands do.
func (s *vpsSite) assertTutorialState(t *testing.T) {
	t.Helper()
	wantLines(t, "host", s.state(t),
		"link veth0 type=veth mtu=1420 flags=up",
		"addr veth0 11.11.11.1/24",
		"feature veth0 rx-checksum=false",
		"feature veth0 tx-checksum-ip-generic=false",
		"route table=254 dst=192.168.111.0/30 gw=<nil> dev= type=6 proto=227",
		"namespaces "+s.prefix+","+s.ns1)
	wantLines(t, "ns1", s.ns1State(t),
		"link veth1 type=veth mtu=1420 flags=up",
		"link lo type=device mtu=65536 flags=up|loopback",
		"addr veth1 11.11.11.100/24",
		"feature veth1 rx-checksum=false",
		"feature veth1 tx-checksum-ip-generic=false",
		"route table=254 dst=0.0.0.0/0 gw=11.11.11.1 dev=veth1 type=1 proto=227")
}

// assertNS1Reaches dials from ns1 to a TCP listener on 11.11.11.1 in the
// host namespace: the veth pair, addresses and links work.
func (s *vpsSite) assertNS1Reaches(t *testing.T) {
	t.Helper()
	var ln net.Listener
	if err := s.host.Do(func() (err error) { ln, err = net.Listen("tcp4", "11.11.11.1:0"); return }); err != nil {
		t.Fatalf("listen on 11.11.11.1: %v", err)
	}
	defer ln.Close()
	h, err := netns.GetFromName(s.ns1)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	err = nsutil.Do(h, func() error {
		c, err := net.DialTimeout("tcp4", ln.Addr().String(), 3*time.Second)
		if err == nil {
			c.Close()
		}
		return err
	})
	if err != nil {
		t.Errorf("connect from ns1 to %s: %v", ln.Addr(), err)
	}
}

func TestUpSIGINTRevertsEverything(t *testing.T) {
	s := newVPSSite(t)
	cfg := s.config(t, "")
	before := s.state(t)
	a := startAgent(t, s.host.Name, s.args("up", cfg)...)
	s.assertTutorialState(t)
	s.assertNS1Reaches(t)
	if code := a.stop(t, syscall.SIGINT); code != 0 {
		t.Fatalf("agent exit code after SIGINT = %d, want 0:\n%s", code, a.out.String())
	}
	assertSameState(t, "after SIGINT", before, s.state(t))
}

func TestSIGTERMRevertsEverything(t *testing.T) {
	s := newVPSSite(t)
	before := s.state(t)
	a := startAgent(t, s.host.Name, s.args("up", s.config(t, ""))...)
	if code := a.stop(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("exit code after SIGTERM = %d:\n%s", code, a.out.String())
	}
	assertSameState(t, "after SIGTERM", before, s.state(t))
}

func TestKillThenDown(t *testing.T) {
	s := newVPSSite(t)
	cfg := s.config(t, "")
	before := s.state(t)
	a := startAgent(t, s.host.Name, s.args("up", cfg)...)
	a.stop(t, syscall.SIGKILL)
	if s.state(t) == before {
		t.Fatal("state after SIGKILL equals state before: the agent changed nothing?")
	}
	out, code := runAgent(t, s.host.Name, s.args("down", cfg)...)
	if code != 0 {
		t.Fatalf("down exit %d:\n%s", code, out)
	}
	assertSameState(t, "after SIGKILL + down", before, s.state(t))
	out, code = runAgent(t, s.host.Name, s.args("down", cfg)...)
	if code != 0 || !strings.Contains(out, "nothing to revert") {
		t.Fatalf("second down: exit %d, want 0 and 'nothing to revert':\n%s", code, out)
	}
	assertSameState(t, "after second down", before, s.state(t))
}

func TestUpAfterKillRevertsLeftoverFirst(t *testing.T) {
	s := newVPSSite(t)
	cfg := s.config(t, "")
	before := s.state(t)
	startAgent(t, s.host.Name, s.args("up", cfg)...).stop(t, syscall.SIGKILL)
	a := startAgent(t, s.host.Name, s.args("up", cfg)...)
	if !strings.Contains(a.out.String(), "did not exit cleanly") {
		t.Errorf("second up did not say it reverts the leftover journal:\n%s", a.out.String())
	}
	s.assertTutorialState(t)
	a.stop(t, syscall.SIGINT)
	assertSameState(t, "after kill, up, SIGINT", before, s.state(t))
}

func TestBadConfigChangesNothing(t *testing.T) {
	s := newVPSSite(t)
	before := s.state(t)
	cfg := writeFile(t, s.dir, "bad.yaml", "site: server\nlan:\n  interface: veth0\n  mtu: 99999\ntunnel:\n  listen: 0.0.0.0:50000\n  peers:\n    - name: c\n      prefixes: [10.0.0.300/32]\n")
	out, code := runAgent(t, s.host.Name, s.args("up", cfg)...)
	if code != 2 {
		t.Fatalf("exit code %d, want 2:\n%s", code, out)
	}
	wantLines(t, "error output", out, "bad.yaml:4:", "lan.mtu", "bad.yaml:9:", "tunnel.peers[0].prefixes[0]")
	assertSameState(t, "after bad config", before, s.state(t))
}

func TestFailureHalfwayRollsBack(t *testing.T) {
	s := newVPSSite(t)
	before := s.state(t)
	// The namespace, veth pair, MTUs and offloads of veth0 are applied
	// before the peer's unknown kernel feature fails.
	cfg := s.config(t, ", no-such-feature: off")
	out, code := runAgent(t, s.host.Name, s.args("up", cfg)...)
	if code != 1 {
		t.Fatalf("exit code %d, want 1:\n%s", code, out)
	}
	wantLines(t, "error output", out, "set features of veth0", "no-such-feature", "reverted")
	assertSameState(t, "after failure half-way", before, s.state(t))
}

func TestCheckPrintsPlanAndTouchesNothing(t *testing.T) {
	s := newVPSSite(t)
	cfg := s.config(t, "")
	before := s.state(t)
	out, code := runAgent(t, s.host.Name, s.args("check", cfg)...)
	if code != 0 {
		t.Fatalf("check exit %d:\n%s", code, out)
	}
	wantLines(t, "check output", out, "create namespace "+s.ns1, "create veth pair veth0 <-> veth1",
		"set MTU of veth1 in "+s.ns1+" to 1420", "add route blackhole 192.168.111.0/30")
	out, code = runAgent(t, s.host.Name, append(s.args("check", cfg), "--json")...)
	if code != 0 || !strings.Contains(out, `"action": "create namespace `+s.ns1) {
		t.Fatalf("check --json exit %d:\n%s", code, out)
	}
	assertSameState(t, "after check", before, s.state(t))
}

package e2e

import (
	"fmt"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/vishvananda/netns"
)

// siteYAML is a VPS-style site with its own namespace, veth pair, subnet,
// port and blackhole, so that two of them can share one host.
func siteYAML(site, ns, veth string, n, port int) string {
	return fmt.Sprintf(`
site: %[1]s
lan: {interface: %[3]s0}
namespaces:
  - name: %[2]s
    veth: {host: %[3]s0, peer: %[3]s1, mtu: 1420, offloads: {rx: off, tx: off}}
    host_address: 10.%[4]d.0.1/24
    address: 10.%[4]d.0.100/24
    gateway: 10.%[4]d.0.1
tunnel:
  listen: 127.0.0.1:%[5]d
  peers:
    - name: remote
      prefixes: [172.16.%[4]d.0/24]
`, site, ns, veth, n, port)
}

// newSharedHost is a VPS host for two sites: the names of their
// namespaces (removed in t.Cleanup if a test fails half-way) and the
// state directory they share.
func newSharedHost(t *testing.T) (s *vpsSite, nsOne, nsTwo, state string) {
	s = newVPSSite(t)
	nsOne, nsTwo = s.prefix+"one", s.prefix+"two"
	t.Cleanup(func() { _ = netns.DeleteNamed(nsOne); _ = netns.DeleteNamed(nsTwo) })
	return s, nsOne, nsTwo, filepath.Join(s.dir, "state")
}

// TestTwoAgentsOnOneHost runs two sites side by side: stopping one leaves
// the other's configuration intact, and stopping both restores the host.
func TestTwoAgentsOnOneHost(t *testing.T) {
	s, nsOne, nsTwo, state := newSharedHost(t)
	cfgOne := writeFile(t, s.dir, "one.yaml", siteYAML("one", nsOne, "va", 1, 50001))
	cfgTwo := writeFile(t, s.dir, "two.yaml", siteYAML("two", nsTwo, "vb", 2, 50002))
	before := s.state(t)

	one := startAgent(t, s.host.Name, "up", "-c", cfgOne, "--state-dir", state)
	withOne := s.state(t)
	two := startAgent(t, s.host.Name, "up", "-c", cfgTwo, "--state-dir", state)
	wantLines(t, "both running", s.state(t), "link va0 ", "link vb0 ", "dst=172.16.1.0/24", "dst=172.16.2.0/24")

	// A second agent for a running site is refused and changes nothing.
	out, code := runAgent(t, s.host.Name, "up", "-c", cfgOne, "--state-dir", state)
	if code != 1 || !strings.Contains(out, "another tunnel-agent is running for site \"one\"") {
		t.Errorf("second agent for site one: exit %d:\n%s", code, out)
	}
	if code := two.stop(t, syscall.SIGINT); code != 0 {
		t.Fatalf("site two exit %d:\n%s", code, two.out.String())
	}
	assertSameState(t, "after stopping site two", withOne, s.state(t))
	if code := one.stop(t, syscall.SIGINT); code != 0 {
		t.Fatalf("site one exit %d:\n%s", code, one.out.String())
	}
	assertSameState(t, "after stopping both", before, s.state(t))
}

package e2e

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"tunnel-agent/internal/nstest"
)

// These tests run the agent in a throwaway namespace that already has
// routes of its own, as an operator's host has (issue 11 item 1): route
// identity is the kernel's (family, table, destination, metric), and what
// the agent did not make it leaves as found.

// routeSite is a namespace standing in for a hub's host: a LAN veth pair
// lan0/lan1 and a site file for a peer owning the given prefixes.
type routeSite struct {
	host *nstest.NS
	dir  string
}

func newRouteSite(t *testing.T) *routeSite {
	s := &routeSite{host: nstest.New(t, "tarte"), dir: t.TempDir()}
	// No IPv6 on the LAN veths (the IPv6 routes of these tests need none):
	// the kernel would give them link-local addresses and multicast routes
	// when their carrier comes up, some time after they are set up, and
	// the host state would change by itself between the dumps.
	if err := s.host.Do(func() error {
		return os.WriteFile("/proc/sys/net/ipv6/conf/default/disable_ipv6", []byte("1"), 0o644)
	}); err != nil {
		t.Fatalf("disable_ipv6: %v", err)
	}
	lan := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "lan0"}, PeerName: "lan1"}
	if err := s.host.NL.LinkAdd(lan); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"lan0", "lan1"} {
		l, err := s.host.NL.LinkByName(name)
		if err == nil {
			err = s.host.NL.LinkSetUp(l)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	return s
}

// config writes a site file whose one peer has the prefixes given inline
// (YAML list text) and, if file is not "", a prefixes_file.
func (s *routeSite) config(t *testing.T, inline, file string) string {
	peer := "    - name: far\n"
	if inline != "" {
		peer += "      prefixes: [" + inline + "]\n"
	}
	if file != "" {
		peer += "      prefixes_file: " + file + "\n"
	}
	return writeFile(t, s.dir, "hub.yaml", fmt.Sprintf(`site: hub
lan: {interface: lan0}
tunnel:
  listen: 127.0.0.1:50100
  local_prefixes: [192.168.50.0/24]
  peers:
%s`, peer))
}

func (s *routeSite) args(cmd, cfg string) []string {
	return []string{cmd, "-c", cfg, "--state-dir", s.dir + "/state"}
}

func (s *routeSite) state(t *testing.T) string { return hostState(t, s.host, s.host.Name) }

func (s *routeSite) addRoute(t *testing.T, r *netlink.Route) {
	t.Helper()
	r.Table = unix.RT_TABLE_MAIN
	if err := s.host.NL.RouteAdd(r); err != nil {
		t.Fatalf("add %v: %v", r, err)
	}
}

// ipNetOf is the *net.IPNet of prefix p, either family.
func ipNetOf(p string) *net.IPNet {
	pfx := netip.MustParsePrefix(p)
	return &net.IPNet{IP: pfx.Addr().AsSlice(), Mask: net.CIDRMask(pfx.Bits(), pfx.Addr().BitLen())}
}

// TestExistingIPv6RouteLeftAsFound is the reproduction: the
// operator's `ip -6 route add blackhole fd00:202::/48 proto static` (the
// kernel stores it at metric 1024) and a peer prefix fd00:202::/48. `check`
// says it is already so, `up` leaves it, the watcher makes no repair of it
// nor of the agent's own IPv6 blackhole, and after SIGINT the host is as
// before, the operator's route included.
func TestExistingIPv6RouteLeftAsFound(t *testing.T) {
	s := newRouteSite(t)
	s.addRoute(t, &netlink.Route{Dst: ipNetOf("fd00:202::/48"), Type: unix.RTN_BLACKHOLE, Protocol: unix.RTPROT_STATIC})
	cfg := s.config(t, "fd00:202::/48, fd00:203::/48, 10.202.0.0/24", "")
	before := s.state(t)
	wantLines(t, "before", before, "dst=fd00:202::/48 gw=<nil> dev=lo type=6 proto=4 scope=0 src=<nil> metric=1024")

	out, code := runAgent(t, s.host.Name, s.args("check", cfg)...)
	if code != 0 {
		t.Fatalf("check: exit %d:\n%s", code, out)
	}
	wantLines(t, "check", out, "add route blackhole fd00:202::/48  (already so: left as found)\n",
		"add route blackhole fd00:203::/48\n", "add route blackhole 10.202.0.0/24\n")
	if strings.Contains(out, "none ->") {
		t.Errorf("check shows a route that exists as none:\n%s", out)
	}

	a := startAgent(t, s.host.Name, s.args("up", cfg)...)
	wantLines(t, "while up", s.state(t),
		"dst=fd00:202::/48 gw=<nil> dev=lo type=6 proto=4 scope=0 src=<nil> metric=1024",
		"dst=fd00:203::/48 gw=<nil> dev=lo type=6 proto=227 scope=0 src=<nil> metric=1024",
		"dst=10.202.0.0/24 gw=<nil> dev= type=6 proto=227 scope=0 src=<nil> metric=0")
	// Make the watcher repair something of its own: a pass has then run
	// after the one at start, and neither repaired an IPv6 route.
	bh := &netlink.Route{Table: unix.RT_TABLE_MAIN, Dst: ipNetOf("10.202.0.0/24"), Type: unix.RTN_BLACKHOLE}
	if err := s.host.NL.RouteDel(bh); err != nil {
		t.Fatal(err)
	}
	waitLog(t, a, "repaired", "add route blackhole 10.202.0.0/24")
	for _, bad := range []string{"fd00:202::/48", "fd00:203::/48", "gave up"} {
		for _, line := range strings.Split(a.out.String(), "\n") {
			if strings.Contains(line, "drifted") && strings.Contains(line, bad) || strings.Contains(line, bad) && strings.Contains(line, "gave up") {
				t.Errorf("bogus repair: %s", line)
			}
		}
	}
	if strings.Count(a.out.String(), "repaired") != 1 {
		t.Errorf("want exactly one repair:\n%s", a.out.String())
	}
	if code := a.stop(t, syscall.SIGINT); code != 0 {
		t.Fatalf("exit %d after SIGINT:\n%s", code, a.out.String())
	}
	assertSameState(t, "after SIGINT", before, s.state(t))
}

// TestConflictingRouteRefused: a different route where the agent needs
// one (same destination, the metric the agent uses) is someone else's:
// `check` and `up` refuse with exit 2 naming it, and nothing changes.
func TestConflictingRouteRefused(t *testing.T) {
	s := newRouteSite(t)
	s.addRoute(t, &netlink.Route{Dst: ipNetOf("fd00:202::/48"), Type: unix.RTN_UNREACHABLE, Protocol: unix.RTPROT_STATIC})
	// A route at another metric is not in the way.
	s.addRoute(t, &netlink.Route{Dst: ipNetOf("10.202.0.0/24"), Type: unix.RTN_BLACKHOLE, Protocol: unix.RTPROT_BOOT, Priority: 100})
	cfg := s.config(t, "fd00:202::/48, 10.202.0.0/24", "")
	before := s.state(t)
	const named = `unreachable fd00:202::/48 proto static metric 1024`
	for _, cmd := range []string{"check", "up"} {
		out, code := runAgent(t, s.host.Name, s.args(cmd, cfg)...)
		if code != 2 || !strings.Contains(out, named) || !strings.Contains(out, "never replaces or deletes such a route") {
			t.Errorf("%s: exit %d, want 2 naming %q:\n%s", cmd, code, named, out)
		}
		assertSameState(t, "after "+cmd, before, s.state(t))
	}
	if _, err := os.Stat(filepath.Join(s.dir, "state", "hub.json")); !os.IsNotExist(err) {
		t.Errorf("a journal was left: %v", err)
	}
}

// TestPrefixesFileReload: a peer's prefixes in a prefixes_file get their
// blackholes; a reload after the file changed adds and removes them.
func TestPrefixesFileReload(t *testing.T) {
	s := newRouteSite(t)
	file := writeFile(t, s.dir, "far.txt", "# far's LANs\n10.210.0.0/24\n10.211.0.0/24\nfd00:210::/48\n")
	cfg := s.config(t, "", "far.txt")
	before := s.state(t)
	a := startAgent(t, s.host.Name, s.args("up", cfg)...)
	wantLines(t, "while up", s.state(t), "dst=10.210.0.0/24 gw=<nil> dev= type=6 proto=227",
		"dst=10.211.0.0/24 gw=<nil> dev= type=6 proto=227", "dst=fd00:210::/48 gw=<nil> dev=lo type=6 proto=227")
	if err := os.WriteFile(file, []byte("10.210.0.0/24\n10.212.0.0/24 # new\nfd00:210::/48\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, code := runAgent(t, s.host.Name, s.args("reload", cfg)...); code != 0 {
		t.Fatalf("reload: exit %d:\n%s", code, out)
	}
	waitLog(t, a, "configuration reloaded")
	after := s.state(t)
	wantLines(t, "after the reload", after, "dst=10.210.0.0/24 gw=<nil> dev= type=6 proto=227", "dst=10.212.0.0/24 gw=<nil> dev= type=6 proto=227")
	if strings.Contains(after, "dst=10.211.0.0/24") {
		t.Errorf("the blackhole of a prefix the file no longer has is still there:\n%s", after)
	}
	if code := a.stop(t, syscall.SIGINT); code != 0 {
		t.Fatalf("exit %d after SIGINT:\n%s", code, a.out.String())
	}
	assertSameState(t, "after SIGINT", before, s.state(t))
}

package e2e

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"tunnel-agent/internal/topo"
)

// TestCaptureRebindRetried reproduces the report: the agent is out of file
// descriptors when its LAN interface is re-created, so the capture cannot
// be re-opened on it. The failure must be logged and retried until it
// succeeds (here: once the limit is raised again), after which traffic
// flows and status counts the failed attempts.
func TestCaptureRebindRetried(t *testing.T) {
	s := newTwoSite(t, topo.Options{NAT: true})
	s.start(t)
	mustPingEventually(t, "client -> VPS host", s.client(), s.SiteBHost.Addr())
	pid := s.agentA.cmd.Process.Pid

	// Every descriptor below the lowest free one is taken, so a soft
	// limit at that number makes any new one fail with EMFILE.
	out, err := exec.Command("prlimit", "--pid", strconv.Itoa(pid), "--nofile", "--noheadings", "--output=SOFT").Output()
	if err != nil {
		t.Fatalf("prlimit: %v", err)
	}
	soft := strings.TrimSpace(string(out))
	free := lowestFreeFD(t, pid)
	prlimit(t, pid, strconv.Itoa(free)+":")
	off := len(s.agentA.out.String())
	recreateLAN(t, s)
	waitLogAfter(t, s.agentA, off, 10*time.Second, "capture", "too many open files", "attempt=2")

	prlimit(t, pid, soft+":")
	waitLogAfter(t, s.agentA, off, 40*time.Second, "capture re-bound", "lan="+topo.GatewayALANLink)
	mustPingEventually(t, "client -> VPS host after the re-bind", s.client(), s.SiteBHost.Addr())
	st := s.status(t, "client")
	if st.CaptureRebindFailures < 2 || st.CaptureRebindFailing {
		t.Errorf("status: capture_rebind_failures %d, failing %v; want >= 2, false", st.CaptureRebindFailures, st.CaptureRebindFailing)
	}
	for _, a := range []*agentProc{s.agentA, s.agentB} {
		if code := a.stop(t, syscall.SIGINT); code != 0 {
			t.Errorf("agent exit %d:\n%s", code, a.out.String())
		}
	}
}

// lowestFreeFD returns the lowest descriptor number process pid has not
// open.
func lowestFreeFD(t *testing.T, pid int) int {
	t.Helper()
	open := openFDs(t, pid)
	n := 0
	for open[n] {
		n++
	}
	return n
}

// openFDs returns the descriptors process pid has open.
func openFDs(t *testing.T, pid int) map[int]bool {
	t.Helper()
	ents, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/fd")
	if err != nil {
		t.Fatal(err)
	}
	open := map[int]bool{}
	for _, e := range ents {
		n, _ := strconv.Atoi(e.Name())
		open[n] = true
	}
	return open
}

// prlimit sets the soft limit of open files of process pid ("N:").
func prlimit(t *testing.T, pid int, soft string) {
	t.Helper()
	if out, err := exec.Command("prlimit", "--pid", strconv.Itoa(pid), "--nofile="+soft).CombinedOutput(); err != nil {
		t.Fatalf("prlimit --nofile=%s: %v: %s", soft, err, out)
	}
}

// recreateLAN deletes GatewayA's LAN veth (with the client's end) and
// builds it again: same names and addresses, a new ifindex.
func recreateLAN(t *testing.T, s *twoSite) {
	t.Helper()
	ga, cl := s.GatewayA, s.Client
	lan, gw, host := topo.GatewayALANLink, s.GatewayALAN.String(), s.ClientAddr.String()
	for _, args := range [][]string{
		{"-n", ga, "link", "del", lan},
		{"-n", ga, "link", "add", lan, "mtu", strconv.Itoa(s.LANMTU), "type", "veth", "peer", "name", topo.ClientLink, "netns", cl},
		{"-n", ga, "addr", "add", gw, "dev", lan},
		{"-n", ga, "link", "set", lan, "up"},
		{"-n", cl, "link", "set", topo.ClientLink, "mtu", strconv.Itoa(s.LANMTU)},
		{"-n", cl, "addr", "add", host, "dev", topo.ClientLink},
		{"-n", cl, "link", "set", topo.ClientLink, "up"},
		{"-n", cl, "route", "replace", "default", "via", s.GatewayALAN.Addr().String()},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
}

package e2e

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"tunnel-agent/agent"
	"tunnel-agent/internal/hostdump"
	"tunnel-agent/internal/nstest"
	"tunnel-agent/internal/probe"
	"tunnel-agent/internal/topo"
)

const (
	hubSites     = 20
	hubIPv6Sites = 5 // sites 1-5 reach the hub over IPv6, the others over IPv4
	hubPort      = 50000
)

// hubYAML is the hub's site: its LAN namespace, relaying on, one learning
// peer per site.
func hubYAML(h *topo.Hub) string {
	var b strings.Builder
	fmt.Fprintf(&b, `site: hub
lan: {interface: hl0}
namespaces:
  - name: %s
    veth: {host: hl0, peer: hl1, mtu: %d, offloads: {rx: off, tx: off}}
    host_address: %s
    address: %s
    gateway: %s
tunnel:
  listen: "[::]:%d"
  relay: true
  peers:
`, h.HubLANNS, h.LANMTU, h.HubLANGateway, h.HubLANHost, h.HubLANGateway.Addr(), hubPort)
	for i, s := range h.Sites {
		fmt.Fprintf(&b, "    - {name: site%d, prefixes: [%s]}\n", i+1, s.HostAddr.Masked())
	}
	return b.String()
}

// spokeYAML is site i's file: one peer, the hub (over IPv6 for the IPv6
// sites), owning the hub's LAN and every other site's LAN.
func spokeYAML(h *topo.Hub, i, port int) string {
	listen, hub := fmt.Sprintf("0.0.0.0:%d", port), netip.AddrPortFrom(h.Sites[i].HubEnd.Addr(), hubPort)
	if h.Sites[i].WAN6.IsValid() {
		listen, hub = fmt.Sprintf("[::]:%d", port), netip.AddrPortFrom(h.Sites[i].HubEnd6.Addr(), hubPort)
	}
	pfx := []string{h.HubLANHost.Masked().String()}
	for j, s := range h.Sites {
		if j != i {
			pfx = append(pfx, s.HostAddr.Masked().String())
		}
	}
	return fmt.Sprintf(`site: site%d
lan: {interface: %s, mtu: %d}
tunnel:
  listen: "%s"
  peers:
    - name: hub
      endpoint: "%s"
      prefixes: [%s]
      keepalive: 1s
`, i+1, topo.GatewayALANLink, h.LANMTU, listen, hub, strings.Join(pfx, ", "))
}

// TestHubAndSpokes: a hub and 20 sites, each with its own agent and LAN
// host, 5 of them reaching the hub over IPv6 and 15 over IPv4 (one socket
// on [::]). Every site reaches the hub's LAN, and through the hub
// (relaying, without touching its LAN) every other site; a site that goes away and
// comes back from a new port (a new NAT mapping, as the hub sees it) is
// re-learned; the hub's CPU time and memory are logged; stopping the hub
// restores its namespace.
func TestHubAndSpokes(t *testing.T) {
	nstest.RequireRoot(t)
	start := time.Now()
	h, dir, before := buildHub(t, "tahub", hubSites, hubIPv6Sites)
	state := func(name string) string { return filepath.Join(dir, name+"-state") }
	hubCfg := writeFile(t, dir, "hub.yaml", hubYAML(h))
	hub := startAgent(t, h.HubNS, "up", "-c", hubCfg, "--state-dir", state("hub"))
	spokes := make([]*agentProc, hubSites)
	cfgs := make([]string, hubSites)
	for i, s := range h.Sites {
		cfgs[i] = writeFile(t, dir, fmt.Sprintf("site%d.yaml", i+1), spokeYAML(h, i, 60000))
		spokes[i] = startAgent(t, s.Gateway, "up", "-c", cfgs[i], "--state-dir", state(fmt.Sprintf("site%d", i+1)))
	}
	t.Logf("topology and %d agents up in %s", hubSites+1, time.Since(start).Round(time.Millisecond))

	pingThroughHub(t, h, start)
	st := statusOf(t, h.HubNS, hubCfg, state("hub"))
	if st.Dataplane.Drops["dst_not_allowed"] != 0 || st.Dataplane.Peers[1].TxPackets == 0 {
		t.Errorf("hub: dst_not_allowed %d, tx to site2 %d", st.Dataplane.Drops["dst_not_allowed"], st.Dataplane.Peers[1].TxPackets)
	}
	if eb := st.EBPF; eb != nil { // TestEBPFSuite: the programs relay
		var carried uint64
		for _, p := range eb.Carried {
			carried += p.RxPackets
		}
		if len(eb.Hooks) != hubSites+1 || carried == 0 {
			t.Errorf("hub on ebpf: %d hooks (want wan_ingress on each site's link and lan_ingress), programs carried %d packets; to userspace %v",
				len(eb.Hooks), carried, eb.ToUserspace)
		}
		t.Logf("hub on ebpf: programs carried %d packets; to userspace %v", carried, eb.ToUserspace)
	}
	for i, p := range st.Dataplane.Peers { // IPv4 and IPv6 peers on one socket
		if want := h.Sites[i].WAN6.Addr(); i < hubIPv6Sites && p.CurrentEndpoint.Addr() != want {
			t.Errorf("hub has %s at %v, want its IPv6 address %v", p.Name, p.CurrentEndpoint, want)
		} else if want := h.Sites[i].WAN.Addr(); i >= hubIPv6Sites && p.CurrentEndpoint.Addr() != want {
			t.Errorf("hub has %s at %v, want its IPv4 address %v", p.Name, p.CurrentEndpoint, want)
		}
	}

	// Site 1 goes away and comes back from another port.
	if code := spokes[0].stop(t, syscall.SIGINT); code != 0 {
		t.Fatalf("site1 exit %d:\n%s", code, spokes[0].out.String())
	}
	cfgs[0] = writeFile(t, dir, "site1.yaml", spokeYAML(h, 0, 60001))
	spokes[0] = startAgent(t, h.Sites[0].Gateway, "up", "-c", cfgs[0], "--state-dir", state("site1"))
	if err := pingEventually(h, h.Sites[1].Host, h.Sites[0].HostAddr.Addr()); err != nil {
		t.Fatalf("site2 -> site1 after site1 moved: %v", err)
	}
	st = statusOf(t, h.HubNS, hubCfg, state("hub"))
	if got := st.Dataplane.Peers[0].CurrentEndpoint; got != netip.AddrPortFrom(h.Sites[0].WAN6.Addr(), 60001) {
		t.Errorf("hub has site1 at %v, want its new port 60001", got)
	}
	logUsage(t, "hub", hub.cmd.Process.Pid)

	stopHub(t, h, hub, spokes, before)
	t.Logf("total %s", time.Since(start).Round(time.Millisecond))
}

// buildHub builds a hub topology of sites sites (the first ipv6 over
// IPv6), removed when the test ends, and returns it with a directory for
// the files and the hub namespace's dump.
func buildHub(t *testing.T, prefix string, sites, ipv6 int) (h *topo.Hub, dir, before string) {
	t.Helper()
	h, err := topo.BuildHub(topo.HubOptions{Prefix: nstest.UniqueName(prefix), Sites: sites, IPv6Sites: ipv6})
	if err != nil {
		t.Fatalf("build hub topology: %v", err)
	}
	t.Cleanup(func() {
		if err := h.Close(); err != nil {
			t.Errorf("remove hub topology: %v", err)
		}
	})
	return h, t.TempDir(), dumpNS(t, h, h.HubNS)
}

// pingThroughHub checks that every site reaches the hub's LAN, then every
// other site through the hub.
func pingThroughHub(t *testing.T, h *topo.Hub, start time.Time) {
	t.Helper()
	hubLAN := h.HubLANHost.Addr()
	forEachSite(t, h, func(i int, s topo.HubSite) error { return pingEventually(h, s.Host, hubLAN) })
	t.Logf("every site reaches the hub's LAN (%s)", time.Since(start).Round(time.Millisecond))
	forEachSite(t, h, func(i int, s topo.HubSite) error {
		for j, o := range h.Sites {
			if j != i {
				if err := pingEventually(h, s.Host, o.HostAddr.Addr()); err != nil {
					return err
				}
			}
		}
		return nil
	})
	t.Logf("every site reaches every other site through the hub: %d pairs (%s)", len(h.Sites)*(len(h.Sites)-1), time.Since(start).Round(time.Millisecond))
}

// stopHub stops the spokes, then the hub, with SIGINT, and checks that
// the hub's namespace is as before (dump before).
func stopHub(t *testing.T, h *topo.Hub, hub *agentProc, spokes []*agentProc, before string) {
	t.Helper()
	for _, a := range spokes { // all at once: each revert takes a moment
		_ = a.cmd.Process.Signal(syscall.SIGINT)
	}
	for i, a := range spokes {
		select {
		case <-a.done:
			if a.exitCd != 0 {
				t.Errorf("site%d exit %d:\n%s", i+1, a.exitCd, a.out.String())
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("site%d did not exit 30s after SIGINT", i+1)
		}
	}
	if code := hub.stop(t, syscall.SIGINT); code != 0 {
		t.Errorf("hub exit %d:\n%s", code, hub.out.String())
	}
	assertSameState(t, "hub after SIGINT", before, dumpNS(t, h, h.HubNS))
}

// forEachSite runs fn for every site concurrently and fails the test with
// every error.
func forEachSite(t *testing.T, h *topo.Hub, fn func(i int, s topo.HubSite) error) {
	t.Helper()
	errs := make([]error, len(h.Sites))
	var wg sync.WaitGroup
	for i, s := range h.Sites {
		wg.Go(func() { errs[i] = fn(i, s) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("site%d: %v", i+1, err)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
}

// pingEventually pings dst from namespace ns until a reply, for up to 5 s.
func pingEventually(h *topo.Hub, ns string, dst netip.Addr) error {
	var r probe.PingResult
	var err error
	if eventually(5*time.Second, func() bool {
		r, err = probe.Ping(h.Handle(ns), dst, 1, 0, 300*time.Millisecond, 84)
		return err == nil && r.Received == 1
	}) {
		return nil
	}
	return fmt.Errorf("%s -> %s: no reply in 5s (err %v)", ns, dst, err)
}

func dumpNS(t *testing.T, h *topo.Hub, ns string) string {
	t.Helper()
	d, err := hostdump.Take(h.Handle(ns))
	if err != nil {
		t.Fatalf("dump %s: %v", ns, err)
	}
	return d + "namespaces " + strings.Join(hostdump.Namespaces(h.Prefix), ",") + "\n"
}

// logUsage logs the CPU time and memory of process pid from /proc.
func logUsage(t *testing.T, what string, pid int) {
	t.Helper()
	stat, err1 := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	status, err2 := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err1 != nil || err2 != nil {
		t.Logf("%s: no /proc figures: %v %v", what, err1, err2)
		return
	}
	// Fields after the parenthesised command: utime and stime are the
	// 12th and 13th (clock ticks, 100 per second on Linux).
	f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
	utime, _ := strconv.Atoi(f[11])
	stime, _ := strconv.Atoi(f[12])
	mem := map[string]string{}
	for _, line := range strings.Split(string(status), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && (k == "VmRSS" || k == "VmHWM" || k == "Threads") {
			mem[k] = strings.TrimSpace(v)
		}
	}
	t.Logf("%s (pid %d, race-enabled build): CPU user %.2fs system %.2fs; VmRSS %s, VmHWM %s, threads %s",
		what, pid, float64(utime)/100, float64(stime)/100, mem["VmRSS"], mem["VmHWM"], mem["Threads"])
}

// statusOf reads `tunnel-agent status --json` of the agent running in ns.
func statusOf(t *testing.T, ns, cfg, stateDir string) agent.Status {
	t.Helper()
	out, code := runAgent(t, ns, "status", "-c", cfg, "--state-dir", stateDir, "--json")
	if code != 0 {
		t.Fatalf("status in %s: exit %d:\n%s", ns, code, out)
	}
	var st agent.Status
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("status in %s: %v:\n%s", ns, err, out)
	}
	return st
}

package e2e

import (
	"errors"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"tunnel-agent/dataplane/ebpf"
	"tunnel-agent/internal/probe"
	"tunnel-agent/internal/topo"
)

// requireEBPF skips unless this kernel and process can run the eBPF
// dataplane.
func requireEBPF(t *testing.T) ebpf.Support {
	t.Helper()
	s, err := ebpf.Probe()
	if err != nil {
		t.Skipf("the eBPF dataplane cannot run here: %v", err)
	}
	return s
}

// useEBPF rewrites a site's file to tunnel.dataplane: ebpf.
func useEBPF(t *testing.T, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := strings.Replace(string(b), "\ntunnel:\n", "\ntunnel:\n  dataplane: ebpf\n", 1)
	if s == string(b) {
		t.Fatalf("%s has no tunnel section", path)
	}
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

// suiteDataplane, when "ebpf", makes every `up` of the tests run on the
// eBPF dataplane (TestEBPFSuite runs tests written for userspace mode so).
var suiteDataplane string

// withDataplane rewrites the site file of an `up` for suiteDataplane.
func withDataplane(args []string) {
	if suiteDataplane != "ebpf" || len(args) == 0 || args[0] != "up" {
		return
	}
	for i := 0; i+1 < len(args); i++ {
		if args[i] != "-c" {
			continue
		}
		b, err := os.ReadFile(args[i+1])
		if err != nil || strings.Contains(string(b), "dataplane:") || strings.Contains(string(b), "capture:") {
			return // chosen already; or the ring capture, which has no eBPF counterpart
		}
		s := strings.Replace(string(b), "\ntunnel:\n", "\ntunnel:\n  dataplane: ebpf\n", 1)
		_ = os.WriteFile(args[i+1], []byte(s), 0o600)
	}
}

// TestEBPFSuite runs tests written for the userspace dataplane with both
// sites (or the one agent) on the eBPF dataplane: path MTU, IPv6 inside
// and outside, LAN offloads on (the ring capture's case stays userspace),
// reload, a re-created LAN veth, interop with the tutorial's program, a
// hub relaying between 20 spokes. (The
// one-namespace VPS site of the watcher's tests has no WAN for the
// programs: `up` refuses it in this mode.)
func TestEBPFSuite(t *testing.T) {
	requireEBPF(t)
	suiteDataplane = "ebpf"
	t.Cleanup(func() { suiteDataplane = "" })
	for _, tc := range []struct {
		name string
		fn   func(*testing.T)
	}{
		{"PathMTUDiscovery", TestPathMTUDiscovery},
		{"FarLANSmallerMTU", TestFarLANSmallerMTU},
		{"IPv6InsideTunnel", TestIPv6InsideTunnel},
		{"IPv6OutsideTunnel", TestIPv6OutsideTunnel},
		{"IPv6PacketTooBig", TestIPv6PacketTooBig},
		{"DefaultOffloads", TestDefaultOffloads},
		{"LiveOperations", TestLiveOperations},
		{"InteropTutorialClient", TestInteropTutorialClient},
		{"InteropTutorialServer", TestInteropTutorialServer},
		{"HubAndSpokes", TestHubAndSpokes},
	} {
		t.Run(tc.name, tc.fn)
	}
}

// eachAttachMode runs fn as a subtest per way of attaching the programs:
// tcx links (skipped on a kernel without them) and the clsact fallback.
func eachAttachMode(t *testing.T, fn func(t *testing.T, mode string)) {
	for _, mode := range []string{"tcx", "clsact"} {
		t.Run(mode, func(t *testing.T) {
			if sup := requireEBPF(t); mode == "tcx" && !sup.TCX {
				t.Skip("no tcx links on this kernel")
			}
			fn(t, mode)
		})
	}
}

// startEBPFSites builds the two sites through NAT, both on the eBPF
// dataplane hooked with attach (tcx or clsact), and starts their agents.
func startEBPFSites(t *testing.T, attach string) *twoSite {
	t.Helper()
	s := newTwoSite(t, topo.Options{NAT: true})
	useEBPF(t, s.cfgA)
	useEBPF(t, s.cfgB)
	s.startWith(t, "TUNNEL_AGENT_EBPF_ATTACH="+attach)
	return s
}

// startWith starts the sites' agents with extra environment variables.
func (s *twoSite) startWith(t *testing.T, env ...string) {
	t.Helper()
	b := agentCmd(s.GatewayB, s.args("up", "server")...)
	b.Env = append(os.Environ(), env...)
	s.agentB = startCmd(t, b)
	a := agentCmd(s.GatewayA, s.args("up", "client")...)
	a.Env = append(os.Environ(), env...)
	s.agentA = startCmd(t, a)
}

// checkProgramsCarry checks that the programs of site carried the
// traffic: their per-peer counters are in the status and grew.
func checkProgramsCarry(t *testing.T, s *twoSite, site string, mode string) {
	t.Helper()
	st := s.status(t, site)
	if st.EBPF == nil || len(st.EBPF.Hooks) != 2 {
		t.Fatalf("%s: status has no eBPF hooks: %+v", site, st.EBPF)
	}
	for _, h := range st.EBPF.Hooks {
		if h.Mode.String() != mode {
			t.Errorf("%s: %s hooked with %v, want %s", site, h.Program, h.Mode, mode)
		}
	}
	if p := st.Dataplane.Peers[0]; p.TxPackets == 0 || p.RxPackets == 0 {
		t.Errorf("%s: peer counters %+v", site, p)
	}
}

// TestEBPFTwoSitesThroughNAT is TestTwoSitesThroughNAT with both sites on
// the eBPF dataplane: the VPS learns the client's NAT mapping through its
// socket and hands it to its programs.
func TestEBPFTwoSitesThroughNAT(t *testing.T) {
	eachAttachMode(t, func(t *testing.T, mode string) {
		s := startEBPFSites(t, mode)
		ns1 := s.siteBHost(t)
		t.Run("ping both ways", func(t *testing.T) {
			pingBothWaysThroughNAT(t, s, ns1, 10, 50*time.Millisecond)
		})
		t.Run("TCP 50 MB each way", func(t *testing.T) {
			tcpBothWays(t, s, ns1, 50<<20)
			checkProgramsCarry(t, s, "client", mode)
			checkProgramsCarry(t, s, "server", mode)
		})
		t.Run("TTL 1: time exceeded from the gateway", func(t *testing.T) { testTTLExpired(t, s) })
		t.Run("attacks are dropped and counted", func(t *testing.T) { testAttacks(t, s, ns1) })
		t.Run("NAT mapping changes", func(t *testing.T) { testNATRebinding(t, s, ns1) })
		t.Run("SIGINT restores both hosts, tc state included", func(t *testing.T) { s.stopAndCompare(t) })
	})
}

// TestEBPFKillThenDown: a SIGKILLed agent leaves its blackhole routes
// (fail closed) and, with clsact, its filters; `down` removes everything,
// and both hosts dump (tc state included) as before `up`.
func TestEBPFKillThenDown(t *testing.T) {
	eachAttachMode(t, func(t *testing.T, mode string) {
		s := startEBPFSites(t, mode)
		mustPingEventually(t, "client -> VPS host", s.client(), s.SiteBHost.Addr())
		running := s.dump(t, s.GatewayA)
		if mode == "tcx" && (!strings.Contains(running, "tcx lan0 TCXIngress program lan_ingress") ||
			!strings.Contains(running, "tcx wan0 TCXIngress program wan_ingress")) {
			t.Errorf("gateway A while running: the dump does not show the tcx programs:\n%s", running)
		}
		for _, a := range []*agentProc{s.agentA, s.agentB} {
			a.kill()
		}
		during := s.dump(t, s.GatewayA)
		if !strings.Contains(during, "type=6 proto=227") { // a blackhole route of the agent's
			t.Errorf("gateway A after SIGKILL: no blackhole route left (fail closed):\n%s", during)
		}
		if has := strings.Contains(during, "name tunnel-agent-lan_ingress"); has != (mode == "clsact") {
			t.Errorf("gateway A after SIGKILL (%s): our LAN filter present %v", mode, has)
		}
		if strings.Contains(during, "tcx ") {
			t.Errorf("gateway A after SIGKILL: tcx programs left:\n%s", during)
		}
		s.downAndCompare(t)
	})
}

// downAndCompare runs `down` for both sites (after their agents were
// killed) and checks that both gateways are as before `up`.
func (s *twoSite) downAndCompare(t *testing.T) {
	t.Helper()
	for _, site := range []string{"client", "server"} {
		ns := map[string]string{"client": s.GatewayA, "server": s.GatewayB}[site]
		if out, code := runAgent(t, ns, s.args("down", site)...); code != 0 {
			t.Fatalf("down %s: exit %d:\n%s", site, code, out)
		}
	}
	assertSameState(t, "gateway A after SIGKILL and down", s.beforeA, s.dump(t, s.GatewayA))
	assertSameState(t, "gateway B after SIGKILL and down", s.beforeB, s.dump(t, s.GatewayB))
}

// TestEBPFKillThenForceDown: after a SIGKILL with clsact hooks and a lost
// journal, `down --force` removes the programs' filters too.
func TestEBPFKillThenForceDown(t *testing.T) {
	requireEBPF(t)
	s := startEBPFSites(t, "clsact")
	mustPingEventually(t, "client -> VPS host", s.client(), s.SiteBHost.Addr())
	s.agentA.kill()
	if d := s.dump(t, s.GatewayA); !strings.Contains(d, "name tunnel-agent-wan_ingress") {
		t.Fatalf("no filter left after SIGKILL:\n%s", d)
	}
	if err := os.Remove(filepath.Join(s.dir, "client-state", "client.json")); err != nil {
		t.Fatal(err)
	}
	out, code := runAgent(t, s.GatewayA, append(s.args("down", "client"), "--force")...)
	if code != 0 || !strings.Contains(out, "tc filter tunnel-agent-lan_ingress") || !strings.Contains(out, "tc filter tunnel-agent-wan_ingress") {
		t.Fatalf("down --force: exit %d:\n%s", code, out)
	}
	if d := s.dump(t, s.GatewayA); strings.Contains(d, "name tunnel-agent-") || strings.Contains(d, "type=6 proto=227") {
		t.Errorf("after down --force, the agent's filters or routes remain:\n%s", d)
	}
}

// TestEBPFInteropWithUserspace: the client on the eBPF dataplane, the VPS
// on the userspace one (and the other way round): same wire format.
func TestEBPFInteropWithUserspace(t *testing.T) {
	requireEBPF(t)
	for _, ebpfSite := range []string{"client", "server"} {
		t.Run(ebpfSite+" on ebpf", func(t *testing.T) {
			s := newTwoSite(t, topo.Options{NAT: true})
			useEBPF(t, map[string]string{"client": s.cfgA, "server": s.cfgB}[ebpfSite])
			s.start(t)
			ns1 := s.siteBHost(t)
			hostB, hostA := s.SiteBHost.Addr(), s.ClientAddr.Addr()
			mustPingEventually(t, "client -> VPS host (first contact)", s.client(), hostB)
			r, err := probe.Ping(ns1, hostA, 10, 50*time.Millisecond, 2*time.Second, 84)
			mustPing(t, "VPS host -> client", r, err)
			tcpBothWays(t, s, ns1, 20<<20)
			s.stopAndCompare(t)
		})
	}
}

// TestEBPFCheckAndRefusals: `check` says the host can run the programs;
// wireguard mode with ebpf is refused with file, line and field, exit 2.
func TestEBPFCheckAndRefusals(t *testing.T) {
	requireEBPF(t)
	s := newTwoSite(t, topo.Options{})
	useEBPF(t, s.cfgA)
	out, code := runAgent(t, s.GatewayA, s.args("check", "client")...)
	if code != 0 || !strings.Contains(out, "eBPF dataplane: this host can run it") {
		t.Fatalf("check: exit %d:\n%s", code, out)
	}
	b, _ := os.ReadFile(s.cfgA)
	bad := strings.Replace(string(b), "  dataplane: ebpf\n", "  dataplane: ebpf\n  mode: wireguard\n", 1)
	if err := os.WriteFile(s.cfgA, []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	out, code = runAgent(t, s.GatewayA, s.args("check", "client")...)
	if code != 2 || !strings.Contains(out, "tunnel.dataplane") || !strings.Contains(out, "plain mode only") {
		t.Fatalf("check of wireguard+ebpf: exit %d, want 2 with tunnel.dataplane:\n%s", code, out)
	}
	assertSameState(t, "gateway A after check", s.beforeA, s.dump(t, s.GatewayA))
}

// TestEBPFFilterRemovedIsRepaired: a clsact filter of the agent's that
// someone deletes (`tc filter del`) is put back within seconds, logged and
// counted, and traffic flows again.
func TestEBPFFilterRemovedIsRepaired(t *testing.T) {
	requireEBPF(t)
	s := startEBPFSites(t, "clsact")
	mustPingEventually(t, "client -> VPS host", s.client(), s.SiteBHost.Addr())
	nl := s.Netlink(s.GatewayA)
	for _, name := range []string{topo.GatewayALANLink, topo.GatewayAWANLink} {
		l, err := nl.LinkByName(name)
		if err != nil {
			t.Fatal(err)
		}
		f := &netlink.BpfFilter{FilterAttrs: netlink.FilterAttrs{LinkIndex: l.Attrs().Index, Parent: netlink.HANDLE_MIN_INGRESS,
			Priority: ebpf.FilterPriority, Handle: ebpf.FilterHandle, Protocol: unix.ETH_P_ALL}}
		if err := nl.FilterDel(f); err != nil {
			t.Fatalf("tc filter del dev %s: %v", name, err)
		}
	}
	if !eventually(10*time.Second, func() bool {
		d := s.dump(t, s.GatewayA)
		return strings.Contains(d, "filter lan0 parent ffff:fff2 bpf prio 49374 handle 1 name tunnel-agent-lan_ingress") &&
			strings.Contains(d, "filter wan0 parent ffff:fff2 bpf prio 49374 handle 1 name tunnel-agent-wan_ingress")
	}) {
		t.Fatalf("filters not put back:\n%s", s.dump(t, s.GatewayA))
	}
	if st := s.status(t, "client"); st.EBPF == nil || st.EBPF.Repairs == 0 {
		t.Errorf("repair not counted: %+v", st.EBPF)
	}
	if !strings.Contains(s.agentA.out.String(), "eBPF program hook gone") {
		t.Errorf("repair not logged:\n%s", s.agentA.out.String())
	}
	tr, err := probe.TCPTransfer(s.client(), s.siteBHost(t), netip.AddrPortFrom(s.SiteBHost.Addr(), 5201), 10<<20, 60*time.Second)
	mustTransfer(t, "client -> VPS host after the repair", tr, err)
	s.stopAndCompare(t)
}

// testTTLExpired pings the far host with TTL 1 (iputils ping, bounded):
// the LAN program passes the packet up, and the engine answers with ICMP
// time exceeded from gateway A's LAN address, counted as ttl_expired.
func testTTLExpired(t *testing.T, s *twoSite) {
	before := drops(t, s, "client", "ttl_expired")
	cmd := exec.Command("nsenter", "--net=/run/netns/"+s.Client, "ping", "-n", "-c", "3", "-i", "0.2", "-t", "1", "-W", "2",
		s.SiteBHost.Addr().String())
	out, _ := cmd.CombinedOutput() // exit 1: no echo reply, as wanted
	want := "From " + s.GatewayALAN.Addr().String()
	if !strings.Contains(string(out), want) || !strings.Contains(string(out), "Time to live exceeded") {
		t.Fatalf("ping -t 1: want time exceeded %s:\n%s", want, out)
	}
	if !eventually(3*time.Second, func() bool { return drops(t, s, "client", "ttl_expired") > before }) {
		t.Errorf("ttl_expired not counted at the client's gateway")
	}
	if st := s.status(t, "client"); st.EBPF == nil || st.EBPF.ToUserspace["ttl_expired"] == 0 {
		t.Errorf("the programs did not pass the packets up: %+v", st.EBPF)
	}
}

// TestEBPFOffloadsOverIPv6: LAN offloads on and an IPv6 WAN: the LAN
// program passes the packets whose checksum was left to offload, and TCP
// super-packets, for an IPv6-outer peer to the exception path (the outer
// checksum is computed from the inner one), and the exception reader
// completes and cuts them into the packets the engine sends.
func TestEBPFOffloadsOverIPv6(t *testing.T) {
	requireEBPF(t)
	s := newTwoSite6(t, topo.Options{Offloads: true}, true)
	useEBPF(t, s.cfgA)
	useEBPF(t, s.cfgB)
	s.start(t)
	dualStackTraffic(t, s)
	if st := s.status(t, "client"); st.EBPF == nil || st.EBPF.ToUserspace["gso"]+st.EBPF.ToUserspace["outer_checksum"] == 0 {
		t.Errorf("no packet left to checksum offload went to the exception path: %+v", st.EBPF)
	}
	s.stopAndCompare(t)
}

// runAgentCaps is runAgent with the capability bounding set reduced to
// caps.
func runAgentCaps(t *testing.T, ns, caps string, args ...string) (string, int) {
	t.Helper()
	full := append([]string{"--net=/run/netns/" + ns, "setpriv", "--bounding-set=-all," + caps,
		"--inh-caps=-all", agentBin}, args...)
	out, err := exec.Command("nsenter", full...).CombinedOutput()
	code := 0
	if err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			t.Fatalf("run agent: %v", err)
		}
		code = ee.ExitCode()
	}
	return string(out), code
}

// TestEBPFWithoutCapBPF: without CAP_BPF (and CAP_SYS_ADMIN) `check` says
// the host cannot run the programs and `up` refuses, leaving the host as
// it was, rather than running the userspace path; with CAP_BPF and
// CAP_PERFMON added to the service's set the site runs.
func TestEBPFWithoutCapBPF(t *testing.T) {
	requireEBPF(t)
	s := newTwoSite(t, topo.Options{NAT: true})
	useEBPF(t, s.cfgA)
	useEBPF(t, s.cfgB)
	const base = "+net_admin,+net_raw"
	out, code := runAgentCaps(t, s.GatewayA, base, s.args("check", "client")...)
	if code == 0 || !strings.Contains(out, "cannot run the eBPF dataplane") {
		t.Errorf("check without CAP_BPF: exit %d:\n%s", code, out)
	}
	out, code = runAgentCaps(t, s.GatewayA, base, s.args("up", "client")...)
	if code == 0 || !strings.Contains(out, "cannot run the eBPF dataplane") {
		t.Errorf("up without CAP_BPF: exit %d:\n%s", code, out)
	}
	assertSameState(t, "gateway A after the refused up", s.beforeA, s.dump(t, s.GatewayA))
	s.agentB = startAgentCaps(t, s.GatewayB, base+",+sys_admin,+bpf,+perfmon", s.args("up", "server")...)
	s.agentA = startAgentCaps(t, s.GatewayA, base+",+bpf,+perfmon", s.args("up", "client")...)
	mustPingEventually(t, "client -> VPS host", s.client(), s.SiteBHost.Addr())
	checkProgramsCarry(t, s, "client", "tcx")
	s.stopAndCompare(t)
}

// TestEBPFRoutesMove: a second WAN path between the gateways; the routes
// between their WAN addresses move to it while the agents run. Within a
// second or two (the agent follows the kernel's route notifications) the
// programs send by the new interface and
// wan_ingress is hooked to it (on gateway A, whose only peer moved, and
// no longer to the old one; on gateway B, whose default route stays, in
// addition), and the programs carry the traffic that now arrives there.
// The second path is then re-created (new interface indexes): the hooks
// and the peers' entries follow it.
// With tcx, moving back and stopping leaves both hosts as before; with
// clsact, a SIGKILL then `down` removes the filters on every interface
// (the journal followed the hooks).
func TestEBPFRoutesMove(t *testing.T) {
	eachAttachMode(t, testRoutesMove)
}

func testRoutesMove(t *testing.T, mode string) {
	s := newTwoSite(t, topo.Options{})
	addrA, addrB := netip.MustParsePrefix("198.18.5.3/24"), netip.MustParsePrefix("198.18.5.2/24")
	if err := s.AddLink(s.GatewayA, "wan1", addrA, s.GatewayB, "eth1", addrB, false); err != nil {
		t.Fatal(err)
	}
	nlA, nlB := s.Netlink(s.GatewayA), s.Netlink(s.GatewayB)
	// Gateway B's default route (by eth0) names its default WAN interface:
	// the learned client's route is the one that moves.
	ethB, err := nlB.LinkByName(topo.GatewayBWANLink)
	if err != nil {
		t.Fatal(err)
	}
	if err := nlB.RouteAdd(&netlink.Route{LinkIndex: ethB.Attrs().Index, Gw: s.GatewayAWAN.Addr().AsSlice()}); err != nil {
		t.Fatalf("default route on gateway B: %v", err)
	}
	s.beforeA, s.beforeB = s.dump(t, s.GatewayA), s.dump(t, s.GatewayB)
	useEBPF(t, s.cfgA)
	useEBPF(t, s.cfgB)
	s.startWith(t, "TUNNEL_AGENT_EBPF_ATTACH="+mode)
	ns1 := s.siteBHost(t)
	pingBoth := func(what string) {
		t.Helper()
		mustPingEventually(t, what+": client -> VPS host", s.client(), s.SiteBHost.Addr())
		r, err := probe.Ping(ns1, s.ClientAddr.Addr(), 20, 20*time.Millisecond, 2*time.Second, 84)
		mustPing(t, what+": VPS host -> client", r, err)
	}
	pingBoth("before the move")
	wantHooks(t, s, "client", "lan_ingress on lan0, wan_ingress on wan0")
	wantHooks(t, s, "server", "lan_ingress on veth0, wan_ingress on eth0")

	// Host routes to the other gateway's first WAN address by the second
	// path, keeping the outer addresses (a route's preferred source).
	routes := []struct {
		nl      *netlink.Handle
		link    string
		dst, gw netip.Addr
		src     netip.Addr
	}{
		{nlA, "wan1", s.GatewayBWAN.Addr(), addrB.Addr(), s.GatewayAWAN.Addr()},
		{nlB, "eth1", s.GatewayAWAN.Addr(), addrA.Addr(), s.GatewayBWAN.Addr()},
	}
	var added []*netlink.Route
	t.Cleanup(func() {
		for i, r := range added {
			_ = routes[i].nl.RouteDel(r)
		}
	})
	for _, r := range routes {
		l, err := r.nl.LinkByName(r.link)
		if err != nil {
			t.Fatal(err)
		}
		rt := &netlink.Route{LinkIndex: l.Attrs().Index, Dst: prefixNet(netip.PrefixFrom(r.dst, 32)), Gw: r.gw.AsSlice(), Src: r.src.AsSlice()}
		if err := r.nl.RouteAdd(rt); err != nil {
			t.Fatalf("route %v via %v dev %s: %v", r.dst, r.gw, r.link, err)
		}
		added = append(added, rt)
	}
	if !eventually(20*time.Second, func() bool {
		return hooksAre(t, s, "client", "lan_ingress on lan0, wan_ingress on wan1") &&
			hooksAre(t, s, "server", "lan_ingress on veth0, wan_ingress on eth0, wan_ingress on eth1")
	}) {
		wantHooks(t, s, "client", "lan_ingress on lan0, wan_ingress on wan1")
		wantHooks(t, s, "server", "lan_ingress on veth0, wan_ingress on eth0, wan_ingress on eth1")
	}
	if st := s.status(t, "client"); st.EBPF.WAN != "wan1" {
		t.Errorf("client: default WAN %q after the move, want wan1", st.EBPF.WAN)
	}
	checkCarried := func(what string) {
		t.Helper()
		rx1 := linkRx(t, nlA, "wan1")
		beforeA, beforeB := carried(t, s, "client"), carried(t, s, "server")
		pingBoth(what)
		const echoes = 20 // the 20 replies of pingBoth's second ping at least
		if got := linkRx(t, nlA, "wan1") - rx1; got < echoes {
			t.Errorf("%s: gateway A received %d packets on wan1, want at least %d", what, got, echoes)
		}
		if got := carried(t, s, "client") - beforeA; got < echoes {
			t.Errorf("%s: the client's programs carried %d packets from the server, want at least %d", what, got, echoes)
		}
		if got := carried(t, s, "server") - beforeB; got < echoes {
			t.Errorf("%s: the server's programs carried %d packets from the client, want at least %d", what, got, echoes)
		}
	}
	checkCarried("after the move")

	// The second path re-created (new indexes on both sides, the routes
	// by it gone with it and added again): the hooks and the peers'
	// entries follow.
	oldA, oldB := hookIndex(t, s, "client", "wan1"), hookIndex(t, s, "server", "eth1")
	if err := nlA.LinkDel(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Index: linkIndex(t, nlA, "wan1")}}); err != nil {
		t.Fatalf("delete wan1: %v", err)
	}
	if err := s.AddLink(s.GatewayA, "wan1", addrA, s.GatewayB, "eth1", addrB, false); err != nil {
		t.Fatal(err)
	}
	for i, r := range added {
		r.LinkIndex = linkIndex(t, routes[i].nl, routes[i].link)
		if err := routes[i].nl.RouteAdd(r); err != nil {
			t.Fatalf("route %v again: %v", r.Dst, err)
		}
	}
	if !eventually(20*time.Second, func() bool {
		a, b := hookIndex(t, s, "client", "wan1"), hookIndex(t, s, "server", "eth1")
		return a != 0 && a != oldA && b != 0 && b != oldB &&
			hooksAre(t, s, "client", "lan_ingress on lan0, wan_ingress on wan1")
	}) {
		t.Fatalf("hooks not on the re-created interfaces: client %q, server %q", hookList(t, s, "client"), hookList(t, s, "server"))
	}
	checkCarried("after the second path was re-created")

	removeRoutes := func() {
		t.Helper()
		for i, r := range added {
			if err := routes[i].nl.RouteDel(r); err != nil {
				t.Fatalf("remove route %v: %v", r.Dst, err)
			}
		}
		added = nil
	}
	if mode == "clsact" {
		for _, a := range []*agentProc{s.agentA, s.agentB} {
			a.kill()
		}
		if d := s.dump(t, s.GatewayB); !strings.Contains(d, "filter eth1 parent ffff:fff2 bpf prio 49374 handle 1 name tunnel-agent-wan_ingress") {
			t.Errorf("gateway B after SIGKILL: no filter on eth1:\n%s", d)
		}
		removeRoutes()
		s.downAndCompare(t)
		return
	}
	removeRoutes()
	if !eventually(20*time.Second, func() bool {
		return hooksAre(t, s, "client", "lan_ingress on lan0, wan_ingress on wan0") &&
			hooksAre(t, s, "server", "lan_ingress on veth0, wan_ingress on eth0")
	}) {
		wantHooks(t, s, "client", "lan_ingress on lan0, wan_ingress on wan0")
		wantHooks(t, s, "server", "lan_ingress on veth0, wan_ingress on eth0")
	}
	pingBoth("after moving back")
	s.stopAndCompare(t)
}

// hooksAre says whether a site's status lists exactly these hooks
// ("program on interface", comma-separated, sorted).
func hooksAre(t *testing.T, s *twoSite, site, want string) bool {
	t.Helper()
	return hookList(t, s, site) == want
}

func wantHooks(t *testing.T, s *twoSite, site, want string) {
	t.Helper()
	if got := hookList(t, s, site); got != want {
		t.Fatalf("%s: hooks %q, want %q", site, got, want)
	}
}

func hookList(t *testing.T, s *twoSite, site string) string {
	t.Helper()
	st := s.status(t, site)
	if st.EBPF == nil {
		t.Fatalf("%s: no eBPF status", site)
	}
	var hs []string
	for _, h := range st.EBPF.Hooks {
		hs = append(hs, h.Program+" on "+h.Interface)
	}
	slices.Sort(hs)
	return strings.Join(hs, ", ")
}

// carried is the packets the site's programs received from its one peer
// and delivered themselves.
func carried(t *testing.T, s *twoSite, site string) uint64 {
	t.Helper()
	st := s.status(t, site)
	if st.EBPF == nil || len(st.EBPF.Carried) != 1 {
		t.Fatalf("%s: eBPF status without one peer's counters: %+v", site, st.EBPF)
	}
	return st.EBPF.Carried[0].RxPackets
}

// hookIndex is the interface index of a site's wan_ingress hook on
// iface, 0 if there is none.
func hookIndex(t *testing.T, s *twoSite, site, iface string) int {
	t.Helper()
	for _, h := range s.status(t, site).EBPF.Hooks {
		if h.Interface == iface && h.Program == ebpf.WANProgramName {
			return h.Index
		}
	}
	return 0
}

func linkIndex(t *testing.T, nl *netlink.Handle, name string) int {
	t.Helper()
	l, err := nl.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	return l.Attrs().Index
}

// linkRx is a link's received packets.
func linkRx(t *testing.T, nl *netlink.Handle, name string) uint64 {
	t.Helper()
	l, err := nl.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	return l.Attrs().Statistics.RxPackets
}

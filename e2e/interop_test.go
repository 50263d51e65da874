package e2e

import (
	"log/slog"
	"net"
	"net/netip"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"tunnel-agent/agent"
	"tunnel-agent/agent/config"
	"tunnel-agent/internal/probe"
	"tunnel-agent/internal/topo"
	"tunnel-agent/netcfg"
)

// startTutorialPeer runs the independent implementation of the tutorial's
// loop in namespace ns until the test ends.
func startTutorialPeer(t *testing.T, ns string, args ...string) {
	t.Helper()
	cmd := exec.Command("nsenter", append([]string{"--net=/run/netns/" + ns, tutorialPeerBin}, args...)...)
	out := &syncBuf{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start tutorialpeer: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Logf("tutorialpeer output:\n%s", out.String())
	})
}

// checkBothWays pings both ways (client first, as in the tutorial) and
// moves 10 MB over TCP each way.
func checkBothWays(t *testing.T, s *twoSite, ns1 netns.NsHandle) {
	t.Helper()
	hostB, hostA := s.SiteBHost.Addr(), s.ClientAddr.Addr()
	mustPingEventually(t, "client -> VPS host", s.client(), hostB)
	mustPingEventually(t, "VPS host -> client", ns1, hostA)
	r, err := probe.TCPTransfer(s.client(), ns1, netip.AddrPortFrom(hostB, 5201), 10<<20, 60*time.Second)
	mustTransfer(t, "client -> VPS host", r, err)
	r, err = probe.TCPTransfer(ns1, s.client(), netip.AddrPortFrom(hostA, 5202), 10<<20, 60*time.Second)
	mustTransfer(t, "VPS host -> client", r, err)
}

// TestInteropTutorialClient: site A runs the tutorial's loop (with the
// tutorial's manual blackhole route), site B our agent.
func TestInteropTutorialClient(t *testing.T) {
	s := newTwoSite(t, topo.Options{NAT: true})
	nl := s.Netlink(s.GatewayA)
	_, dst, _ := net.ParseCIDR(s.SiteBLAN.String())
	if err := nl.RouteAdd(&netlink.Route{Dst: dst, Type: 6 /* blackhole */}); err != nil {
		t.Fatalf("sudo ip route add blackhole %s: %v", s.SiteBLAN, err)
	}
	s.agentB = startAgent(t, s.GatewayB, s.args("up", "server")...)
	startTutorialPeer(t, s.GatewayA, "-i", topo.GatewayALANLink, "-local", "0.0.0.0:60000",
		"-remote", netip.AddrPortFrom(s.GatewayBWAN.Addr(), 50000).String(), "-match", s.SiteBHost.Addr().String()+"/32")
	checkBothWays(t, s, s.siteBHost(t))
	s.agentB.stop(t, 2)
	assertSameState(t, "gateway B after SIGINT", s.beforeB, s.dump(t, s.GatewayB))
}

// TestInteropTutorialServer: site A runs our agent, site B the tutorial's
// loop on a host configured as the tutorial's manual commands do (here
// through netcfg, from the server's config file).
func TestInteropTutorialServer(t *testing.T) {
	s := newTwoSite(t, topo.Options{NAT: true})
	cfg, err := config.Load(s.cfgB, nil)
	if err != nil {
		t.Fatal(err)
	}
	self, err := netns.GetFromName(s.GatewayB)
	if err != nil {
		t.Fatal(err)
	}
	h := netcfg.NewNetlinkHostAt(self)
	defer h.Close()
	j := netcfg.NewJournal(filepath.Join(s.dir, "b.json"), "b")
	if err := netcfg.Apply(h, agent.Desired(cfg), j, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatalf("configure site B: %v", err)
	}
	revertB := func() {
		if err := netcfg.Revert(h, j, slog.New(slog.DiscardHandler)); err != nil {
			t.Errorf("revert site B: %v", err)
		}
	}
	defer revertB() // a no-op once reverted: the journal is then empty
	s.agentA = startAgent(t, s.GatewayA, s.args("up", "client")...)
	startTutorialPeer(t, s.GatewayB, "-i", topo.SiteBGatewayLink, "-local", "0.0.0.0:50000",
		"-remote", netip.AddrPortFrom(s.NATOutside.Addr(), 60000).String(), "-match", s.ClientAddr.Addr().String()+"/32")
	checkBothWays(t, s, s.siteBHost(t))
	s.agentA.stop(t, 2)
	revertB()
	assertSameState(t, "gateway A after SIGINT", s.beforeA, s.dump(t, s.GatewayA))
	assertSameState(t, "gateway B after the manual setup is reverted", s.beforeB, s.dump(t, s.GatewayB))
}

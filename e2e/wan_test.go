package e2e

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"tunnel-agent/internal/probe"
	"tunnel-agent/internal/topo"
)

// TestWANAddressComesBack: the client's agent listens on its WAN address
// itself (not 0.0.0.0); that address disappears and comes back, as with a
// DHCP renewal or an interface restart, and the tunnel carries on without
// a restart of the agent.
func TestWANAddressComesBack(t *testing.T) {
	s := newTwoSite(t, topo.Options{})
	listen := "listen: " + s.GatewayAWAN.Addr().String() + ":60000"
	cfg := strings.Replace(s.SiteAYAML("client"), "listen: 0.0.0.0:60000", listen, 1)
	if !strings.Contains(cfg, listen) {
		t.Fatalf("no listen line to replace in:\n%s", cfg)
	}
	if err := os.WriteFile(s.cfgA, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	s.start(t)
	hostB, hostA := s.SiteBHost.Addr(), s.ClientAddr.Addr()
	mustPingEventually(t, "client -> VPS host", s.client(), hostB)

	nl := s.Netlink(s.GatewayA)
	wan, err := nl.LinkByName(topo.GatewayAWANLink)
	if err != nil {
		t.Fatal(err)
	}
	addr := &netlink.Addr{IPNet: prefixNet(s.GatewayAWAN)}
	addr.IPNet.IP = s.GatewayAWAN.Addr().AsSlice()
	if err := nl.AddrDel(wan, addr); err != nil {
		t.Fatal(err)
	}
	r, _ := probe.Ping(s.client(), hostB, 3, 100*time.Millisecond, time.Second, 84)
	t.Logf("while the WAN address is gone: %d/%d replies", r.Received, r.Sent)
	if err := nl.AddrAdd(wan, addr); err != nil {
		t.Fatal(err)
	}
	mustPingEventually(t, "client -> VPS host after the address came back", s.client(), hostB)
	mustPingEventually(t, "VPS host -> client after the address came back", s.siteBHost(t), hostA)
	t.Logf("client agent:\n%s", s.agentA.out.String())
	s.stopAndCompare(t)
}

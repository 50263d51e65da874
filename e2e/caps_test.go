package e2e

import (
	"os/exec"
	"testing"

	"tunnel-agent/internal/topo"
)

// TestCapabilitiesOnly runs both agents as configs/tunnel-agent@.service
// does, without full root: the client site with CAP_NET_ADMIN and
// CAP_NET_RAW only, the server site (which creates a namespace) with
// CAP_SYS_ADMIN added. Traffic flows, and SIGINT still restores both
// hosts.
func TestCapabilitiesOnly(t *testing.T) {
	s := newTwoSite(t, topo.Options{NAT: true})
	s.agentB = startAgentCaps(t, s.GatewayB, "+net_admin,+net_raw,+sys_admin", s.args("up", "server")...)
	s.agentA = startAgentCaps(t, s.GatewayA, "+net_admin,+net_raw", s.args("up", "client")...)
	mustPingEventually(t, "client -> VPS host", s.client(), s.SiteBHost.Addr())
	s.stopAndCompare(t)
}

// startAgentCaps is startAgent with the capability bounding set reduced
// to caps (setpriv, after nsenter has entered the namespace).
func startAgentCaps(t *testing.T, ns, caps string, args ...string) *agentProc {
	t.Helper()
	full := append([]string{"--net=/run/netns/" + ns, "setpriv", "--bounding-set=-all," + caps,
		"--inh-caps=-all", agentBin}, args...)
	return startCmd(t, exec.Command("nsenter", full...))
}

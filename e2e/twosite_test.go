package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netns"

	"tunnel-agent/agent"
	"tunnel-agent/internal/hostdump"
	"tunnel-agent/internal/nstest"
	"tunnel-agent/internal/topo"
)

// twoSite is the demo's topology (client host, gateway A, NAT router,
// gateway B/VPS) with one agent per gateway.
type twoSite struct {
	*topo.Topology
	dir            string
	cfgA, cfgB     string
	beforeA        string
	beforeB        string
	agentA, agentB *agentProc
}

func newTwoSite(t *testing.T, o topo.Options) *twoSite {
	t.Helper()
	nstest.RequireRoot(t)
	o.Prefix = nstest.UniqueName("tae2e")
	tp, err := topo.Build(o)
	if err != nil {
		t.Fatalf("build topology: %v", err)
	}
	t.Cleanup(func() {
		if err := tp.Close(); err != nil {
			t.Errorf("remove topology: %v", err)
		}
	})
	s := &twoSite{Topology: tp, dir: t.TempDir()}
	s.cfgA = writeFile(t, s.dir, "client.yaml", tp.SiteAYAML("client"))
	s.cfgB = writeFile(t, s.dir, "server.yaml", tp.SiteBYAML("server"))
	s.beforeA, s.beforeB = s.dump(t, tp.GatewayA), s.dump(t, tp.GatewayB)
	return s
}

func (s *twoSite) dump(t *testing.T, ns string) string {
	t.Helper()
	d, err := hostdump.Take(s.Handle(ns))
	if err != nil {
		t.Fatalf("dump %s: %v", ns, err)
	}
	return d + "namespaces " + strings.Join(hostdump.Namespaces(s.Prefix), ",") + "\n"
}

func (s *twoSite) args(cmd, site string) []string {
	cfg := map[string]string{"client": s.cfgA, "server": s.cfgB}[site]
	return []string{cmd, "-c", cfg, "--state-dir", filepath.Join(s.dir, site+"-state")}
}

func (s *twoSite) start(t *testing.T) {
	t.Helper()
	s.agentB = startAgent(t, s.GatewayB, s.args("up", "server")...)
	s.agentA = startAgent(t, s.GatewayA, s.args("up", "client")...)
}

// stopAndCompare stops both agents with SIGINT and checks that both
// gateways are exactly as before `up`.
func (s *twoSite) stopAndCompare(t *testing.T) {
	t.Helper()
	for _, a := range []*agentProc{s.agentA, s.agentB} {
		if a == nil {
			continue
		}
		if code := a.stop(t, syscall.SIGINT); code != 0 {
			t.Errorf("agent exit code %d after SIGINT:\n%s", code, a.out.String())
		}
	}
	assertSameState(t, "gateway A after SIGINT", s.beforeA, s.dump(t, s.GatewayA))
	assertSameState(t, "gateway B after SIGINT", s.beforeB, s.dump(t, s.GatewayB))
}

// status reads `tunnel-agent status --json` of a site.
func (s *twoSite) status(t *testing.T, site string) agent.Status {
	t.Helper()
	ns := map[string]string{"client": s.GatewayA, "server": s.GatewayB}[site]
	out, code := runAgent(t, ns, append(s.args("status", site), "--json")...)
	if code != 0 {
		t.Fatalf("status %s: exit %d:\n%s", site, code, out)
	}
	var st agent.Status
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("status %s: %v:\n%s", site, err, out)
	}
	return st
}

// kernelDrops is the sum of both agents' capture and tunnel socket drops
// that the kernel counted.
func (s *twoSite) kernelDrops(t *testing.T) uint64 {
	t.Helper()
	var n uint64
	for _, site := range []string{"client", "server"} {
		st := s.status(t, site)
		n += st.CaptureKernelDrops
		if st.Transport != nil {
			n += st.Transport.KernelDrops
		}
	}
	return n
}

// siteBHost opens the namespace the server's agent created (ns1).
func (s *twoSite) siteBHost(t *testing.T) netns.NsHandle {
	t.Helper()
	h, err := netns.GetFromName(s.SiteBNS)
	if err != nil {
		t.Fatalf("open %s: %v", s.SiteBNS, err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

func (s *twoSite) client() netns.NsHandle { return s.Handle(s.Client) }

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// eventually polls cond every 100ms until it holds or d passes.
func eventually(d time.Duration, cond func() bool) bool {
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		if cond() {
			return true
		}
	}
	return cond()
}

package e2e

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netns"

	"tunnel-agent/internal/nsutil"
	"tunnel-agent/internal/probe"
	"tunnel-agent/internal/topo"
)

// deleteVPSLAN deletes the VPS's LAN veth (veth0, with ns1's end): the
// server's agent must re-create it and re-bind its capture, and traffic
// flow both ways again.
func deleteVPSLAN(t *testing.T, s *twoSite, ns1 netns.NsHandle) {
	t.Helper()
	nl := s.Netlink(s.GatewayB)
	l, err := nl.LinkByName(topo.SiteBGatewayLink)
	if err != nil {
		t.Fatal(err)
	}
	if err := nl.LinkDel(l); err != nil {
		t.Fatal(err)
	}
	waitLog(t, s.agentB, "capture re-bound", "lan="+topo.SiteBGatewayLink)
	mustPingEventually(t, "VPS host -> client after re-creation", ns1, s.ClientAddr.Addr())
	mustPingEventually(t, "client -> VPS host after re-creation", s.client(), s.SiteBHost.Addr())
}

// TestLiveOperations runs the two sites through NAT and, with traffic,
// re-creates the server's LAN veth behind its agent's back, reloads it
// with a new peer while a TCP transfer to the old one runs, feeds it an
// invalid file, and scrapes its metrics; then SIGINT must restore both
// hosts exactly.
func TestLiveOperations(t *testing.T) {
	s := newTwoSite(t, topo.Options{NAT: true})
	const metricsAddr = "127.0.0.1:9110"
	base := s.SiteBYAML("server") + "metrics: {listen: " + metricsAddr + "}\n"
	if err := os.WriteFile(s.cfgB, []byte(base), 0o600); err != nil {
		t.Fatal(err)
	}
	s.start(t)
	ns1 := s.siteBHost(t)
	hostB := s.SiteBHost.Addr()
	mustPingEventually(t, "client -> VPS host", s.client(), hostB)

	t.Run("metrics move with traffic", func(t *testing.T) {
		_, m1 := s.pingMovesPeerPackets(t, metricsAddr, hostB)
		var keys []string
		for k := range m1 {
			if strings.HasPrefix(k, "tunnel_agent_") {
				keys = append(keys, k)
			}
		}
		sort.Strings(keys)
		for _, k := range keys {
			t.Logf("%s %v", k, m1[k])
		}
		if m1[`tunnel_agent_peer_last_received_timestamp_seconds{peer="client"}`] < float64(time.Now().Add(-time.Minute).Unix()) {
			t.Errorf("last received time missing or old: %v", m1)
		}
		for _, k := range []string{`tunnel_agent_transport_kernel_drops_total`, `tunnel_agent_icmp_errors_total{result="bad_source"}`,
			`tunnel_agent_dropped_packets_total{reason="too_big_lan"}`, `tunnel_agent_fragmented_packets_total`,
			`tunnel_agent_fragments_injected_total`, `tunnel_agent_capture_unreadable_total`} {
			if _, ok := m1[k]; !ok {
				t.Errorf("metric %s missing", k)
			}
		}
	})
	t.Run("LAN veth deleted: re-created, capture re-bound, traffic flows", func(t *testing.T) {
		deleteVPSLAN(t, s, ns1)
		m := s.scrape(t, metricsAddr)
		if m[`tunnel_agent_host_repairs_total{action="repaired",item="create veth pair veth0 <-> veth1 (veth1 in `+s.SiteBNS+`)"}`] != 1 {
			t.Errorf("repair of the veth pair not counted once")
		}
	})
	t.Run("SIGHUP adds a peer; a running TCP transfer is not disturbed", func(t *testing.T) {
		north := northSink(t, s, "127.0.0.1:40000")
		tr := startTransfer(t, s.client(), ns1, netip.AddrPortFrom(hostB, 5201), 60*time.Second)
		added := strings.Replace(base, "  blackhole: [192.168.111.0/30]\n", `    - name: north
      endpoint: 127.0.0.1:40000
      prefixes: [10.77.0.0/24]
      keepalive: 1s
  blackhole: [192.168.111.0/30, 10.77.0.0/24]
`, 1)
		if err := os.WriteFile(s.cfgB, []byte(added), 0o600); err != nil {
			t.Fatal(err)
		}
		tr.running(t, "before the reload")
		out, code := runAgent(t, s.GatewayB, s.args("reload", "server")...)
		if code != 0 {
			t.Fatalf("reload: exit %d:\n%s", code, out)
		}
		waitLog(t, s.agentB, "configuration reloaded", "added=north")
		tr.receives(t, "after the reload", 1<<20)
		tr.finish(t, "client -> VPS host across the reload")
		// The new peer gets what ns1 sends to its prefix.
		sendUDP(t, ns1, netip.MustParseAddrPort(s.SiteBHost.Addr().String()+":5555"), netip.MustParseAddrPort("10.77.0.5:7"), []byte("hello north"))
		select {
		case pkt := <-north:
			if len(pkt) < 20 || netip.AddrFrom4([4]byte(pkt[16:20])) != netip.MustParseAddr("10.77.0.5") {
				t.Errorf("north got % x", pkt)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("north got no tunneled packet:\n%s", s.agentB.out.String())
		}
	})
	t.Run("reload: an invalid file exits 2, a refused change 1, and the old config runs on", func(t *testing.T) {
		good, _ := os.ReadFile(s.cfgB)
		for _, tc := range []struct {
			name, from, to string
			code           int
			want           []string
		}{
			// Found by the caller already: the file is invalid anywhere.
			{"bad prefix", "10.77.0.0/24]", "10.77.0.0/33]", 2, []string{"10.77.0.0/33"}},
			// Found only by the agent, in its namespace: the caller checks no host.
			{"LAN interface missing in the agent's namespace", "interface: " + topo.SiteBGatewayLink, "interface: nosuch0", 2,
				[]string{"refused " + s.cfgB + ", the running configuration stays", s.cfgB + ":", `lan.interface: interface "nosuch0" does not exist on this host`}},
			// Valid, but not something a reload can change.
			{"listen port changed", "0.0.0.0:50000", "0.0.0.0:50001", 1,
				[]string{"refused the reload", "tunnel.listen changed from 0.0.0.0:50000 to 0.0.0.0:50001: restart the agent"}},
		} {
			bad := strings.Replace(string(good), tc.from, tc.to, 1)
			if bad == string(good) {
				t.Fatalf("%s: %q not in the file", tc.name, tc.from)
			}
			if err := os.WriteFile(s.cfgB, []byte(bad), 0o600); err != nil {
				t.Fatal(err)
			}
			out, code := runAgent(t, s.GatewayB, s.args("reload", "server")...)
			if code != tc.code || !containsAll(out, tc.want...) {
				t.Errorf("%s: reload exit %d, want %d with %q:\n%s", tc.name, code, tc.code, tc.want, out)
			}
		}
		off := len(s.agentB.out.String())
		_ = s.agentB.cmd.Process.Signal(syscall.SIGHUP) // SIGHUP (systemd's ExecReload) is refused too
		waitLogAfter(t, s.agentB, off, 5*time.Second, "reload rejected", "tunnel.listen changed")
		// The densest junk the 1 MiB cap lets through (over 100 MB for the
		// YAML parser) is checked by the agent's child: the agent's peak
		// memory does not move.
		hwm0 := peakRSS(t, s.agentB.cmd.Process.Pid)
		junk := "x: [" + strings.Repeat("a,", 1<<19-4) + "a]\n"
		if err := os.WriteFile(s.cfgB, []byte(junk), 0o600); err != nil {
			t.Fatal(err)
		}
		off = len(s.agentB.out.String())
		_ = s.agentB.cmd.Process.Signal(syscall.SIGHUP)
		waitLogAfter(t, s.agentB, off, time.Minute, "reload rejected", `unknown field \"x\"`) // the race-built child takes seconds
		if hwm := peakRSS(t, s.agentB.cmd.Process.Pid); hwm > hwm0+16<<10 {
			t.Errorf("a reload of a 1 MiB junk file raised the agent's peak RSS from %d to %d KB", hwm0, hwm)
		} else {
			t.Logf("a reload of a 1 MiB junk file: agent's peak RSS %d KB before, %d KB after", hwm0, hwm)
		}
		if err := os.WriteFile(s.cfgB, good, 0o600); err != nil {
			t.Fatal(err)
		}
		out, code := runAgent(t, s.GatewayB, s.args("reload", "server")...)
		if code != 0 || !strings.Contains(out, "reloaded "+s.cfgB+": 2 peers, added: none, removed: none") {
			t.Errorf("reload of the good file: exit %d:\n%s", code, out)
		}
		r, err := probe.Ping(s.client(), hostB, 3, 50*time.Millisecond, 2*time.Second, 84)
		mustPing(t, "client -> VPS host after refused reloads", r, err)
		m := s.scrape(t, metricsAddr)
		if m[`tunnel_agent_reloads_total{result="failed"}`] != 4 || m[`tunnel_agent_reloads_total{result="ok"}`] != 2 {
			t.Errorf("reloads counted: failed %v ok %v, want 4 and 2", m[`tunnel_agent_reloads_total{result="failed"}`], m[`tunnel_agent_reloads_total{result="ok"}`])
		}
	})
	t.Run("idle connections to the metrics endpoint do not stop a scrape", func(t *testing.T) {
		var conns []net.Conn
		t.Cleanup(func() {
			for _, c := range conns {
				c.Close()
			}
		})
		fds0 := countFDs(t, s.agentB.cmd.Process.Pid)
		for range 500 {
			var c net.Conn
			if err := nsutil.Do(s.Handle(s.GatewayB), func() (err error) { c, err = net.Dial("tcp", metricsAddr); return err }); err != nil {
				t.Fatalf("connection %d: %v", len(conns), err)
			}
			conns = append(conns, c)
		}
		if m := s.scrape(t, metricsAddr); m[`tunnel_agent_reloads_total{result="ok"}`] != 2 {
			t.Errorf("scrape with 500 idle connections: reloads_total{result=\"ok\"} = %v", m[`tunnel_agent_reloads_total{result="ok"}`])
		}
		if fds := countFDs(t, s.agentB.cmd.Process.Pid); fds > fds0+40 {
			t.Errorf("agent holds %d descriptors with 500 idle connections, %d before", fds, fds0)
		}
	})
	t.Run("SIGINT restores both hosts", func(t *testing.T) { s.stopAndCompare(t) })
}

// northSink is a UDP socket in GatewayB standing in for the new peer; it
// passes on every tunneled packet (keepalives, which start with IP
// version 0, are not packets).
func northSink(t *testing.T, s *twoSite, addr string) <-chan []byte {
	t.Helper()
	var c *net.UDPConn
	if err := nsutil.Do(s.Handle(s.GatewayB), func() (err error) {
		c, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.MustParseAddrPort(addr)))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	ch := make(chan []byte, 16)
	go func() {
		buf := make([]byte, 2048)
		for {
			n, err := c.Read(buf)
			if err != nil {
				return
			}
			if n > 0 && buf[0]>>4 != 0 {
				select {
				case ch <- append([]byte(nil), buf[:n]...):
				default:
				}
			}
		}
	}()
	return ch
}

// scrape reads the server agent's metrics (in GatewayB) into a map from
// "name{labels}" to value.
// pingMovesPeerPackets sends 5 pings from the client to dst and checks
// that the server agent's metrics at addr count them, received and sent,
// for its peer "client"; it returns the metrics before and after.
func (s *twoSite) pingMovesPeerPackets(t *testing.T, addr string, dst netip.Addr) (before, after map[string]float64) {
	t.Helper()
	before = s.scrape(t, addr)
	r, err := probe.Ping(s.client(), dst, 5, 20*time.Millisecond, 2*time.Second, 84)
	mustPing(t, "client -> VPS host", r, err)
	after = s.scrape(t, addr)
	for _, k := range []string{`tunnel_agent_peer_packets_total{direction="rx",peer="client"}`,
		`tunnel_agent_peer_packets_total{direction="tx",peer="client"}`} {
		if after[k] < before[k]+5 {
			t.Errorf("%s went from %v to %v, want +5", k, before[k], after[k])
		}
	}
	return before, after
}

func (s *twoSite) scrape(t *testing.T, addr string) map[string]float64 {
	t.Helper()
	var body string
	var conn net.Conn
	err := nsutil.Do(s.Handle(s.GatewayB), func() (err error) { // dial here: the client's goroutines are elsewhere
		conn, err = net.DialTimeout("tcp", addr, 5*time.Second)
		return err
	})
	if err == nil {
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
		c := &http.Client{Transport: &http.Transport{DialContext: func(context.Context, string, string) (net.Conn, error) { return conn, nil }}}
		var resp *http.Response
		if resp, err = c.Get("http://" + addr + "/metrics"); err == nil {
			defer resp.Body.Close()
			var b []byte
			b, err = io.ReadAll(resp.Body)
			body = string(b)
		}
	}
	if err != nil {
		t.Fatalf("scrape %s: %v", addr, err)
	}
	m := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		if i := strings.LastIndexByte(line, ' '); i > 0 {
			v, _ := strconv.ParseFloat(line[i+1:], 64)
			m[line[:i]] = v
		}
	}
	return m
}

func containsAll(s string, parts ...string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}

// countFDs returns how many descriptors process pid has open.
func countFDs(t *testing.T, pid int) int {
	t.Helper()
	return len(openFDs(t, pid))
}

// peakRSS returns the peak resident set size of process pid in KB
// (VmHWM).
func peakRSS(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			n, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			return n
		}
	}
	t.Fatalf("no VmHWM in /proc/%d/status", pid)
	return 0
}

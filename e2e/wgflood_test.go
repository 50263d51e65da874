package e2e

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"tunnel-agent/internal/nsutil"
	"tunnel-agent/internal/topo"
	"tunnel-agent/internal/wgflood"
)

// wgFloodFor is how long the flood lasts.
const wgFloodFor = 5 * time.Second

// wgFloodMaxRSSKB is the bound on the agent's peak resident memory.
const wgFloodMaxRSSKB = 64 << 10

// TestWireGuardHandshakeFlood floods the server with forged handshake
// initiations from the internet side, each with a valid MAC1 (which needs
// only the server's public key), so that each costs it a Diffie-Hellman
// until it goes under load and answers with cookies instead. The agent's
// peak memory must stay bounded, the flood be counted (unknown key, under
// load), and the tunnel work afterwards. The server listens on its WAN
// address only (tunnel.listen), and has no other UDP socket.
func TestWireGuardHandshakeFlood(t *testing.T) {
	s, serverKey := newWGTwoSite(t)
	gwB := netip.AddrPortFrom(s.GatewayBWAN.Addr(), topo.SiteBPort)
	// The server listens on its WAN address only (tunnel.listen).
	s.cfgB = rewriteFile(t, s.cfgB, fmt.Sprintf("listen: 0.0.0.0:%d", topo.SiteBPort), "listen: "+gwB.String())
	// The server runs a binary built without the race detector, whose
	// shadow memory would count in the resident set.
	bin := filepath.Join(t.TempDir(), "tunnel-agent")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/tunnel-agent").CombinedOutput(); err != nil {
		t.Fatalf("build the agent without -race: %v\n%s", err, out)
	}
	s.agentB = startCmd(t, exec.Command("nsenter", append([]string{"--net=/run/netns/" + s.GatewayB, bin}, s.args("up", "server")...)...))
	s.agentA = startAgent(t, s.GatewayA, s.args("up", "client")...)
	hostB := s.SiteBHost.Addr()
	mustPingEventually(t, "client -> VPS host (first handshake)", s.client(), hostB)

	var c *net.UDPConn
	if err := nsutil.Do(s.Handle(s.NAT), func() (err error) {
		c, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(s.NATOutside.Addr(), 40100)))
		return err
	}); err != nil {
		t.Fatalf("flood socket: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	if got := udpSockets(t, s.agentB.cmd.Process.Pid); len(got) != 1 || got[0] != gwB {
		t.Errorf("server's UDP sockets %v, want only %v", got, gwB)
	}
	sent, err := wgflood.Flood(context.Background(), c, gwB, serverKey.PublicKey(), wgFloodFor)
	if err != nil {
		t.Fatalf("flood: %v after %d initiations", err, sent)
	}
	if sent < 1000 {
		t.Fatalf("only %d initiations sent in %v", sent, wgFloodFor)
	}

	mustPingEventually(t, "client -> VPS host after the flood", s.client(), hostB)
	st := s.status(t, "server").WireGuard
	t.Logf("%d initiations sent in %v; server: %d datagrams received, %d dropped by its socket; unknown key %d, "+
		"under load (cookie) %d, rate-limited %d, overload %d, replay %d; %d in-flight packets forgiven",
		sent, wgFloodFor, st.DatagramsReceived, st.SocketDrops, st.HandshakeRejectedUnknownKey,
		st.HandshakeRejectedUnderLoad, st.HandshakeRejectedRateLimited, st.HandshakeRejectedOverload,
		st.HandshakeRejectedReplay, st.InFlightForgiven)
	if st.HandshakeRejectedUnknownKey == 0 || st.HandshakeRejectedUnderLoad == 0 {
		t.Errorf("the flood was not refused as forged (%d) and, once under load, with cookies (%d)",
			st.HandshakeRejectedUnknownKey, st.HandshakeRejectedUnderLoad)
	}
	if got := st.NotWireGuard + st.HandshakeReceived + st.TransportReceived; got != st.DatagramsReceived {
		t.Errorf("server received %d datagrams, its outcomes sum to %d", st.DatagramsReceived, got)
	}
	if kb := peakRSS(t, s.agentB.cmd.Process.Pid); kb > wgFloodMaxRSSKB {
		t.Errorf("server agent's peak RSS %d MiB, want below %d MiB", kb>>10, wgFloodMaxRSSKB>>10)
	} else {
		t.Logf("server agent's peak RSS %.1f MiB", float64(kb)/1024)
	}
}

// rewriteFile replaces old (which must occur) with new in the file.
func rewriteFile(t *testing.T, path, old, new string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil || !strings.Contains(string(b), old) {
		t.Fatalf("%s: %q not found (%v)", path, old, err)
	}
	if err := os.WriteFile(path, []byte(strings.Replace(string(b), old, new, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// udpSockets lists the local addresses of the IPv4 UDP sockets in the
// network namespace of process pid (/proc/PID/net/udp).
func udpSockets(t *testing.T, pid int) []netip.AddrPort {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/udp", pid))
	if err != nil {
		t.Fatal(err)
	}
	var out []netip.AddrPort
	for line := range strings.Lines(string(b)) {
		f := strings.Fields(line)
		if len(f) < 2 || f[0] == "sl" {
			continue
		}
		ip, port, _ := strings.Cut(f[1], ":")
		a, err1 := strconv.ParseUint(ip, 16, 32)
		p, err2 := strconv.ParseUint(port, 16, 16)
		if err1 != nil || err2 != nil {
			t.Fatalf("/proc/%d/net/udp: %q", pid, line)
		}
		var ab [4]byte
		binary.LittleEndian.PutUint32(ab[:], uint32(a))
		out = append(out, netip.AddrPortFrom(netip.AddrFrom4(ab), uint16(p)))
	}
	return out
}

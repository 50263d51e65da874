package e2e

import (
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
	"tunnel-agent/internal/ethfeat"

	"tunnel-agent/internal/nsutil"
)

// These tests change the host behind a running agent's back and check
// that it puts things back (issue 6): one log line per repair, no fight,
// and after SIGINT the host is exactly as before the first `up`.

var blackhole = netip.MustParsePrefix("192.168.111.0/30")

// nlIn returns a netlink handle inside ns, closed when the test ends.
func nlIn(t *testing.T, ns netns.NsHandle) *netlink.Handle {
	t.Helper()
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Delete)
	return h
}

// hasBlackhole reports whether the agent's blackhole route is there.
func hasBlackhole(t *testing.T, nl *netlink.Handle) bool {
	t.Helper()
	rs, err := nl.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Table: unix.RT_TABLE_MAIN,
		Dst: prefixNet(blackhole)}, netlink.RT_FILTER_TABLE|netlink.RT_FILTER_DST)
	if err != nil {
		t.Fatal(err)
	}
	return len(rs) == 1 && rs[0].Type == unix.RTN_BLACKHOLE
}

func delBlackhole(nl *netlink.Handle) error {
	return nl.RouteDel(&netlink.Route{Table: unix.RT_TABLE_MAIN, Dst: prefixNet(blackhole), Type: unix.RTN_BLACKHOLE})
}

func prefixNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), 32)}
}

// within polls cond every 10 ms for up to d and reports how long it took.
func within(d time.Duration, cond func() bool) (time.Duration, bool) {
	start := time.Now()
	for time.Since(start) < d {
		if cond() {
			return time.Since(start), true
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Since(start), cond()
}

func linkMTU(t *testing.T, nl *netlink.Handle, name string) int {
	t.Helper()
	l, err := nl.LinkByName(name)
	if err != nil {
		return 0
	}
	return l.Attrs().MTU
}

// rxChecksum reads (and with set, first changes) veth0's rx-checksum.
func rxChecksum(t *testing.T, ns netns.NsHandle, set *bool) bool {
	t.Helper()
	var on bool
	err := nsutil.Do(ns, func() error {
		et, err := ethfeat.Open()
		if err != nil {
			return err
		}
		defer et.Close()
		if set != nil {
			if err := et.Change("veth0", map[string]bool{"rx-checksum": *set}); err != nil {
				return err
			}
		}
		f, err := et.Features("veth0")
		on = f["rx-checksum"].Active
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return on
}

// cpuTime is the user+system CPU time of process pid (/proc/PID/stat).
func cpuTime(t *testing.T, pid int) time.Duration {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	ut, _ := strconv.Atoi(f[11]) // field 14 of stat, counted from field 3
	st, _ := strconv.Atoi(f[12])
	return time.Duration(ut+st) * time.Second / 100 // USER_HZ
}

func TestWatchRepairsDrift(t *testing.T) {
	s := newVPSSite(t)
	cfg := s.config(t, "")
	before := s.state(t)
	a := startAgent(t, s.host.Name, s.args("up", cfg)...)
	nl := nlIn(t, s.host.Handle)
	ns1 := s.ns1Handle(t)
	nl1 := nlIn(t, ns1)

	t.Run("blackhole route deleted", func(t *testing.T) {
		if err := delBlackhole(nl); err != nil {
			t.Fatal(err)
		}
		if d, ok := within(time.Second, func() bool { return hasBlackhole(t, nl) }); !ok {
			t.Fatalf("blackhole not back after %v:\n%s", d, a.out.String())
		} else {
			t.Logf("blackhole back after %v", d.Round(time.Millisecond))
		}
		waitLog(t, a, "repaired", "add route blackhole 192.168.111.0/30")
	})
	t.Run("LAN MTU set to 1500", func(t *testing.T) {
		l, _ := nl.LinkByName("veth0")
		if err := nl.LinkSetMTU(l, 1500); err != nil {
			t.Fatal(err)
		}
		if _, ok := within(2*time.Second, func() bool { return linkMTU(t, nl, "veth0") == 1420 }); !ok {
			t.Fatalf("MTU %d, want 1420 again:\n%s", linkMTU(t, nl, "veth0"), a.out.String())
		}
		waitLog(t, a, "set MTU of veth0 to 1420", "found=1500")
	})
	t.Run("rx checksumming turned on", func(t *testing.T) {
		on := true
		rxChecksum(t, s.host.Handle, &on)
		if _, ok := within(2*time.Second, func() bool { return !rxChecksum(t, s.host.Handle, nil) }); !ok {
			t.Fatalf("rx-checksum still on:\n%s", a.out.String())
		}
		waitLog(t, a, "repaired", "set features of veth0")
	})
	t.Run("namespace address deleted", func(t *testing.T) {
		l, err := nl1.LinkByName("veth1")
		if err != nil {
			t.Fatal(err)
		}
		addr, _ := netlink.ParseAddr("11.11.11.100/24")
		if err := nl1.AddrDel(l, addr); err != nil {
			t.Fatal(err)
		}
		waitLog(t, a, "repaired", "add address 11.11.11.100/24 to veth1")
		// The default route went with the address; it is back too.
		waitLog(t, a, "repaired", "add route default via 11.11.11.1")
		s.assertTutorialState(t)
		s.assertNS1Reaches(t)
	})
	t.Run("LAN set down", func(t *testing.T) {
		l, _ := nl.LinkByName("veth0")
		if err := nl.LinkSetDown(l); err != nil {
			t.Fatal(err)
		}
		waitLog(t, a, "repaired", "bring up veth0")
		// The capture saw ENETDOWN and carried on; routes via veth0 are back.
		waitLog(t, a, "repaired", "add route default via 11.11.11.1")
		s.assertNS1Reaches(t)
		select {
		case <-a.done:
			t.Fatalf("agent exited:\n%s", a.out.String())
		default:
		}
	})
	t.Run("a fight: 100 deletions in 2 s", func(t *testing.T) {
		pid := a.cmd.Process.Pid
		cpu0 := cpuTime(t, pid)
		start := time.Now()
		deleted := 0
		for i := 0; i < 100 && time.Since(start) < 3*time.Second; i++ {
			if delBlackhole(nl) == nil {
				deleted++
			}
			time.Sleep(20 * time.Millisecond)
		}
		wall := time.Since(start)
		time.Sleep(500 * time.Millisecond)
		cpu := cpuTime(t, pid) - cpu0
		t.Logf("fight: 100 delete attempts, %d found the route, in %v; agent CPU time %v over %v (%.0f%% of one core)",
			deleted, wall.Round(time.Millisecond), cpu, (wall + 500*time.Millisecond).Round(time.Millisecond),
			100*cpu.Seconds()/(wall+500*time.Millisecond).Seconds())
		waitLog(t, a, "no longer repairing", "add route blackhole 192.168.111.0/30")
		if n := strings.Count(a.out.String(), "no longer repairing"); n != 1 {
			t.Errorf("%d give-up lines, want 1", n)
		}
		if hasBlackhole(t, nl) {
			t.Error("blackhole repaired after the agent gave up")
		}
	})
	t.Run("SIGHUP with an invalid file keeps the running configuration", func(t *testing.T) {
		good, _ := os.ReadFile(cfg)
		if err := os.WriteFile(cfg, []byte("site: server\nlan: {interface: veth0, mtu: 99999}\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		_ = a.cmd.Process.Signal(syscall.SIGHUP)
		waitLog(t, a, "reload rejected", "lan.mtu")
		if err := os.WriteFile(cfg, good, 0o600); err != nil {
			t.Fatal(err)
		}
		s.assertNS1Reaches(t)
	})
	t.Run("SIGHUP with the same file resumes repairs", func(t *testing.T) {
		_ = a.cmd.Process.Signal(syscall.SIGHUP)
		waitLog(t, a, "configuration reloaded")
		if _, ok := within(2*time.Second, func() bool { return hasBlackhole(t, nl) }); !ok {
			t.Fatalf("blackhole not repaired after the reload:\n%s", a.out.String())
		}
	})
	t.Run("SIGINT restores the host", func(t *testing.T) {
		if code := a.stop(t, syscall.SIGINT); code != 0 {
			t.Fatalf("exit %d:\n%s", code, a.out.String())
		}
		assertSameState(t, "after repairs and SIGINT", before, s.state(t))
	})
}

// waitLog waits up to 5 s for a log line containing every one of parts.
func waitLog(t *testing.T, a *agentProc, parts ...string) {
	t.Helper()
	waitLogAfter(t, a, 0, 5*time.Second, parts...)
}

// waitLogAfter waits up to d for a line with every one of parts among the
// lines the agent wrote after the first off bytes of its output (what it
// logged after some action).
func waitLogAfter(t *testing.T, a *agentProc, off int, d time.Duration, parts ...string) {
	t.Helper()
	has := func() bool {
		for _, line := range strings.Split(a.out.String()[off:], "\n") {
			all := true
			for _, p := range parts {
				all = all && strings.Contains(line, p)
			}
			if all {
				return true
			}
		}
		return false
	}
	if _, ok := within(d, has); !ok {
		t.Fatalf("no log line with %q:\n%s", parts, a.out.String())
	}
}

// ns1Handle opens the agent-created namespace.
func (s *vpsSite) ns1Handle(t *testing.T) netns.NsHandle {
	t.Helper()
	h, err := netns.GetFromName(s.ns1)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

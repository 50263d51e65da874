package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"tunnel-agent/internal/nstest"
	"tunnel-agent/internal/topo"
)

// plantedJournal is a journal that claims the agent created namespace ns:
// reverting it deletes ns.
func plantedJournal(ns string) string {
	return fmt.Sprintf(`{"version":1,"site":"server","pid":1,"started":"2026-01-01T00:00:00Z",`+
		`"entries":[{"kind":"namespace","ns":%q,"prior":{},"state":"done"}]}`, ns)
}

// TestPlantedJournalRefused is the reproduced attack: with a
// world-writable state directory, a journal planted by nobody made root's
// `down` delete an unrelated namespace. Now `down` refuses the directory,
// and, in a private directory, a journal nobody owns; the namespace stays.
func TestPlantedJournalRefused(t *testing.T) {
	s := newVPSSite(t)
	victim := nstest.New(t, "tae2ev")
	cfg := s.config(t, "")
	state := filepath.Join(s.dir, "state")
	if err := os.Mkdir(state, 0o700); err != nil {
		t.Fatal(err)
	}
	journal := writeFile(t, state, "server.json", plantedJournal(victim.Name))
	if err := os.Chown(journal, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	before := s.state(t)
	for _, tc := range []struct {
		mode os.FileMode
		want string
	}{
		{0o777, "state directory " + state + " is writable by group or others"},
		{0o700, "journal " + journal + " is owned by uid 65534"},
	} {
		if err := os.Chmod(state, tc.mode); err != nil {
			t.Fatal(err)
		}
		for _, cmd := range []string{"down", "up"} {
			out, code := runAgent(t, s.host.Name, s.args(cmd, cfg)...)
			if code != 1 || !strings.Contains(out, tc.want) {
				t.Errorf("%s with state dir mode %04o: exit %d, want 1 and %q:\n%s", cmd, tc.mode, code, tc.want, out)
			}
			if _, err := netns.GetFromName(victim.Name); err != nil {
				t.Fatalf("%s deleted the namespace the planted journal names: %v", cmd, err)
			}
			assertSameState(t, cmd+" with a planted journal", before, s.state(t))
		}
	}
}

// TestPlantedLockSymlinkRefused is the reproduced hole: a planted
// site.lock symlink made the agent truncate a root-owned 0600 file and
// write its PID into it.
func TestPlantedLockSymlinkRefused(t *testing.T) {
	s := newVPSSite(t)
	cfg := s.config(t, "")
	state := filepath.Join(s.dir, "state")
	if err := os.Mkdir(state, 0o700); err != nil {
		t.Fatal(err)
	}
	target := writeFile(t, t.TempDir(), "shadow", "root:secret\n")
	if err := os.Symlink(target, filepath.Join(state, "server.lock")); err != nil {
		t.Fatal(err)
	}
	before := s.state(t)
	for _, cmd := range []string{"up", "down"} {
		out, code := runAgent(t, s.host.Name, s.args(cmd, cfg)...)
		if code != 1 || !strings.Contains(out, "server.lock is a symbolic link") {
			t.Errorf("%s with a symlinked lock: exit %d:\n%s", cmd, code, out)
		}
		if b, _ := os.ReadFile(target); string(b) != "root:secret\n" {
			t.Fatalf("%s wrote through the lock symlink: the target now holds %q", cmd, b)
		}
	}
	assertSameState(t, "after the refusals", before, s.state(t))
}

// TestKeyFileFIFORefused is the reproduced hang: a key file that is a
// FIFO made `check` and `up` block forever (runAgent fails a command
// that takes 60 s).
func TestKeyFileFIFORefused(t *testing.T) {
	s := newVPSSite(t)
	peer, err := wgtypes.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Mkfifo(filepath.Join(s.dir, "site.key"), 0o600); err != nil {
		t.Fatal(err)
	}
	plain := "site: wg\nlan: {interface: lo}\ntunnel:\n  listen: 0.0.0.0:51820\n  peers:\n    - name: p\n      prefixes: [10.1.0.0/24]\n"
	cfg := writeFile(t, s.dir, "wg.yaml", topo.WireGuardYAML(plain, "site.key", peer.PublicKey().String()))
	before := s.state(t)
	for _, cmd := range []string{"check", "up"} {
		out, code := runAgent(t, s.host.Name, s.args(cmd, cfg)...)
		if code != 2 || !strings.Contains(out, "wg.yaml:5:") || !strings.Contains(out, "is not a regular file (a FIFO)") {
			t.Errorf("%s with a FIFO key file: exit %d, want 2 and a file:line error:\n%s", cmd, code, out)
		}
	}
	assertSameState(t, "after the refusals", before, s.state(t))
}

// TestDamagedJournalForceDown: a journal a crash left truncated is
// refused by `down`, which points to `down --force`; that removes what
// the file names and carries the agent's marks, and the host is as
// before. A temporary journal file left by a kill goes too.
func TestDamagedJournalForceDown(t *testing.T) {
	s := newVPSSite(t)
	cfg := s.config(t, "")
	before := s.state(t)
	startAgent(t, s.host.Name, s.args("up", cfg)...).stop(t, syscall.SIGKILL)
	during := s.state(t)
	journal := filepath.Join(s.dir, "state", "server.json")
	b, err := os.ReadFile(journal)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(journal, b[:len(b)/2], 0o600); err != nil {
		t.Fatal(err)
	}
	temp := writeFile(t, filepath.Join(s.dir, "state"), ".server.json.4242", "{")

	out, code := runAgent(t, s.host.Name, s.args("down", cfg)...)
	if code != 1 || !strings.Contains(out, "parse journal") || !strings.Contains(out, "down --force") {
		t.Errorf("down with a damaged journal: exit %d, want 1 pointing to --force:\n%s", code, out)
	}
	assertSameState(t, "after the refused down", during, s.state(t))
	if _, err := os.Stat(temp); !os.IsNotExist(err) {
		t.Errorf("temporary journal %s not removed by down: %v", temp, err)
	}

	out, code = runAgent(t, s.host.Name, append(s.args("down", cfg), "--force")...)
	if code != 0 {
		t.Fatalf("down --force: exit %d:\n%s", code, out)
	}
	wantLines(t, "down --force output", out, "removed route 192.168.111.0/30", "removed veth pair veth0 <-> veth1 in "+s.ns1,
		"removed namespace "+s.ns1, "no journal left")
	assertSameState(t, "after down --force", before, s.state(t))
	out, code = runAgent(t, s.host.Name, s.args("down", cfg)...)
	if code != 0 || !strings.Contains(out, "nothing to revert") {
		t.Errorf("down after down --force: exit %d:\n%s", code, out)
	}
}

package e2e

import (
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"tunnel-agent/internal/nstest"
)

// TestDownFromAnotherNamespace is the reproduced failure: `up` under
// `nsenter --net=A`, SIGKILL, then `down` from namespace B reported
// "reverted 13 recorded changes", exit 0, changed nothing, and removed the
// journal. Now `down` reverts in A, where the journal says the changes
// were made; and while A cannot be opened by name, it refuses with exit 1
// naming A, and keeps the journal.
func TestDownFromAnotherNamespace(t *testing.T) {
	s := newVPSSite(t)
	other := nstest.New(t, "tae2eo")
	cfg := s.config(t, "")
	before := s.state(t)
	startAgent(t, s.host.Name, s.args("up", cfg)...).stop(t, syscall.SIGKILL)
	during := s.state(t)
	if during == before {
		t.Fatal("state after SIGKILL equals state before: the agent changed nothing?")
	}

	// A without its name under /run/netns (kept alive by the test's
	// handle): `down` from B cannot reach it, and says so.
	named := s.host.Path
	if err := unix.Unmount(named, unix.MNT_DETACH); err != nil {
		t.Fatalf("unmount %s: %v", named, err)
	}
	t.Cleanup(func() { rebind(t, named, int(s.host.Handle)) }) // for nstest's removal, if the test stops early
	out, code := runAgent(t, other.Name, s.args("down", cfg)...)
	if code != 1 || !strings.Contains(out, "were made in network namespace net:[") || !strings.Contains(out, "nothing was reverted") {
		t.Errorf("down while the namespace has no name: exit %d, want 1 and a refusal naming it:\n%s", code, out)
	}
	assertSameState(t, "after the refused down", during, s.state(t))
	if _, err := os.Stat(s.dir + "/state/server.json"); err != nil {
		t.Errorf("journal after the refused down: %v; want it kept", err)
	}

	// With its name back, `down` from B reverts in A.
	rebind(t, named, int(s.host.Handle))
	out, code = runAgent(t, other.Name, s.args("down", cfg)...)
	if code != 0 || !strings.Contains(out, "reverting them there") {
		t.Fatalf("down from another namespace: exit %d:\n%s", code, out)
	}
	assertSameState(t, "after down from another namespace", before, s.state(t))
	out, code = runAgent(t, other.Name, s.args("down", cfg)...)
	if code != 0 || !strings.Contains(out, "nothing to revert") {
		t.Errorf("second down: exit %d:\n%s", code, out)
	}
}

// rebind bind-mounts the namespace open as fd at path (as `ip netns
// attach` does), unless something is mounted there already.
func rebind(t *testing.T, path string, fd int) {
	t.Helper()
	var st, fst unix.Stat_t
	if unix.Fstat(fd, &fst) == nil && unix.Stat(path, &st) == nil && st.Dev == fst.Dev && st.Ino == fst.Ino {
		return
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDONLY, 0o444)
	if err != nil {
		t.Fatalf("create %s: %v", path, err)
	}
	f.Close()
	if err := unix.Mount(fmt.Sprintf("/proc/%d/fd/%d", os.Getpid(), fd), path, "none", unix.MS_BIND, ""); err != nil {
		t.Fatalf("bind-mount the namespace at %s: %v", path, err)
	}
}

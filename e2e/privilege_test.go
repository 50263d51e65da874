package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"tunnel-agent/internal/nstest"
)

// TestUnprivilegedUser runs the commands that need root as nobody, in a
// throwaway namespace: each says "permission denied: run as root or with
// CAP_NET_ADMIN" and exits 1, instead of "no running agent" or a lock
// error. The failure is detected where it happens (EACCES on the state
// directory or the status socket, EPERM from netlink), not guessed from
// the user id.
func TestUnprivilegedUser(t *testing.T) {
	ns := nstest.New(t, "tapriv")
	// nobody must be able to run the binary and read the file: a
	// world-readable directory of its own.
	pub, err := os.MkdirTemp("", "tunnel-agent-priv-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(pub) })
	bin := filepath.Join(pub, "tunnel-agent")
	data, err := os.ReadFile(agentBin)
	if err == nil {
		err = os.WriteFile(bin, data, 0o755)
	}
	if err == nil {
		err = os.Chmod(pub, 0o755)
	}
	if err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(pub, "site.yaml")
	if err := os.WriteFile(cfg, []byte("site: priv\nlan: {interface: lo, mtu: 1400}\ntunnel:\n  listen: 0.0.0.0:50000\n"+
		"  peers:\n    - name: p\n      endpoint: 198.18.0.2:50000\n      prefixes: [10.99.0.0/24]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	rootState := filepath.Join(t.TempDir(), "state") // under a 0700 root directory
	if err := os.Mkdir(rootState, 0o700); err != nil {
		t.Fatal(err)
	}
	ownState := filepath.Join(pub, "state") // nobody's own: `up` gets as far as netlink
	if err := os.Mkdir(ownState, 0o700); err == nil {
		err = os.Chown(ownState, 65534, 65534)
	}
	if err != nil {
		t.Fatal(err)
	}
	before := hostState(t, ns, ns.Name)
	for _, tc := range []struct{ cmd, stateDir string }{
		{"status", rootState}, {"reload", rootState}, {"down", rootState}, {"up", rootState}, {"up", ownState},
	} {
		cmd := exec.Command("nsenter", "--net="+ns.Path, "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
			bin, tc.cmd, "-c", cfg, "--state-dir", tc.stateDir)
		out, _ := cmd.CombinedOutput()
		code := cmd.ProcessState.ExitCode()
		if code != 1 || !strings.Contains(string(out), "tunnel-agent: permission denied: run as root or with CAP_NET_ADMIN (") ||
			strings.Contains(string(out), "no running agent") {
			t.Errorf("%s as nobody (state dir %s): exit %d, want 1 and the permission message:\n%s", tc.cmd, tc.stateDir, code, out)
		} else {
			t.Logf("%s as nobody: %s", tc.cmd, strings.TrimSpace(string(out)))
		}
	}
	assertSameState(t, "after the refused commands", before, hostState(t, ns, ns.Name))
}

package agent

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"tunnel-agent/internal/fstrust"
)

// wantUntrusted fails unless err is a refusal of an untrusted file or
// directory whose message holds every part.
func wantUntrusted(t *testing.T, what string, err error, parts ...string) {
	t.Helper()
	if !errors.Is(err, fstrust.ErrUntrusted) {
		t.Fatalf("%s: error %v, want a refusal", what, err)
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("%s: %q lacks %q", what, err, p)
		}
	}
}

func TestLockSiteRefusesUntrustedStateDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	_, err := stateDir(dir).lockSite("s")
	wantUntrusted(t, "world-writable state dir", err, "state directory "+dir, "writable by group or others")
	if _, err := os.Lstat(filepath.Join(dir, "s.lock")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a lock file was created in the refused directory: %v", err)
	}
	if _, err := readStatus(stateDir(dir), "s"); !errors.Is(err, fstrust.ErrUntrusted) {
		t.Errorf("status in a world-writable directory: %v, want a refusal", err)
	}

	link := filepath.Join(t.TempDir(), "link")
	if err := os.Symlink(t.TempDir(), link); err != nil {
		t.Fatal(err)
	}
	_, err = stateDir(link).lockSite("s")
	wantUntrusted(t, "symlinked state dir", err, "symbolic link")
}

func TestLockSiteCreatesStateDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "run", "tunnel-agent")
	l, err := stateDir(dir).lockSite("s")
	if err != nil {
		t.Fatalf("lockSite: %v", err)
	}
	l.release()
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o700 {
		t.Errorf("state directory created with mode %04o, want 0700", fi.Mode().Perm())
	}
}

// TestLockSiteDoesNotFollowSymlink is the reproduced hole: a planted
// site.lock symlink made the agent truncate its target and write its PID
// into it.
func TestLockSiteDoesNotFollowSymlink(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(t.TempDir(), "shadow")
	if err := os.WriteFile(target, []byte("root:x:0:0\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, filepath.Join(dir, "s.lock")); err != nil {
		t.Fatal(err)
	}
	_, err := stateDir(dir).lockSite("s")
	wantUntrusted(t, "symlinked lock", err, "lock "+filepath.Join(dir, "s.lock"), "symbolic link")
	if b, _ := os.ReadFile(target); string(b) != "root:x:0:0\n" {
		t.Errorf("the symlink's target was changed to %q", b)
	}
}

func TestLockSiteRefusesForeignLock(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "s.lock")
	if err := os.WriteFile(path, []byte("1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o666); err != nil {
		t.Fatal(err)
	}
	_, err := stateDir(dir).lockSite("s")
	wantUntrusted(t, "world-writable lock", err, "mode 0666")
	if os.Geteuid() != 0 {
		t.Skip("needs root to give the lock to another user")
	}
	if err := os.Chmod(path, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(path, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	_, err = stateDir(dir).lockSite("s")
	wantUntrusted(t, "lock of nobody", err, "owned by uid 65534")
}

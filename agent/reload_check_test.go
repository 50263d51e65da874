package agent

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"

	"tunnel-agent/agent/config"
)

// validYAML is a minimal valid site.
const validYAML = `site: s
lan: {interface: eth0}
tunnel:
  listen: 0.0.0.0:50000
  peers:
    - name: p
      prefixes: [10.1.0.0/24]
`

// TestCheckChildHelper is the child of the tests below (the test binary
// standing in for the agent's own).
func TestCheckChildHelper(t *testing.T) {
	if os.Getenv("TUNNEL_AGENT_TEST_CHECK_CHILD") != "1" {
		t.Skip("helper process of TestCheckInChild")
	}
	args := os.Args
	for i, a := range args {
		if a == "--" {
			args = args[i+1:]
			break
		}
	}
	os.Exit(Main(args, os.Stdout, os.Stderr))
}

// checkChildSelf is the command line that runs the test binary as the
// child; the test is skipped where the binary cannot run itself (under
// qemu-user without binfmt_misc).
func checkChildSelf(t *testing.T) []string {
	if err := exec.Command(os.Args[0], "-test.run=^$").Run(); errors.Is(err, syscall.ENOEXEC) {
		t.Skipf("the test binary cannot run itself here: %v", err)
	}
	t.Setenv("TUNNEL_AGENT_TEST_CHECK_CHILD", "1")
	return []string{os.Args[0], "-test.run=^TestCheckChildHelper$", "--"}
}

func TestCheckInChild(t *testing.T) {
	self := checkChildSelf(t)
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	bad := filepath.Join(dir, "bad.yaml")
	write := func(p, s string) {
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(good, strings.Replace(validYAML, "eth0", "lo", 1))
	write(bad, strings.Replace(validYAML, "eth0", "nosuch0", 1))
	if err := checkInChild(context.Background(), self, good); err != nil {
		t.Errorf("valid file: %v", err)
	}
	err := checkInChild(context.Background(), self, bad)
	var ce *config.Error
	_, direct := config.Load(bad, hostLinks{sys: osSystem{}})
	if !errors.As(err, &ce) || direct == nil || err.Error() != direct.Error() {
		t.Errorf("invalid file: child says\n%v\nLoadConfig says\n%v", err, direct)
	}
	if err := checkInChild(context.Background(), []string{filepath.Join(dir, "nosuch-binary")}, good); err == nil || errors.As(err, &ce) {
		t.Errorf("child that cannot run: %v, want a failure that is not a *config.Error", err)
	}
}

// TestCheckInChildCostsTheParentLittle: dense junk (256 KiB here; the
// densest 1 MiB costs the parser over 100 MB, see TestLiveOperations)
// costs the agent asking its child almost nothing.
func TestCheckInChildCostsTheParentLittle(t *testing.T) {
	self := checkChildSelf(t)
	junk := filepath.Join(t.TempDir(), "junk.yaml")
	if err := os.WriteFile(junk, []byte("x: ["+strings.Repeat("a,", config.MaxFileSize/8)+"a]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	err := checkInChild(context.Background(), self, junk)
	runtime.ReadMemStats(&after)
	var ce *config.Error
	if !errors.As(err, &ce) {
		t.Fatalf("junk file: %v, want a *config.Error", err)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 4<<20 {
		t.Errorf("asking the child allocated %d KB in the parent", alloc>>10)
	} else {
		t.Logf("asking the child about a %d KB junk file allocated %d KB in the parent", config.MaxFileSize>>12, alloc>>10)
	}
}

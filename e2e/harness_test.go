// Package e2e runs the real tunnel-agent binary inside throwaway network
// namespaces and checks the host state with netlink before, during and
// after. The tests need root; without it they skip with a message.
package e2e

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"tunnel-agent/internal/hostdump"
	"tunnel-agent/internal/nstest"
)

var agentBin, tutorialPeerBin string

func TestMain(m *testing.M) {
	code := func() int {
		if os.Geteuid() != 0 {
			return m.Run() // every test skips via nstest.RequireRoot
		}
		dir, err := os.MkdirTemp("", "tunnel-agent-e2e-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		agentBin = filepath.Join(dir, "tunnel-agent")
		tutorialPeerBin = filepath.Join(dir, "tutorialpeer")
		for bin, pkg := range map[string]string{agentBin: "../cmd/tunnel-agent", tutorialPeerBin: "./tutorialpeer"} {
			out, err := exec.Command("go", "build", "-race", "-o", bin, pkg).CombinedOutput()
			if err != nil {
				fmt.Fprintf(os.Stderr, "build %s: %v\n%s", pkg, err, out)
				return 1
			}
		}
		return m.Run()
	}()
	os.Exit(code)
}

// syncBuf is a bytes.Buffer safe for the process's writer and the test.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// agentProc is one tunnel-agent process started by a test.
type agentProc struct {
	cmd    *exec.Cmd
	out    *syncBuf
	done   chan struct{}
	exitCd int
}

// agentCmd returns the command line running the agent inside namespace ns
// (nsenter --net, so the agent sees the named namespaces it creates).
func agentCmd(ns string, args ...string) *exec.Cmd {
	withDataplane(args) // ebpf_test.go
	full := append([]string{"--net=/run/netns/" + ns, agentBin}, args...)
	return exec.Command("nsenter", full...)
}

// runAgent runs a short command (check, down, a failing up) to completion.
func runAgent(t *testing.T, ns string, args ...string) (string, int) {
	t.Helper()
	cmd := agentCmd(ns, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %v: %v", args, err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("tunnel-agent %v did not finish in 60s:\n%s", args, out.String())
	}
	return out.String(), cmd.ProcessState.ExitCode()
}

// startAgent starts `up` in the background and waits until it says the
// tunnel runs. The process is killed in t.Cleanup if the test did not
// stop it.
func startAgent(t *testing.T, ns string, args ...string) *agentProc {
	t.Helper()
	return startCmd(t, agentCmd(ns, args...))
}

// startCmd starts cmd, an agent's `up` however it is wrapped, and waits
// (bounded) until it logs that the tunnel runs.
func startCmd(t *testing.T, cmd *exec.Cmd) *agentProc {
	t.Helper()
	a := &agentProc{cmd: cmd, out: &syncBuf{}, done: make(chan struct{})}
	a.cmd.Stdout, a.cmd.Stderr = a.out, a.out
	if err := a.cmd.Start(); err != nil {
		t.Fatalf("start agent: %v", err)
	}
	go func() {
		_ = a.cmd.Wait()
		a.exitCd = a.cmd.ProcessState.ExitCode()
		close(a.done)
	}()
	t.Cleanup(func() { a.kill() })
	deadline := time.After(30 * time.Second)
	for !strings.Contains(a.out.String(), "tunnel running") {
		select {
		case <-a.done:
			t.Fatalf("agent %v exited early (code %d):\n%s", cmd.Args, a.exitCd, a.out.String())
		case <-deadline:
			t.Fatalf("agent not ready after 30s:\n%s", a.out.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	return a
}

// stop sends sig and waits (bounded) for the agent to exit; it returns the
// exit code.
func (a *agentProc) stop(t *testing.T, sig syscall.Signal) int {
	t.Helper()
	_ = a.cmd.Process.Signal(sig)
	select {
	case <-a.done:
	case <-time.After(30 * time.Second):
		a.kill()
		t.Fatalf("agent did not exit 30s after %v:\n%s", sig, a.out.String())
	}
	return a.exitCd
}

func (a *agentProc) kill() {
	select {
	case <-a.done:
	default:
		_ = a.cmd.Process.Kill() // nsenter execs the agent: this PID is the agent
		<-a.done
	}
}

// hostState is a full dump of a test namespace plus the named namespaces
// whose names start with the test's prefix.
func hostState(t *testing.T, ns *nstest.NS, prefix string) string {
	t.Helper()
	d, err := hostdump.Take(ns.Handle)
	if err != nil {
		t.Fatalf("dump %s: %v", ns.Name, err)
	}
	return d + "namespaces " + strings.Join(hostdump.Namespaces(prefix), ",") + "\n"
}

func assertSameState(t *testing.T, what, before, after string) {
	t.Helper()
	if d := hostdump.Diff(before, after); d != "" {
		t.Errorf("%s: host state differs from before:\n%s", what, d)
	}
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

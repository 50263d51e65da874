package agent

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// demoAgent is one `tunnel-agent up` started by the demo inside a
// namespace, with its log lines echoed, prefixed by the site name.
type demoAgent struct {
	site     string
	stateDir string
	cmd      *exec.Cmd
	done     chan struct{}
}

func startDemoAgent(ctx context.Context, ns, site, cfg, stateDir string, args []string, out io.Writer) (*demoAgent, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	// nsenter --net only: the agent must see the named namespaces it creates.
	cmd := exec.Command("nsenter", append([]string{"--net=/run/netns/" + ns, self, "up", "-c", cfg, "--state-dir", stateDir}, args...)...)
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start the %s agent: %w", site, err)
	}
	a := &demoAgent{site: site, stateDir: stateDir, cmd: cmd, done: make(chan struct{})}
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			fmt.Fprintf(out, "    [%s agent] %s\n", site, sc.Text())
		}
	}()
	go func() { _ = cmd.Wait(); pw.Close(); close(a.done) }()
	return a, a.waitReady(ctx)
}

// waitReady polls the agent's status socket (bounded in time).
func (a *demoAgent) waitReady(ctx context.Context) error {
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := readStatus(a.stateDir, a.site); err == nil {
			return nil
		}
		select {
		case <-a.done:
			return fmt.Errorf("the %s agent exited during start-up (see its log above)", a.site)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return fmt.Errorf("the %s agent did not become ready in 20s", a.site)
}

// stop sends SIGINT (the agent reverts its host changes) and waits,
// killing it after 20 s. It returns an error unless the agent exited 0
// (which it does only when it reverted everything).
func (a *demoAgent) stop() error {
	_ = a.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-a.done:
	case <-time.After(20 * time.Second):
		_ = a.cmd.Process.Kill()
		<-a.done
		return fmt.Errorf("the %s agent did not stop in 20 s and was killed", a.site)
	}
	if code := a.cmd.ProcessState.ExitCode(); code != 0 {
		return fmt.Errorf("the %s agent exited with code %d (see its log above)", a.site, code)
	}
	return nil
}

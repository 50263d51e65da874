package demo

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
	site string
	cmd  *exec.Cmd
	done chan struct{}
	// in runs the agent's binary in its namespace, with -c and
	// --state-dir of its site after args.
	in func(args ...string) *exec.Cmd
}

func startDemoAgent(ctx context.Context, ns, site, cfg, stateDir string, args []string, out io.Writer) (*demoAgent, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	in := func(args ...string) *exec.Cmd {
		// nsenter --net only: the agent must see the named namespaces it creates.
		return exec.Command("nsenter", append(append([]string{"--net=/run/netns/" + ns, self}, args...), "-c", cfg, "--state-dir", stateDir)...)
	}
	cmd := in(append([]string{"up"}, args...)...)
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start the %s agent: %w", site, err)
	}
	a := &demoAgent{site: site, cmd: cmd, done: make(chan struct{}), in: in}
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			fmt.Fprintf(out, "    [%s agent] %s\n", site, sc.Text())
		}
	}()
	go func() { _ = cmd.Wait(); pw.Close(); close(a.done) }()
	return a, a.waitReady(ctx)
}

// waitReady asks the agent for its status until it answers (bounded in
// time).
func (a *demoAgent) waitReady(ctx context.Context) error {
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if a.status(io.Discard) == nil {
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

// status runs `tunnel-agent status` for the agent's site, its output to
// w: an error unless the agent answered.
func (a *demoAgent) status(w io.Writer) error {
	cmd := a.in("status")
	cmd.Stdout, cmd.Stderr = w, io.Discard
	return cmd.Run()
}

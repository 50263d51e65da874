package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"time"
	"tunnel-agent/agent/config"
)

// A running agent checks a file it is asked to reload in a child process
// (the agent's own binary, in its namespaces) before it parses it itself:
// whatever a broken or hostile file costs the YAML parser and the checks
// (up to about 150 MB for the densest 1 MiB file) is spent and given back
// by the child, and the agent parses only a file known to be valid, whose
// size is that of the configuration it is going to run. A child that dies
// (out of memory, say) fails the reload; the agent runs on.

// checkChildCommand is the hidden command the child runs.
const checkChildCommand = "__check-reload"

// checkChildTimeout bounds the child's run.
const checkChildTimeout = 60 * time.Second

// checkAnswer is what the child prints on stdout.
type checkAnswer struct {
	Errors []config.FieldError `json:"errors"`
}

// checkInChild runs `self __check-reload -c file` and returns the file's
// problems as a *config.Error, nil when it is valid, or another error when
// the child failed.
func checkInChild(ctx context.Context, self []string, file string) error {
	ctx, cancel := context.WithTimeout(ctx, checkChildTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, self[0], append(self[1:], checkChildCommand, "-c", file)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &limitedBuffer{b: &stdout, n: 1 << 20}, &limitedBuffer{b: &stderr, n: 4 << 10}
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("checking the file in a child process failed: %w %s", err, strings.TrimSpace(stderr.String()))
	}
	var ans checkAnswer
	if err := json.Unmarshal(stdout.Bytes(), &ans); err != nil {
		return fmt.Errorf("checking the file in a child process: unreadable answer: %w", err)
	}
	if len(ans.Errors) > 0 {
		return &config.Error{Errors: ans.Errors}
	}
	return nil
}

// runCheckChild is the child: it loads the file as a reload does and
// prints its problems (none when valid) as a checkAnswer.
func runCheckChild(args []string, stdout io.Writer) int {
	if len(args) != 2 || args[0] != "-c" {
		fmt.Fprintf(os.Stderr, "%s: want -c FILE\n", checkChildCommand)
		return ExitUsage
	}
	var ans checkAnswer
	_, err := config.Load(args[1], hostLinks{sys: osSystem{}})
	if ce, ok := err.(*config.Error); ok {
		ans.Errors = ce.Errors
	} else if err != nil {
		ans.Errors = []config.FieldError{{File: args[1], Msg: err.Error()}}
	}
	if err := json.NewEncoder(stdout).Encode(ans); err != nil {
		return ExitFailure
	}
	return ExitOK
}

// limitedBuffer keeps the first n bytes written to it and drops the rest.
type limitedBuffer struct {
	b *bytes.Buffer
	n int
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if room := l.n - l.b.Len(); room > 0 {
		l.b.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

package agent

import (
	"context"
	"os/signal"
	"syscall"

	"tunnel-agent/internal/demo"
)

// runDemo runs the demo (package internal/demo) until it ends or SIGINT
// or SIGTERM stops it; it cleans up either way.
func runDemo(o *options) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := demo.Run(ctx, o.stdout, []string{"--log-level", o.logLevel, "--log-format", o.logFormat}); err != nil {
		return exitError{ExitFailure, err}
	}
	return nil
}

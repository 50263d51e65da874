package demo

import (
	"errors"
	"testing"

	"tunnel-agent/internal/probe"
)

func TestDemoResult(t *testing.T) {
	tcp := &probe.TransferResult{Bytes: 64 << 20, Throughput: 812.4e6}
	tests := []struct {
		err, cleanErr error
		want          string
	}{
		{nil, nil, "demo: OK: ping both ways, TCP 64 MiB at 812 Mbit/s, host restored"},
		{errors.New("ping 11.11.11.100: no replies"), nil, "demo: FAILED: ping 11.11.11.100: no replies (host restored)"},
		{nil, errors.New("the server agent exited with code 1 (see its log above)"),
			"demo: FAILED: cleaning up: the server agent exited with code 1 (see its log above)"},
	}
	for _, tt := range tests {
		if got := demoResult(tt.err, tt.cleanErr, tcp); got != tt.want {
			t.Errorf("demoResult = %q, want %q", got, tt.want)
		}
	}
}

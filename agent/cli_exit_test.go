package agent

import (
	"errors"
	"fmt"
	"io"
	"net/netip"
	"testing"

	"tunnel-agent/agent/config"
	"tunnel-agent/netcfg"
)

// TestExitCodes: a route of the host's in the way of the plan is a
// configuration problem of this host (exit 2, like an invalid file: a
// restart would not help), also when wrapped by `up`.
func TestExitCodes(t *testing.T) {
	conflict := &netcfg.ConflictError{Conflicts: []netcfg.Conflict{{
		Want: netcfg.RouteSpec{Dst: netip.MustParsePrefix("fd00:202::/48"), Type: 6, Metric: 1024},
		Have: netcfg.RouteSpec{Dst: netip.MustParsePrefix("fd00:202::/48"), Type: 1, Dev: "eth0", Protocol: 4, Metric: 1024},
	}}}
	for _, tt := range []struct {
		err  error
		want int
	}{
		{nil, ExitOK},
		{fmt.Errorf("configure host: %w", conflict), ExitUsage},
		{&config.Error{}, ExitUsage},
		{usageError{"x"}, ExitUsage},
		{errors.New("configure host: set MTU of veth0 to 1420: invalid argument"), ExitFailure},
	} {
		if got := report(tt.err, io.Discard); got != tt.want {
			t.Errorf("report(%v) = %d, want %d", tt.err, got, tt.want)
		}
	}
}

package agent

import (
	"bytes"
	"fmt"
	"strings"
	"syscall"
	"testing"
)

func TestReportPermissionDenied(t *testing.T) {
	for _, errno := range []syscall.Errno{syscall.EACCES, syscall.EPERM} {
		var out bytes.Buffer
		err := fmt.Errorf("open lock /run/tunnel-agent/s.lock: %w", errno)
		if code := report(err, &out); code != ExitFailure {
			t.Errorf("%v: exit %d, want %d", errno, code, ExitFailure)
		}
		want := "tunnel-agent: permission denied: run as root or with CAP_NET_ADMIN (open lock /run/tunnel-agent/s.lock: " + errno.Error() + ")\n"
		if out.String() != want {
			t.Errorf("printed %q, want %q", out.String(), want)
		}
	}
	var out bytes.Buffer
	report(statusDialError("/run/tunnel-agent/s.sock", "s", syscall.EACCES), &out)
	if strings.Count(out.String(), "permission denied: run as root") != 1 || strings.Contains(out.String(), "no running agent") {
		t.Errorf("status socket EACCES printed %q", out.String())
	}
	out.Reset()
	cfgErr := &ConfigError{Errors: []FieldError{{File: "x.yaml", Msg: "cannot read the config file: permission denied", Err: syscall.EACCES}}}
	if code := report(cfgErr, &out); code != ExitUsage {
		t.Errorf("unreadable config file: exit %d, want %d (a configuration error)", code, ExitUsage)
	}
}

func TestReloadResult(t *testing.T) {
	tests := []struct {
		v      ReloadVerdict
		code   int
		stdout string
		stderr string
	}{
		{ReloadVerdict{Result: ReloadApplied, PID: 9, File: "/etc/s.yaml", Summary: "2 peers, added: b, removed: none"}, 0,
			"site s: agent pid 9 reloaded /etc/s.yaml: 2 peers, added: b, removed: none\n", ""},
		{ReloadVerdict{Result: ReloadRefused, PID: 9, File: "/etc/s.yaml", Reason: "lan.interface changed from a to b: restart the agent for that"}, 1,
			"", "tunnel-agent: site s: agent pid 9 refused the reload of /etc/s.yaml, the running configuration stays: lan.interface changed from a to b: restart the agent for that\n"},
		{ReloadVerdict{Result: ReloadInvalid, PID: 9, File: "/etc/s.yaml", Errors: []string{"/etc/s.yaml:2:18: lan.interface: \"eth9\" does not exist on this host"}}, 2,
			"", "tunnel-agent: site s: agent pid 9 refused /etc/s.yaml, the running configuration stays:\n/etc/s.yaml:2:18: lan.interface: \"eth9\" does not exist on this host\n"},
		{ReloadVerdict{}, 1, "", "tunnel-agent: site s: the agent answered the reload with \"\": is it an older version? Restart it\n"},
	}
	for _, tt := range tests {
		var stdout, stderr bytes.Buffer
		code := report(reloadResult(&options{stdout: &stdout}, "s", tt.v), &stderr)
		if code != tt.code || stdout.String() != tt.stdout || stderr.String() != tt.stderr {
			t.Errorf("%s: exit %d, stdout %q, stderr %q\nwant exit %d, stdout %q, stderr %q", tt.v.Result, code, stdout.String(), stderr.String(), tt.code, tt.stdout, tt.stderr)
		}
	}
}

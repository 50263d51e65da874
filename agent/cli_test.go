package agent

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"runtime/debug"
	"strings"
	"syscall"
	"testing"

	"tunnel-agent/agent/config"
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
	cfgErr := &config.Error{Errors: []config.FieldError{{File: "x.yaml", Msg: "cannot read the config file: permission denied", Err: syscall.EACCES}}}
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

func TestVersionLine(t *testing.T) {
	info := &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Path: "tunnel-agent", Version: "v0.3.1-0.20260101120000-0123456789ab+dirty"},
		Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "0123456789abcdef0123"}, {Key: "vcs.time", Value: "2026-01-01T12:00:00Z"},
			{Key: "vcs.modified", Value: "true"}}}
	tests := []struct {
		ldflags string
		info    *debug.BuildInfo
		want    string
	}{
		{"", info, "tunnel-agent v0.3.1-0.20260101120000-0123456789ab+dirty (revision 0123456789ab of 2026-01-01T12:00:00Z (modified), go1.26.8)"},
		{"v1.2.3", info, "tunnel-agent v1.2.3 (revision 0123456789ab of 2026-01-01T12:00:00Z (modified), go1.26.8)"},
		{"", &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"}}, "tunnel-agent (devel) (go1.26.8)"},
		{"", nil, "tunnel-agent (unknown version)"},
	}
	for _, tt := range tests {
		if got := versionLine(tt.ldflags, tt.info); got != tt.want {
			t.Errorf("versionLine(%q) = %q, want %q", tt.ldflags, got, tt.want)
		}
	}
	var a, b, errb bytes.Buffer
	if Main([]string{"--version"}, &a, &errb) != 0 || Main([]string{"version"}, &b, &errb) != 0 || a.String() != b.String() ||
		!strings.HasPrefix(a.String(), "tunnel-agent ") || strings.Contains(a.String(), "dev\n") {
		t.Errorf("--version %q, version %q (%s)", a.String(), b.String(), errb.String())
	}
}

func TestCommandHelp(t *testing.T) {
	for name, cmd := range commands {
		var viaHelp, viaFlag, errb bytes.Buffer
		if code := Main([]string{"help", name}, &viaHelp, &errb); code != 0 {
			t.Errorf("help %s: exit %d: %s", name, code, errb.String())
		}
		if code := Main([]string{name, "-h"}, &viaFlag, &errb); code != 0 {
			t.Errorf("%s -h: exit %d: %s", name, code, errb.String())
		}
		out := viaHelp.String()
		if out != viaFlag.String() {
			t.Errorf("help %s and %s -h differ:\n%s\n---\n%s", name, name, out, viaFlag.String())
		}
		for _, want := range []string{"usage: tunnel-agent " + name, cmd.about, "example:\n  " + cmd.example} {
			if want == "" || !strings.Contains(out, want) {
				t.Errorf("help %s lacks %q:\n%s", name, want, out)
			}
		}
	}
	var out, errb bytes.Buffer
	Main([]string{"help", "up"}, &out, &errb)
	for _, flag := range []string{"-c file", "-state-dir directory", "-log-level level", "-log-format format"} {
		if !strings.Contains(out.String(), flag) {
			t.Errorf("help up lacks the flag %q:\n%s", flag, out.String())
		}
	}
	if code := Main([]string{"help", "nosuch"}, &out, &errb); code != ExitUsage {
		t.Errorf("help nosuch: exit %d", code)
	}
}

func TestLogFormat(t *testing.T) {
	var buf bytes.Buffer
	log, err := newLogger("info", "json", &buf)
	if err != nil {
		t.Fatal(err)
	}
	log.Info("host configured", "changes", 3)
	var rec map[string]any
	if err := json.Unmarshal(buf.Bytes(), &rec); err != nil || rec["msg"] != "host configured" || rec["changes"] != 3.0 {
		t.Errorf("json log line %q: %v", buf.String(), err)
	}
	buf.Reset()
	log, _ = newLogger("info", "", &buf)
	log.Info("host configured")
	if !strings.Contains(buf.String(), `msg="host configured"`) {
		t.Errorf("default text log line %q", buf.String())
	}
	var out, errb bytes.Buffer
	if code := Main([]string{"check", "-c", "x.yaml", "--log-format", "xml"}, &out, &errb); code != ExitUsage ||
		!strings.Contains(errb.String(), `bad --log-format "xml": want text or json`) {
		t.Errorf("--log-format xml: exit %d, %q", code, errb.String())
	}
	for _, cmd := range []string{"up", "down", "reload", "check", "status", "demo"} {
		out.Reset()
		Main([]string{"help", cmd}, &out, &errb)
		if !strings.Contains(out.String(), "-log-format") {
			t.Errorf("%s has no --log-format", cmd)
		}
	}
}

func TestSystemdUnitNoRestartOnConfigError(t *testing.T) {
	unit, err := os.ReadFile("../configs/tunnel-agent@.service")
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`(?m)^RestartPreventExitStatus=2$`).Match(unit) {
		t.Error("configs/tunnel-agent@.service restarts on exit code 2 (a configuration error): want RestartPreventExitStatus=2")
	}
}

func TestPubkeyErrorSaysPrivateKey(t *testing.T) {
	t.Cleanup(func() { stdin = os.Stdin })
	for _, in := range []string{"", "garbage\n"} {
		stdin = strings.NewReader(in)
		var out, errb bytes.Buffer
		if code := Main([]string{"pubkey"}, &out, &errb); code != ExitUsage || !strings.Contains(errb.String(), "pubkey reads a WireGuard private key on stdin") {
			t.Errorf("pubkey < %q: exit %d, %q", in, code, errb.String())
		}
	}
}

func TestPrintJSONKeepsArrows(t *testing.T) {
	var buf bytes.Buffer
	if err := printJSON(&buf, map[string]string{"item": "create veth pair veth0 <-> veth1 & more"}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), `"create veth pair veth0 <-> veth1 & more"`) {
		t.Errorf("printJSON escaped: %s", buf.String())
	}
}

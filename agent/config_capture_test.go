package agent

import (
	"strings"
	"testing"

	"tunnel-agent/dataplane/afpacket"
)

func TestLANCapture(t *testing.T) {
	for _, tc := range []struct {
		value string
		want  CaptureMode
		ring  bool
	}{{"", CaptureSocket, false}, {"socket", CaptureSocket, false}, {"ring", CaptureRing, true}} {
		yaml := cfgMinimal
		if tc.value != "" {
			yaml = strings.Replace(cfgMinimal, "{interface: eth0}", "{interface: eth0, capture: "+tc.value+"}", 1)
		}
		cfg := mustParseConfig(t, yaml)
		if cfg.LAN.Capture != tc.want || captureOptions(cfg) != (afpacket.Options{Ring: tc.ring}) {
			t.Errorf("capture %q: got %q, options %+v", tc.value, cfg.LAN.Capture, captureOptions(cfg))
		}
	}
}

func TestLANCaptureErrors(t *testing.T) {
	for name, tc := range map[string]struct {
		yaml string
		want []wantFieldErr
	}{
		"unknown value": {strings.Replace(cfgMinimal, "{interface: eth0}", "{interface: eth0, capture: mmap}", 1),
			[]wantFieldErr{{2, "lan.capture", `unknown capture "mmap": want socket or ring`}}},
		"a list": {strings.Replace(cfgMinimal, "{interface: eth0}", "{interface: eth0, capture: [ring]}", 1),
			[]wantFieldErr{{2, "lan.capture", "expected a single value, got a list"}}},
		"wrong case": {strings.Replace(cfgMinimal, "lan: {interface: eth0}", "lan:\n  interface: eth0\n  capture: Ring", 1),
			[]wantFieldErr{{4, "lan.capture", `unknown capture "Ring"`}}},
	} {
		t.Run(name, func(t *testing.T) {
			checkConfigErrors(t, loadConfigString(t, tc.yaml, cfgHost), tc.want)
		})
	}
}

func TestLANCaptureNeedsRestart(t *testing.T) {
	old := mustParseConfig(t, cfgMinimal)
	nw := *old
	nw.LAN.Capture = CaptureRing
	if err := restartOnly(old, &nw); err == nil || !strings.Contains(err.Error(), "lan.capture") {
		t.Errorf("lan.capture change on reload: %v, want an error naming it", err)
	}
}

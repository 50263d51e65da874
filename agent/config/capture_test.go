package config

import (
	"strings"
	"testing"
)

func TestLANCapture(t *testing.T) {
	for _, tc := range []struct {
		value string
		want  CaptureMode
	}{{"", CaptureSocket}, {"socket", CaptureSocket}, {"ring", CaptureRing}} {
		yaml := cfgMinimal
		if tc.value != "" {
			yaml = strings.Replace(cfgMinimal, "{interface: eth0}", "{interface: eth0, capture: "+tc.value+"}", 1)
		}
		cfg := mustParseConfig(t, yaml)
		if cfg.LAN.Capture != tc.want {
			t.Errorf("capture %q: got %q", tc.value, cfg.LAN.Capture)
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

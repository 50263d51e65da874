package config

import "fmt"

// DataplaneKind is tunnel.dataplane: which code carries the packets.
type DataplaneKind string

// Dataplanes. The zero value is the userspace engine.
const (
	// DataplaneUserspace: the agent's process captures, encapsulates and
	// injects every packet (package dataplane).
	DataplaneUserspace DataplaneKind = ""
	// DataplaneEBPF: two tc programs carry plain mode's fast path in the
	// kernel; the userspace engine answers what they pass up
	// (package dataplane/ebpf, docs/ebpf.md).
	DataplaneEBPF DataplaneKind = "ebpf"
)

func parseDataplane(s string) (DataplaneKind, error) {
	switch s {
	case "userspace":
		return DataplaneUserspace, nil
	case string(DataplaneEBPF):
		return DataplaneEBPF, nil
	}
	return "", fmt.Errorf("unknown dataplane %q: want userspace or ebpf", s)
}

// String is the value as the file spells it.
func (d DataplaneKind) String() string {
	if d == DataplaneUserspace {
		return "userspace"
	}
	return string(d)
}

// dataplane checks tunnel.dataplane against the other settings.
func (v validator) dataplane() {
	if v.cfg.Tunnel.Dataplane != DataplaneEBPF {
		return
	}
	if v.cfg.Tunnel.Mode == ModeWireGuard {
		v.ps.addf("tunnel.dataplane", nil, "the ebpf dataplane carries plain mode only (the programs do no cryptography): remove tunnel.dataplane, or set it to userspace, for wireguard mode")
	}
	if v.cfg.LAN.Capture != CaptureSocket {
		v.ps.addf("lan.capture", nil, "chooses the userspace capture; with tunnel.dataplane: ebpf a tc program captures: remove lan.capture")
	}
}

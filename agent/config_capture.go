package agent

import (
	"fmt"

	"tunnel-agent/dataplane/afpacket"
)

// CaptureMode is lan.capture: how the capture on the LAN interface
// receives. The zero value is the socket path.
type CaptureMode string

// Capture modes.
const (
	CaptureSocket CaptureMode = ""     // "socket": recvmmsg into the read buffers (the default)
	CaptureRing   CaptureMode = "ring" // a TPACKET_V3 ring shared with the kernel (mmap)
)

func parseCaptureMode(s string) (CaptureMode, error) {
	switch s {
	case "socket":
		return CaptureSocket, nil
	case string(CaptureRing):
		return CaptureRing, nil
	}
	return "", fmt.Errorf("unknown capture %q: want socket or ring", s)
}

// captureOptions maps lan.capture onto the dataplane's capture options
// (the ring with its default geometry).
func captureOptions(cfg *Config) afpacket.Options {
	return afpacket.Options{Ring: cfg.LAN.Capture == CaptureRing}
}

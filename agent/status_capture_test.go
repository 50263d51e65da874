package agent

import (
	"log/slog"
	"net/netip"
	"testing"

	"tunnel-agent/agent/config"
)

// TestCaptureCountersAcrossRebinds: the counters of captures a re-bind
// replaced stay in the sums status and metrics report.
func TestCaptureCountersAcrossRebinds(t *testing.T) {
	cfg := &config.Config{LAN: config.LAN{Interface: "lo"}, Tunnel: config.Tunnel{Listen: netip.MustParseAddrPort("0.0.0.0:1"),
		LocalPrefixes: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/24")},
		Peers:         []config.Peer{{Name: "p", Prefixes: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/24")}}}}}
	tun, sys, _ := plainForTest(t, cfg, slog.New(slog.DiscardHandler))
	first := sys.capture(t, 0)
	first.truncated.Store(1)
	if st := tun.status(); st.CaptureTruncated != 1 {
		t.Errorf("before a re-bind: truncated %d, want 1", st.CaptureTruncated)
	}
	if err := tun.RebindCapture(cfg.Tunnel.Peers[0].Prefixes); err != nil {
		t.Fatal(err)
	}
	if first.Send([]byte{0x45}) {
		t.Error("the replaced capture is still open")
	}
	second := sys.capture(t, 1)
	second.truncated.Store(2)
	st := tun.status()
	if st.CaptureTruncated != 3 || st.CaptureKernelDrops != 0 {
		t.Errorf("sum = %+v, want truncated 3", st)
	}
	if got := second.takes(); len(got) != 1 || got[0] != cfg.Tunnel.Peers[0].Prefixes[0] {
		t.Errorf("the new capture takes %v", got)
	}
}

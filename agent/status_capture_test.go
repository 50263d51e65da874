package agent

import "testing"

// TestCaptureCountersAcrossRebinds: the counters of captures a re-bind
// replaced stay in the sums status and metrics report, and status falls
// back to the capture opened at start before the live site has one.
func TestCaptureCountersAcrossRebinds(t *testing.T) {
	l := &liveSite{}
	if _, ok := l.captureCounters(); ok {
		t.Fatal("counters reported before the dataplane started")
	}
	l.capBase = captureCounters{truncated: 1, gsoDropped: 2, kernelDrops: 3}.plus(captureCounters{kernelDrops: 4})
	st := &statusSource{live: l}
	if got := st.captureCounters(); got != (captureCounters{}) {
		t.Errorf("before start: %+v, want the start capture's (none)", got)
	}
	// The live site's sum: the replaced captures' counters plus the
	// current capture's (none here, which reads as zero).
	got, _ := l.captureCounters()
	if want := (captureCounters{truncated: 1, gsoDropped: 2, kernelDrops: 7}); got != want {
		t.Errorf("sum = %+v, want %+v", got, want)
	}
	s := Status{}.withCapture(got)
	if s.CaptureTruncated != 1 || s.CaptureGSODropped != 2 || s.CaptureKernelDrops != 7 {
		t.Errorf("status = %+v", s)
	}
}

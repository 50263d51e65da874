package wireguard

import (
	"testing"
	"time"
)

func TestCreditWaitsForRelease(t *testing.T) {
	c := newCredit(4)
	c.stall = time.Hour // no reclaim in this test
	timer := newStoppedTimer()
	if got := c.wait(timer); got != 4 {
		t.Fatalf("room %d, want 4", got)
	}
	c.Charge(4)
	done := make(chan int)
	go func() { done <- c.wait(timer) }()
	select {
	case n := <-done:
		t.Fatalf("wait returned %d with the credit exhausted", n)
	case <-time.After(50 * time.Millisecond):
	}
	c.Release(3)
	select {
	case n := <-done:
		if n != 3 {
			t.Errorf("room %d after releasing 3, want 3", n)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("wait not woken by Release")
	}
}

// TestCreditReclaimsAfterStall: packets wireguard-go drops without a word
// are never released; a credit exhausted with no release for the stall
// time is reclaimed, one packet at a time until a release is seen.
func TestCreditReclaimsAfterStall(t *testing.T) {
	c := newCredit(4)
	c.stall = 20 * time.Millisecond
	timer := newStoppedTimer()
	c.Charge(4)
	start := time.Now()
	if got := c.wait(timer); got != 1 {
		t.Errorf("room %d after a reclaim, want 1 (probation)", got)
	}
	if time.Since(start) < c.stall || c.reclaims.Load() != 1 {
		t.Errorf("reclaimed after %v (stall %v), %d reclaims", time.Since(start), c.stall, c.reclaims.Load())
	}
	c.Charge(1)
	c.Release(1)
	if got := c.wait(timer); got != 4 {
		t.Errorf("room %d after a release, want 4", got)
	}
	// Releases of reclaimed packets go below zero, never past -max.
	c.Release(100)
	if got := c.InFlight(); got != -4 {
		t.Errorf("in flight %d after over-release, want -4", got)
	}
}

func TestCreditFullReclaims(t *testing.T) {
	c := newCredit(2)
	c.stall = time.Second
	now := time.Now()
	c.Release(1) // a release now; in flight -1
	c.Charge(3)
	if !c.full(now) {
		t.Error("not full with 2 of 2 in flight")
	}
	if c.full(now.Add(2 * time.Second)) {
		t.Error("still full after a stall")
	}
	if c.InFlight() != 0 || c.reclaims.Load() != 1 {
		t.Errorf("in flight %d, %d reclaims after a stall", c.InFlight(), c.reclaims.Load())
	}
}

func TestKeptMask(t *testing.T) {
	bufs := [][]byte{make([]byte, 8), make([]byte, 8), make([]byte, 8)}
	m := newKeptMask(3)
	m.record(bufs, []uint8{kindTransport, 0, kindHandshake}, 3)
	bufs[0] = make([]byte, 8) // the device kept packet 0, skipped 2; 1 was not handed over
	var skipped []uint8
	m.skipped(bufs, func(k uint8) { skipped = append(skipped, k) })
	if len(skipped) != 1 || skipped[0] != kindHandshake {
		t.Errorf("skipped %v, want [handshake]", skipped)
	}
	m.skipped(bufs, func(k uint8) { t.Error("a call is settled twice") })
}

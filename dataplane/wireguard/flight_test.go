package wireguard

import (
	"testing"
	"time"
)

func TestCreditWaitsForRelease(t *testing.T) {
	c := newCredit(4)
	c.epochLen = time.Hour // nothing forgiven in this test
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

// TestCreditForgivesSilentDrops: packets wireguard-go drops without a
// word are never released; once their epoch leaves the window their
// credit is given back.
func TestCreditForgivesSilentDrops(t *testing.T) {
	c := newCredit(4)
	c.epochLen = 5 * time.Millisecond
	c.Charge(4)
	start := time.Now()
	if got := c.wait(newStoppedTimer()); got != 4 {
		t.Errorf("room %d after the window, want 4", got)
	}
	if d := time.Since(start); d < time.Duration(creditEpochs-1)*c.epochLen || c.forgiven.Load() != 4 {
		t.Errorf("forgiven %d packets after %v (window %v)", c.forgiven.Load(), d, creditEpochs*c.epochLen)
	}
}

// TestCreditWindow: a packet released in a later epoch than it was
// charged in leaves the count right once both epochs left the window, and
// a long idle time recycles the window at once.
func TestCreditWindow(t *testing.T) {
	c := newCredit(8)
	c.epochLen = time.Second
	c.Charge(2)
	c.advance(c.start.Add(time.Second))
	c.Release(2)
	c.Charge(1)
	if c.InFlight() != 1 {
		t.Errorf("in flight %d, want 1", c.InFlight())
	}
	c.advance(c.start.Add(time.Duration(creditEpochs+1) * time.Second))
	if c.InFlight() != 0 || c.room() != 8 {
		t.Errorf("in flight %d, room %d once both epochs left the window", c.InFlight(), c.room())
	}
	if c.full(c.start.Add(1000 * time.Hour)) {
		t.Error("full after a long idle time")
	}
	if c.epoch.Load() != 1000*3600 {
		t.Errorf("epoch %d, want %d", c.epoch.Load(), 1000*3600)
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

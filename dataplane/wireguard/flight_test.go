package wireguard

import (
	"net/netip"
	"testing"
	"time"

	"tunnel-agent/dataplane/dptest"
	"tunnel-agent/internal/parked"
)

func TestCreditWaitsForRelease(t *testing.T) {
	c := newCredit(4)
	c.epochLen = time.Hour // nothing forgiven in this test
	timer := newStoppedTimer()
	if got := c.wait(timer); got != 4 {
		t.Fatalf("room %d, want 4", got)
	}
	c.Charge(4)
	// Exhausted: wait blocks (parked.Run fails the test if it returns).
	done := parked.Run(t, parked.Select, func() int { return c.wait(timer) })
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
	if !c.leaking() {
		t.Error("not leaking right after a forgiveness")
	}
	c.advance(time.Now().Add(time.Duration(leakMemory+creditEpochs) * c.epochLen))
	if c.leaking() {
		t.Error("still leaking long after the forgiveness")
	}
}

// TestWireGuardReadSmallWhileLeaking: while outbound packets are
// forgiven, a TUN read takes at most leakBatch packets.
func TestWireGuardReadSmallWhileLeaking(t *testing.T) {
	pkt := dptest.EchoRequest(netip.MustParseAddr("192.168.111.2"), netip.MustParseAddr("11.11.11.100"), 1, 1, 100)
	w := loopTunnel(t, pkt)
	bufs, sizes := newBuffers(32, 2048), make([]int, 32)
	if n, _ := w.tun.Read(bufs, sizes, 16); n != 32 {
		t.Errorf("read %d, want 32", n)
	}
	w.ctr.out.lastForgiven.Store(w.ctr.out.epoch.Load() + 1)
	if n, _ := w.tun.Read(bufs, sizes, 16); n != leakBatch {
		t.Errorf("read %d while leaking, want %d", n, leakBatch)
	}
}

// TestCreditWindow: releases are taken from the oldest epoch first, a
// release of forgiven packets counts for nothing, and a long idle time
// recycles the window at once.
func TestCreditWindow(t *testing.T) {
	c := newCredit(8)
	c.epochLen = time.Second
	c.Charge(2) // epoch 0: 2 that will leak
	c.advance(c.start.Add(time.Second))
	c.Charge(3) // epoch 1
	c.Release(3)
	if c.slot[0].Load() != 0 || c.slot[1].Load() != 2 || c.InFlight() != 2 {
		t.Errorf("slots %d %d, in flight %d: want the oldest released first", c.slot[0].Load(), c.slot[1].Load(), c.InFlight())
	}
	c.advance(c.start.Add(time.Duration(creditEpochs+1) * time.Second))
	if c.InFlight() != 0 || c.room() != 8 || c.forgiven.Load() != 2 {
		t.Errorf("in flight %d, room %d, forgiven %d once the window passed", c.InFlight(), c.room(), c.forgiven.Load())
	}
	c.Release(5) // of forgiven packets
	if c.InFlight() != 0 {
		t.Errorf("in flight %d after releasing forgiven packets", c.InFlight())
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

package dataplane

import (
	"errors"
	"sync"
	"time"
)

// CaptureSlot holds the capture a packet loop reads from, which another
// goroutine may replace while the loop runs (a capture re-opened on a
// re-created LAN interface): the Engine's capture loop and WireGuard
// mode's capture reader share it. The loop reads from Current and, when a
// read fails, asks Next what to do.
type CaptureSlot struct {
	mu      sync.Mutex
	cur     Capture
	gen     uint64 // bumped by Replace
	stopped bool   // Stop ran: no more replacements
}

// NewCaptureSlot returns a slot holding c.
func NewCaptureSlot(c Capture) *CaptureSlot { return &CaptureSlot{cur: c} }

// Current returns the capture to read from and its generation.
func (s *CaptureSlot) Current() (Capture, uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cur, s.gen
}

// Replace makes the loop read from c and closes the previous capture,
// which unblocks the loop's read. After Stop it closes c and returns
// ErrStopped.
func (s *CaptureSlot) Replace(c Capture) error {
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		c.Close()
		return ErrStopped
	}
	old := s.cur
	s.cur = c
	s.gen++
	s.mu.Unlock()
	return old.Close()
}

// Stop refuses further replacements and returns the capture to close.
func (s *CaptureSlot) Stop() Capture {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopped = true
	return s.cur
}

// interfaceDownPause bounds the read loop while the interface stays down.
const interfaceDownPause = 10 * time.Millisecond

// Next decides what the loop does after c (generation gen) returned err:
// read from a capture that replaced it, keep reading c after a transient
// error (the interface went down: it pauses briefly first), or stop (nil).
func (s *CaptureSlot) Next(c Capture, gen uint64, err error) (Capture, uint64) {
	cur, curGen := s.Current()
	if curGen != gen {
		return cur, curGen
	}
	if errors.Is(err, ErrInterfaceDown) {
		time.Sleep(interfaceDownPause)
		return c, gen
	}
	return nil, gen
}

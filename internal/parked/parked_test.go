package parked

import (
	"os"
	"testing"
)

// TestRun: a goroutine reading an empty pipe is seen in "IO wait" once
// parked, one waiting on a channel in "chan receive" and not in "IO
// wait"; the running goroutine is in neither.
func TestRun(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	done := Run(t, IOWait, func() error {
		_, err := r.Read(make([]byte, 1))
		return err
	})
	if _, err := w.Write([]byte{1}); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("pipe read: %v", err)
	}

	release := make(chan struct{})
	ids := make(chan uint64, 1)
	recv := Run(t, "chan receive", func() struct{} {
		ids <- goroutineID()
		return <-release
	})
	if g := <-ids; in(allStacks(), g, IOWait) || !in(allStacks(), g, "chan receive") {
		t.Errorf("a goroutine waiting on a channel is not reported in \"chan receive\" only:\n%s", allStacks())
	}
	close(release)
	<-recv
	if me := goroutineID(); in(allStacks(), me, IOWait) || in(allStacks(), me, "chan receive") {
		t.Errorf("the running goroutine %d is reported parked", me)
	}
}

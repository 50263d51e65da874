package vethtest

import (
	"os"
	"runtime"
	"testing"
)

// TestIOWait: a goroutine reading an empty pipe is seen in "IO wait"
// once parked; one waiting on a channel never is.
func TestIOWait(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	done := BlockedRead(t, func() error {
		_, err := r.Read(make([]byte, 1))
		return err
	})
	if _, err := w.Write([]byte{1}); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("pipe read: %v", err)
	}

	ids := make(chan uint64)
	release := make(chan struct{})
	go func() {
		ids <- goroutineID()
		<-release
	}()
	g := <-ids
	for range 100 {
		runtime.Gosched()
	}
	if ioWait(allStacks(), g) {
		t.Errorf("a goroutine waiting on a channel is reported in IO wait")
	}
	close(release)
	if me := goroutineID(); ioWait(allStacks(), me) {
		t.Errorf("the running goroutine %d is reported in IO wait", me)
	}
}

package vethtest

import (
	"bytes"
	"fmt"
	"runtime"
	"strconv"
	"testing"
	"time"
)

// BlockedRead runs read in a new goroutine and returns once that
// goroutine is parked in the runtime's network poller (goroutine state
// "IO wait"): blocked in a read on a descriptor with nothing to read, not
// merely about to start one. The channel receives read's result when it
// returns. The test fails if read returns first or is not parked within
// 5 s.
//
// The state is the runtime's own (runtime.Stack), so the check holds on a
// loaded machine where a fixed sleep may end before the read has begun,
// and it needs no hook in the code under test.
func BlockedRead[T any](t testing.TB, read func() T) <-chan T {
	t.Helper()
	done := make(chan T, 1)
	id := make(chan uint64, 1)
	go func() {
		id <- goroutineID()
		done <- read()
	}()
	g := <-id
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		select {
		case r := <-done:
			t.Fatalf("the read returned before it blocked: %v", r)
		default:
		}
		all := allStacks()
		if ioWait(all, g) {
			return done
		}
		if time.Now().After(deadline) {
			t.Fatalf("the read's goroutine %d is not parked in the poller after 5s:\n%s", g, all)
		}
	}
}

// ioWait reports whether goroutine g is in state "IO wait" in stacks, a
// runtime.Stack dump of all goroutines.
func ioWait(stacks []byte, g uint64) bool {
	prefix := []byte("goroutine " + strconv.FormatUint(g, 10) + " ")
	for line := range bytes.Lines(stacks) {
		if bytes.HasPrefix(line, prefix) {
			return bytes.Contains(line, []byte("[IO wait"))
		}
	}
	return false
}

// allStacks is runtime.Stack of every goroutine, whole.
func allStacks() []byte {
	for buf := make([]byte, 64<<10); ; buf = make([]byte, 2*len(buf)) {
		if n := runtime.Stack(buf, true); n < len(buf) {
			return buf[:n]
		}
	}
}

// goroutineID is the calling goroutine's number as runtime.Stack prints
// it ("goroutine 42 [running]:").
func goroutineID() uint64 {
	var buf [64]byte
	s := buf[:runtime.Stack(buf[:], false)]
	s, _ = bytes.CutPrefix(s, []byte("goroutine "))
	s, _, _ = bytes.Cut(s, []byte(" "))
	n, err := strconv.ParseUint(string(s), 10, 64)
	if err != nil {
		panic(fmt.Sprintf("goroutineID: cannot parse %q: %v", buf[:], err))
	}
	return n
}

// Package parked lets a test act on a goroutine once it is certainly
// blocked: in a read on a socket, on a channel, in a select. It reads the
// goroutine's state from the runtime (runtime.Stack), so it holds on a
// loaded machine where a fixed sleep may end before the goroutine got
// there, and it needs no hook in the code under test.
package parked

import (
	"bytes"
	"fmt"
	"runtime"
	"strconv"
	"testing"
	"time"
)

// The states of a parked goroutine as runtime.Stack names them.
const (
	IOWait = "IO wait" // in the network poller: a read or write on a socket, pipe... with nothing to do
	Select = "select"  // in a select with no ready case
)

// Run runs fn in a new goroutine and returns once that goroutine is
// parked in state (IOWait, Select, or another name runtime.Stack prints,
// such as "chan receive"); the channel receives fn's result when it
// returns. The test fails if fn returns first or the goroutine is not so
// parked within 5 s. The first such park of fn must be the one the test
// is about (a read that blocks, not a lock on the way to it).
func Run[T any](t testing.TB, state string, fn func() T) <-chan T {
	t.Helper()
	done := make(chan T, 1)
	id := make(chan uint64, 1)
	go func() {
		id <- goroutineID()
		done <- fn()
	}()
	g := <-id
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		select {
		case r := <-done:
			t.Fatalf("returned before it was parked in %q: %v", state, r)
		default:
		}
		all := allStacks()
		if in(all, g, state) {
			return done
		}
		if time.Now().After(deadline) {
			t.Fatalf("goroutine %d not parked in %q after 5s:\n%s", g, state, all)
		}
	}
}

// in reports whether goroutine g is in state in stacks, a runtime.Stack
// dump of all goroutines.
func in(stacks []byte, g uint64, state string) bool {
	prefix := []byte("goroutine " + strconv.FormatUint(g, 10) + " ")
	for line := range bytes.Lines(stacks) {
		if bytes.HasPrefix(line, prefix) {
			return bytes.Contains(line, []byte("["+state+"]")) || bytes.Contains(line, []byte("["+state+", "))
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

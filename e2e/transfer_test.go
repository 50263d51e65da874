package e2e

import (
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netns"

	"tunnel-agent/internal/probe"
)

// runningTransfer is a TCP transfer that sends until finish is called
// (probe.TransferOptions.Stop), so that it spans an operation however
// fast the path is, and whose progress the test watches.
type runningTransfer struct {
	p    probe.TransferProgress
	stop chan struct{}
	once sync.Once
	done chan error
	res  probe.TransferResult
}

// startTransfer starts a transfer from srcNS to dst (listening in dstNS)
// that ends within timeout at the latest, and waits until it has
// demonstrably started: a MiB has crossed. A test that fails before
// finish stops it in t.Cleanup.
func startTransfer(t *testing.T, srcNS, dstNS netns.NsHandle, dst netip.AddrPort, timeout time.Duration) *runningTransfer {
	t.Helper()
	tr := &runningTransfer{stop: make(chan struct{}), done: make(chan error, 1)}
	go func() {
		var err error
		tr.res, err = probe.TCPTransferWith(srcNS, dstNS, dst,
			probe.TransferOptions{Timeout: timeout, Progress: &tr.p, Stop: tr.stop})
		tr.done <- err
	}()
	t.Cleanup(func() {
		tr.once.Do(func() { close(tr.stop) })
		tr.done <- <-tr.done
	})
	tr.receives(t, "at the start", 1<<20)
	return tr
}

// running fails the test if the transfer has ended (it would prove
// nothing about what comes next).
func (tr *runningTransfer) running(t *testing.T, when string) {
	t.Helper()
	select {
	case err := <-tr.done:
		tr.done <- err // for the cleanup
		t.Fatalf("the transfer ended %s (%d bytes received, err %v): it proves nothing", when, tr.p.Received.Load(), err)
	default:
	}
}

// receives waits until the receiver has read n bytes beyond all that
// the sender had handed to its kernel when receives was called: bytes
// that crossed the path after that moment, whatever the socket buffers
// held. It fails the test if the transfer ends first or 30 s pass.
func (tr *runningTransfer) receives(t *testing.T, when string, n int64) {
	t.Helper()
	// A write under way may have handed its chunk over already.
	want := tr.p.Sent.Load() + probe.SendChunk + n
	for deadline := time.Now().Add(30 * time.Second); tr.p.Received.Load() < want; time.Sleep(5 * time.Millisecond) {
		tr.running(t, when)
		if time.Now().After(deadline) {
			t.Fatalf("the transfer did not move %s: %d of the %d bytes wanted received in 30s", when, tr.p.Received.Load(), want)
		}
	}
}

// finish stops the sending and checks that every byte arrived intact.
func (tr *runningTransfer) finish(t *testing.T, what string) {
	t.Helper()
	tr.once.Do(func() { close(tr.stop) })
	err := <-tr.done
	tr.done <- err // for the cleanup
	mustTransfer(t, what, tr.res, err)
}

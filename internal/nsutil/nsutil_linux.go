// Package nsutil runs code inside a network namespace without ever moving
// the calling goroutine's thread: the work happens on a fresh goroutine
// locked to its OS thread, which is switched back afterwards, or discarded
// by the Go runtime (left locked) when switching back fails.
package nsutil

import (
	"fmt"
	"runtime"

	"github.com/vishvananda/netns"
)

// Do runs fn on a locked OS thread inside the namespace h and returns its
// error. Sockets that fn opens stay in that namespace after Do returns.
func Do(h netns.NsHandle, fn func() error) error {
	return onLockedThread(func() error {
		if err := netns.Set(h); err != nil {
			return fmt.Errorf("enter namespace: %w", err)
		}
		return fn()
	})
}

// NewNamed creates the named network namespace (bind-mounted under
// /run/netns) and returns a handle to it.
func NewNamed(name string) (netns.NsHandle, error) {
	h := netns.None()
	err := onLockedThread(func() error {
		var err error
		h, err = netns.NewNamed(name) // moves this thread into the new namespace
		return err
	})
	return h, err
}

// onLockedThread runs fn on a new goroutine locked to its OS thread and
// puts the thread back into its original namespace afterwards.
func onLockedThread(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- fmt.Errorf("get current namespace: %w", err)
			return
		}
		defer orig.Close()
		ferr := fn()
		if err := netns.Set(orig); err != nil {
			// The thread stays locked: the runtime discards it on exit.
			errc <- fmt.Errorf("restore namespace: %w", err)
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

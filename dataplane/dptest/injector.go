package dptest

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
)

// Injector is an in-memory dataplane.Injector: every injected packet is
// copied onto the channel returned by Out.
type Injector struct {
	out chan []byte
	c   closer

	mu  sync.Mutex
	err error // when set, WriteBatch fails with it
}

// NewInjector returns an open Injector.
func NewInjector() *Injector {
	return &Injector{out: make(chan []byte, queueLen), c: newCloser()}
}

// Out delivers the injected packets, in order.
func (i *Injector) Out() <-chan []byte { return i.out }

// Recv waits up to timeout for the next injected packet.
func (i *Injector) Recv(timeout time.Duration) ([]byte, error) {
	select {
	case p := <-i.out:
		return p, nil
	case <-time.After(timeout):
		return nil, errors.New("dptest: no packet injected within " + timeout.String())
	}
}

// SetError makes WriteBatch fail with err (nil: succeed again).
func (i *Injector) SetError(err error) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.err = err
}

// WriteBatch implements dataplane.Injector.
func (i *Injector) WriteBatch(pkts [][]byte) (int, error) {
	i.mu.Lock()
	err := i.err
	i.mu.Unlock()
	if err != nil {
		return 0, err
	}
	if i.c.isClosed() {
		return 0, fmt.Errorf("dptest: injector closed: %w", net.ErrClosed)
	}
	for n, p := range pkts {
		select {
		case i.out <- clone(p):
		case <-i.c.done:
			return n, fmt.Errorf("dptest: injector closed: %w", net.ErrClosed)
		}
	}
	return len(pkts), nil
}

// Close implements dataplane.Injector.
func (i *Injector) Close() error {
	i.c.close("injector", nil)
	return nil
}

// Discard is a dataplane.Injector that takes every packet and keeps none,
// so that a benchmark measures what comes before injection.
type Discard struct{}

func (Discard) WriteBatch(pkts [][]byte) (int, error) { return len(pkts), nil }
func (Discard) Close() error                          { return nil }

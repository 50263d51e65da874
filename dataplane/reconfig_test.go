package dataplane_test

import (
	"bytes"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"tunnel-agent/dataplane"
	"tunnel-agent/dataplane/dptest"
)

var northOuter = ap("203.0.113.9:40000")

// eastWithNorth is eastConfig plus a peer "north" with a configured
// endpoint and keepalives.
func eastWithNorth() dataplane.Config {
	c := eastConfig()
	c.Peers = append(c.Peers, dataplane.PeerConfig{Name: "north", Endpoint: northOuter,
		Prefixes: pfxs("10.9.0.0/24"), Keepalive: time.Hour})
	return c
}

// TestReconfigureAddsAndRemovesPeer: a peer added while the engine runs
// gets traffic and a keepalive at once; the existing, learning peer keeps
// its learned endpoint and counters; removing the new peer again makes its
// prefix unroutable.
func TestReconfigureAddsAndRemovesPeer(t *testing.T) {
	checkNoLeaks(t)
	nw := dptest.NewNetwork()
	west := startGateway(t, nw, westOuter, westConfig())
	east := startGateway(t, nw, eastOuter, eastConfig())
	north := nw.Listen(northOuter)
	t.Cleanup(func() { north.Close() })

	echo := dptest.EchoRequest(westHost, eastHost, 1, 1, 56)
	west.capture.Send(echo)
	recvInjected(t, east)
	before := east.peerStats(t, "west")

	if err := east.eng.Reconfigure(eastWithNorth()); err != nil {
		t.Fatal(err)
	}
	if d, err := north.Recv(timeout); err != nil || len(d.Data) == 0 || d.Data[0] != 0 || d.Data[1] != 1 {
		t.Fatalf("no keepalive to the new peer: %v %x", err, d.Data)
	}
	toNorth := dptest.EchoRequest(eastHost, ip("10.9.0.5"), 2, 1, 56)
	east.capture.Send(toNorth)
	if got := recvSkippingKeepalives(t, north); !bytes.Equal(got, forwarded(toNorth)) {
		t.Fatalf("new peer got %x", got)
	}
	// The old peer: endpoint still known without west sending again.
	reply := dptest.EchoRequest(eastHost, westHost, 3, 1, 56)
	east.capture.Send(reply)
	if got := recvInjected(t, west); !bytes.Equal(got, forwarded(reply)) {
		t.Fatalf("west got % x", got)
	}
	after := east.peerStats(t, "west")
	if after.RxPackets != before.RxPackets || after.CurrentEndpoint != westOuter || after.TxPackets != before.TxPackets+1 {
		t.Errorf("west's stats across reload: before %+v after %+v", before, after)
	}

	if err := east.eng.Reconfigure(eastConfig()); err != nil {
		t.Fatal(err)
	}
	east.capture.Send(toNorth)
	waitDrop(t, east, "no_route", 1)
	if n := len(east.eng.Stats().Peers); n != 1 {
		t.Errorf("%d peers after removing north", n)
	}
}

// TestReconfigureRejectsInvalid: a bad configuration is refused and the
// running one keeps working.
func TestReconfigureRejectsInvalid(t *testing.T) {
	checkNoLeaks(t)
	nw := dptest.NewNetwork()
	west := startGateway(t, nw, westOuter, westConfig())
	east := startGateway(t, nw, eastOuter, eastConfig())
	bad := eastWithNorth()
	bad.Peers[1].Prefixes = pfxs("192.168.111.0/24") // same prefix as west
	if err := east.eng.Reconfigure(bad); err == nil {
		t.Fatal("Reconfigure accepted a prefix owned by two peers")
	}
	echo := dptest.EchoRequest(westHost, eastHost, 1, 1, 56)
	west.capture.Send(echo)
	recvInjected(t, east)
}

// TestReplaceCapture: a capture swapped in while the engine runs (the LAN
// interface was re-created) is read from; the old one is closed; Run goes
// on.
func TestReplaceCapture(t *testing.T) {
	checkNoLeaks(t)
	nw := dptest.NewNetwork()
	west := startGateway(t, nw, westOuter, westConfig())
	east := startGateway(t, nw, eastOuter, eastConfig())
	fresh := dptest.NewCapture()
	if err := west.eng.ReplaceCapture(fresh); err != nil {
		t.Fatal(err)
	}
	if west.capture.Send(dptest.EchoRequest(westHost, eastHost, 1, 1, 56)) {
		t.Error("old capture still open after ReplaceCapture")
	}
	echo := dptest.EchoRequest(westHost, eastHost, 1, 2, 56)
	fresh.Send(echo)
	if got := recvInjected(t, east); !bytes.Equal(got, forwarded(echo)) {
		t.Fatalf("east got % x", got)
	}
	if err := west.stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if err := west.eng.ReplaceCapture(dptest.NewCapture()); !errors.Is(err, dataplane.ErrStopped) {
		t.Errorf("ReplaceCapture after stop: %v", err)
	}
}

// downOnce is a capture whose first read fails as one does when its
// interface goes down.
type downOnce struct {
	*dptest.Capture
	failed atomic.Bool
}

func (d *downOnce) ReadBatch(bufs [][]byte, sizes []int) (int, error) {
	if !d.failed.Swap(true) {
		return 0, fmt.Errorf("read packet lan0: %w", dataplane.ErrInterfaceDown)
	}
	return d.Capture.ReadBatch(bufs, sizes)
}

// TestCaptureInterfaceDown: a read error wrapping ErrInterfaceDown does
// not stop the engine, which goes on reading the same capture.
func TestCaptureInterfaceDown(t *testing.T) {
	checkNoLeaks(t)
	nw := dptest.NewNetwork()
	west := startGateway(t, nw, westOuter, westConfig())
	east := startGateway(t, nw, eastOuter, eastConfig())
	down := &downOnce{Capture: dptest.NewCapture()}
	if err := west.eng.ReplaceCapture(down); err != nil {
		t.Fatal(err)
	}
	echo := dptest.EchoRequest(westHost, eastHost, 1, 3, 56)
	down.Send(echo)
	if got := recvInjected(t, east); !bytes.Equal(got, forwarded(echo)) {
		t.Fatalf("east got % x", got)
	}
	if !down.failed.Load() {
		t.Fatal("the capture was never read")
	}
}

// TestReconfigureUnderTraffic runs reloads while both directions carry
// packets (for the race detector) and checks nothing of the unchanged
// peer is lost.
func TestReconfigureUnderTraffic(t *testing.T) {
	checkNoLeaks(t)
	nw := dptest.NewNetwork()
	west := startGateway(t, nw, westOuter, westConfig())
	east := startGateway(t, nw, eastOuter, eastConfig())
	north := nw.Listen(northOuter)
	t.Cleanup(func() { north.Close() })
	stopDrain := make(chan struct{})
	drained := make(chan struct{})
	go func() { // keepalives to north, one per reload
		defer close(drained)
		for {
			select {
			case <-stopDrain:
				return
			default:
				_, _ = north.Recv(10 * time.Millisecond)
			}
		}
	}()
	defer func() { close(stopDrain); <-drained }()
	const n = 200
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range n {
			west.capture.Send(dptest.EchoRequest(westHost, eastHost, 7, uint16(i), 56))
		}
	}()
	for i := 0; ; i++ {
		cfg := eastConfig()
		if i%2 == 0 {
			cfg = eastWithNorth()
		}
		if err := east.eng.Reconfigure(cfg); err != nil {
			t.Fatal(err)
		}
		_ = east.eng.Stats()
		select {
		case <-done:
			for range n {
				recvInjected(t, east)
			}
			if got := east.peerStats(t, "west").RxPackets; got != n {
				t.Errorf("west rx %d, want %d", got, n)
			}
			return
		default:
		}
	}
}

// recvSkippingKeepalives is the next datagram to c that is not a
// keepalive: the engine's keepalive timer may send another one to a new
// peer at any time, before or after the packet a test waits for.
func recvSkippingKeepalives(t *testing.T, c *dptest.Transport) []byte {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		d, err := c.Recv(time.Until(deadline))
		if err != nil {
			t.Fatalf("no datagram but keepalives: %v", err)
		}
		if len(d.Data) > 0 && d.Data[0]>>4 != 0 { // keepalives carry version 0
			return d.Data
		}
	}
}

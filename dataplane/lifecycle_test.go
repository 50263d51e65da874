package dataplane_test

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"tunnel-agent/dataplane"
	"tunnel-agent/dataplane/dptest"
)

// TestKeepalive runs two gateways that know each other's endpoints: each
// sends keepalive requests at once and then every interval, and the other
// counts them without counting packets and answers them, within its reply
// limit.
func TestKeepalive(t *testing.T) {
	checkNoLeaks(t)
	nw := dptest.NewNetwork()
	wc, ec := westConfig(), eastConfig()
	wc.Peers[0].Keepalive = 10 * time.Millisecond
	ec.Peers[0].Endpoint, ec.Peers[0].Keepalive = westOuter, time.Hour
	west := startGateway(t, nw, westOuter, wc)
	east := startGateway(t, nw, eastOuter, ec)
	// West asks every 10 ms; east answers the first 5 at once (its burst)
	// and holds back the rest within the second.
	waitFor(t, "east answered 5 and held back one", func() bool {
		return east.eng.Stats().KeepaliveRepliesRateLimited >= 1 && east.peerStats(t, "west").KeepalivesAnswered >= 5
	})
	// East's interval is an hour: only the request sent at start (the
	// first may have been lost if west was not listening yet), which west
	// answered.
	waitFor(t, "east's first keepalive", func() bool { return east.peerStats(t, "west").KeepalivesSent == 1 })
	ws, es := west.peerStats(t, "east"), east.peerStats(t, "west")
	if es.KeepalivesReceived < 6 || ws.KeepalivesReceived < 5 || ws.KeepalivesAnswered > 1 {
		t.Fatalf("west: %+v\neast: %+v", ws, es)
	}
	if es.RxPackets != 0 || es.LastReceived.IsZero() || time.Since(es.LastReceived) > time.Minute ||
		ws.RxPackets != 0 || ws.LastReceived.IsZero() {
		t.Fatalf("west: %+v\neast: %+v", ws, es)
	}
	checkOnlyDrops(t, east, nil)
	checkOnlyDrops(t, west, nil)
}

// TestNoKeepaliveWithoutEndpoint: a learning peer gets no keepalives,
// whatever its interval says, while the keepalive loop (one for all
// peers) demonstrably runs: a peer with an endpoint gets several.
func TestNoKeepaliveWithoutEndpoint(t *testing.T) {
	checkNoLeaks(t)
	ec := eastConfig()
	ec.Peers[0].Keepalive = time.Millisecond
	ec.Peers = append(ec.Peers, dataplane.PeerConfig{Name: "north", Endpoint: ap("203.0.113.7:50000"),
		Prefixes: pfxs("10.77.0.0/24"), Keepalive: time.Millisecond})
	east := startGateway(t, dptest.NewNetwork(), eastOuter, ec)
	waitFor(t, "5 keepalives to north", func() bool { return east.peerStats(t, "north").KeepalivesSent >= 5 })
	if s := east.peerStats(t, "west"); s.KeepalivesSent != 0 {
		t.Fatalf("sent %d keepalives to nowhere", s.KeepalivesSent)
	}
}

// TestRunStopsAndCloses: cancelling Run returns nil, closes all three I/O
// objects, and a second Run is refused.
func TestRunStopsAndCloses(t *testing.T) {
	checkNoLeaks(t)
	g := startGateway(t, dptest.NewNetwork(), westOuter, westConfig())
	g.capture.Send(dptest.EchoRequest(westHost, eastHost, 1, 1, 56))
	waitFor(t, "a packet through", func() bool { return g.peerStats(t, "east").TxPackets == 1 })
	if err := g.stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if g.capture.Send([]byte{1}) || g.transport.Deliver(dptest.Datagram{}) {
		t.Fatal("capture or transport still open")
	}
	if _, err := g.injector.WriteBatch([][]byte{{1}}); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("injector still open: %v", err)
	}
	if err := g.eng.Run(context.Background()); err == nil {
		t.Fatal("second Run accepted")
	}
}

// TestRunFailsOnIOError: a read failure of either side stops Run with an
// error wrapping it, and everything is closed.
func TestRunFailsOnIOError(t *testing.T) {
	for _, side := range []string{"capture", "transport"} {
		t.Run(side, func(t *testing.T) {
			checkNoLeaks(t)
			boom := errors.New("device gone")
			c, tr, inj := dptest.NewCapture(), dptest.NewNetwork().Listen(westOuter), dptest.NewInjector()
			eng, err := dataplane.New(westConfig(), c, tr, inj)
			if err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- eng.Run(context.Background()) }()
			if side == "capture" {
				c.Fail(boom)
			} else {
				tr.Fail(boom)
			}
			select {
			case err = <-done:
			case <-time.After(timeout):
				t.Fatal("Run did not return")
			}
			if !errors.Is(err, boom) || !strings.Contains(err.Error(), side) {
				t.Fatalf("Run returned %v", err)
			}
			if c.Send([]byte{1}) {
				t.Fatal("capture still open")
			}
		})
	}
}

// failingTransport wraps a dptest.Transport; with bad set, WriteBatch
// fails at the first datagram addressed to bad, like a socket does.
type failingTransport struct {
	*dptest.Transport
	bad netip.AddrPort
}

func (f *failingTransport) WriteBatch(bufs [][]byte, to []netip.AddrPort) (int, error) {
	for i := range bufs {
		if to[i] == f.bad {
			n, _ := f.Transport.WriteBatch(bufs[:i], to[:i])
			return n, errors.New("no route to " + f.bad.String())
		}
	}
	return f.Transport.WriteBatch(bufs, to)
}

// TestSendErrorSkipsOnlyFailedDatagram: when WriteBatch fails on one
// datagram, the rest of the batch is still sent.
func TestSendErrorSkipsOnlyFailedDatagram(t *testing.T) {
	checkNoLeaks(t)
	nw := dptest.NewNetwork()
	cfg := fixtureConfig()
	cfg.Peers[1].Endpoint = ap("203.0.113.2:50000")
	c, inj := dptest.NewCapture(), dptest.NewInjector()
	ft := &failingTransport{Transport: nw.Listen(gwOuter), bad: cfg.Peers[1].Endpoint}
	fixed := nw.Listen(fixedOuter)
	eng, err := dataplane.New(cfg, c, ft, inj)
	if err != nil {
		t.Fatal(err)
	}
	// Queue before Run so that all six come in one batch.
	for i := range 6 {
		dst := []string{"10.1.0.9", "10.2.0.9"}[i%2]
		c.Send(udp4("192.168.1.5", dst, 64, false, 100))
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- eng.Run(ctx) }()
	for range 3 {
		if _, err := fixed.Recv(timeout); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "3 send errors", func() bool { return eng.Stats().Drops["send_error"] == 3 })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if s := eng.Stats().Peers; s[0].TxPackets != 3 || s[1].TxPackets != 0 {
		t.Fatalf("tx %d, %d; want 3, 0", s[0].TxPackets, s[1].TxPackets)
	}
}

func TestNewRejects(t *testing.T) {
	mod := func(f func(c *dataplane.Config)) dataplane.Config {
		c := fixtureConfig()
		f(&c)
		return c
	}
	cases := map[string]dataplane.Config{
		"no peers":           mod(func(c *dataplane.Config) { c.Peers = nil }),
		"no local prefixes":  mod(func(c *dataplane.Config) { c.LocalPrefixes = nil }),
		"bad local prefix":   mod(func(c *dataplane.Config) { c.LocalPrefixes = []netip.Prefix{{}} }),
		"empty name":         mod(func(c *dataplane.Config) { c.Peers[0].Name = "" }),
		"duplicate name":     mod(func(c *dataplane.Config) { c.Peers[1].Name = "fixed" }),
		"no prefixes":        mod(func(c *dataplane.Config) { c.Peers[0].Prefixes = nil }),
		"shared prefix":      mod(func(c *dataplane.Config) { c.Peers[1].Prefixes = pfxs("10.1.0.0/16") }),
		"shared endpoint":    mod(func(c *dataplane.Config) { c.Peers[1].Endpoint = fixedOuter }),
		"port 0":             mod(func(c *dataplane.Config) { c.Peers[0].Endpoint = ap("203.0.113.1:0") }),
		"unspecified":        mod(func(c *dataplane.Config) { c.Peers[0].Endpoint = ap("0.0.0.0:5") }),
		"negative keepalive": mod(func(c *dataplane.Config) { c.Peers[0].Keepalive = -1 }),
		"tiny path MTU":      mod(func(c *dataplane.Config) { c.Peers[0].PathMTU = 100 }),
		"huge path MTU":      mod(func(c *dataplane.Config) { c.Peers[0].PathMTU = 70000 }),
		"batch size":         mod(func(c *dataplane.Config) { c.BatchSize = 5000 }),
		"IPv6 ICMP source":   mod(func(c *dataplane.Config) { c.ICMPSource = ip("2001:db8::1") }),
	}
	for name, cfg := range cases {
		if _, err := dataplane.New(cfg, dptest.NewCapture(), dptest.NewNetwork().Listen(gwOuter), dptest.NewInjector()); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := dataplane.New(fixtureConfig(), nil, nil, nil); err == nil {
		t.Error("nil I/O accepted")
	}
}

// TestStatsJSON checks the JSON shape that `tunnel-agent status` serves.
func TestStatsJSON(t *testing.T) {
	g, _, _ := fixture(t)
	deliverFrom(g, "203.0.113.99:1", nil)
	waitDrop(t, g, "not_from_peer", 1)
	b, err := json.Marshal(g.eng.Stats())
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Peers []map[string]any  `json:"peers"`
		Drops map[string]uint64 `json:"drops"`
	}
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if got.Peers[0]["configured_endpoint"] != "203.0.113.1:50000" || got.Peers[1]["current_endpoint"] != "" {
		t.Errorf("endpoints in %s", b)
	}
	if _, ok := got.Peers[0]["last_received"]; ok {
		t.Errorf("never-set last_received present in %s", b)
	}
	names := []string{"too_short", "bad_header", "not_from_peer", "src_not_allowed", "dst_not_allowed",
		"no_route", "no_endpoint", "too_big", "ttl_expired", "send_error", "inject_error", "not_ipv4", "too_big_lan", "bad_keepalive", "tunnel_busy"}
	if len(got.Drops) != len(names) || got.Drops["not_from_peer"] != 1 {
		t.Errorf("drops %v", got.Drops)
	}
	for _, n := range names {
		if _, ok := got.Drops[n]; !ok {
			t.Errorf("drop reason %s missing", n)
		}
	}
	if len(dataplane.DropReasons()) != len(names) {
		t.Errorf("DropReasons() has %d entries", len(dataplane.DropReasons()))
	}
}

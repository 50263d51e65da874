package ebpf

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"tunnel-agent/dataplane"
	"tunnel-agent/dataplane/dptest"
)

// The userspace engine, run in memory on the dptest fakes, is the
// reference the programs' verdicts are compared with.

// outcome is what happened to one packet, on either path.
type outcome struct {
	kind   string         // send, deliver, drop, pass, ignore, keepalive
	reason string         // drop or pass reason
	to     netip.AddrPort // send: the endpoint
	pkt    []byte         // send: the UDP payload; deliver: the inner packet
}

func (o outcome) String() string {
	switch o.kind {
	case "send":
		return "send " + o.to.String()
	case "drop", "pass":
		return o.kind + " " + o.reason
	}
	return o.kind
}

// engineRun is one engine on fakes, with a transport listening at every
// peer endpoint so that what it sends can be read back.
type engineRun struct {
	eng     *dataplane.Engine
	capture *dptest.Capture
	tr      *dptest.Transport
	inj     *dptest.Injector
	peers   []*dptest.Transport
}

// startEngine runs a fresh engine for cfg until the test ends.
func startEngine(t *testing.T, cfg dataplane.Config, listen netip.AddrPort) *engineRun {
	t.Helper()
	nw := dptest.NewNetwork()
	r := &engineRun{capture: dptest.NewCapture(), tr: nw.Listen(listen), inj: dptest.NewInjector()}
	for _, p := range cfg.Peers {
		if p.Endpoint.IsValid() {
			r.peers = append(r.peers, nw.Listen(p.Endpoint))
		}
	}
	eng, err := dataplane.New(cfg, r.capture, r.tr, r.inj)
	if err != nil {
		t.Fatal(err)
	}
	r.eng = eng
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- eng.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return r
}

// progress sums the engine's counters that move once per packet.
func progress(s dataplane.Stats) uint64 {
	n := uint64(0)
	for _, v := range s.Drops {
		n += v
	}
	for _, p := range s.Peers {
		n += p.TxPackets + p.RxPackets + p.KeepalivesReceived
	}
	return n
}

// await waits until the engine has dealt with one more packet than
// before and returns what it did.
func (r *engineRun) await(t *testing.T, before dataplane.Stats) outcome {
	t.Helper()
	// The counters of one packet do not move at once (a relayed packet
	// counts as received from its sender before it counts as sent to its
	// target), so every outcome is looked for on each round until one is
	// complete.
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		after := r.eng.Stats()
		for name, v := range after.Drops {
			if v > before.Drops[name] {
				return outcome{kind: "drop", reason: name}
			}
		}
		for i, p := range after.Peers {
			switch {
			case p.TxPackets > before.Peers[i].TxPackets:
				return r.sent(t) // sent or relayed
			case p.KeepalivesReceived > before.Peers[i].KeepalivesReceived:
				return outcome{kind: "keepalive"}
			}
		}
		if progress(after) > progress(before) {
			if pkt, err := r.inj.Recv(time.Millisecond); err == nil {
				return outcome{kind: "deliver", pkt: pkt}
			}
			continue
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatal("engine did not handle the packet within 10s")
	return outcome{}
}

// sent reads the datagram the engine sent to one of the peers.
func (r *engineRun) sent(t *testing.T) outcome {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for _, p := range r.peers {
			if d, err := p.Recv(time.Millisecond); err == nil {
				return outcome{kind: "send", to: d.To, pkt: d.Data}
			}
		}
	}
	t.Fatal("engine counted a datagram sent but none arrived")
	return outcome{}
}

// captureOne runs pkt through the engine's LAN→tunnel path.
func (r *engineRun) captureOne(t *testing.T, pkt []byte) outcome {
	t.Helper()
	before := r.eng.Stats()
	r.capture.Send(pkt)
	return r.await(t, before)
}

// receiveOne runs a datagram through the engine's tunnel→LAN path.
func (r *engineRun) receiveOne(t *testing.T, from netip.AddrPort, payload []byte) outcome {
	t.Helper()
	before := r.eng.Stats()
	r.tr.Deliver(dptest.Datagram{From: from, Data: payload})
	return r.await(t, before)
}

// seed is one file of the dataplane package's fuzz seed corpus.
type seed struct {
	name   string
	pkt    []byte
	sender int // FuzzTransport and FuzzRelay: index into the senders
}

// readSeeds parses the "go test fuzz v1" files of one fuzz target.
func readSeeds(t *testing.T, target string) []seed {
	t.Helper()
	dir := filepath.Join("..", "testdata", "fuzz", target)
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var seeds []seed
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		s := seed{name: e.Name()}
		for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n")[1:] {
			switch {
			case strings.HasPrefix(line, "[]byte("):
				v, err := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(line, "[]byte("), ")"))
				if err != nil {
					t.Fatalf("%s: %v", e.Name(), err)
				}
				s.pkt = []byte(v)
			case strings.HasPrefix(line, "byte("):
				v, _, _, err := strconv.UnquoteChar(strings.Trim(strings.TrimSuffix(strings.TrimPrefix(line, "byte("), ")"), "'"), '\'')
				if err != nil {
					t.Fatalf("%s: %v", e.Name(), err)
				}
				s.sender = int(v)
			}
		}
		seeds = append(seeds, s)
	}
	slices.SortFunc(seeds, func(a, b seed) int { return strings.Compare(a.name, b.name) })
	return seeds
}

// toPeers converts the engine's peers to the programs' (same names).
func toPeers(ps []dataplane.PeerConfig) []Peer {
	var out []Peer
	for _, p := range ps {
		out = append(out, Peer{Name: p.Name, Endpoint: p.Endpoint, Prefixes: p.Prefixes, PathMTU: p.PathMTU})
	}
	return out
}

// statsDelta is the counters that moved between two snapshots.
func statsDelta(before, after Stats) (drops, passes []string) {
	for _, name := range slices.Sorted(maps.Keys(after.Drops)) {
		if after.Drops[name] > before.Drops[name] {
			drops = append(drops, name)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(after.ToUserspace)) {
		if after.ToUserspace[name] > before.ToUserspace[name] {
			passes = append(passes, name)
		}
	}
	return drops, passes
}

func mustPrefixes(ss ...string) []netip.Prefix {
	var ps []netip.Prefix
	for _, s := range ss {
		ps = append(ps, netip.MustParsePrefix(s))
	}
	return ps
}

func fmtOutcomes(a, b outcome) string { return fmt.Sprintf("engine %v, programs %v", a, b) }

package ebpf

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	cebpf "github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"tunnel-agent/dataplane/dptest"
	"tunnel-agent/internal/probe"
)

// Per-packet cost of the programs. Not part of CI (benchmarks only run
// with -bench); figures are in docs/ebpf.md:
//
//	go test -run '^$' -bench . -benchtime 20000x ./dataplane/ebpf
//
// The BPF_PROG_TEST_RUN benchmarks time one run of the program in the
// kernel (the redirect itself is not performed by a test run); the live
// one reads bpf_stats run time over a real TCP transfer through two
// gateways, redirects included.

// benchProg runs prog once per iteration on a fresh copy of frame (a test
// run with repeat N would run the program N times on one packet, which it
// changes) and reports the kernel's run time per packet.
func benchProg(b *testing.B, rig *progRig, prog *cebpf.Program, frame []byte, want uint32) {
	var total time.Duration
	b.ResetTimer()
	err := rig.n.ns.Do(func() error { // on another goroutine: no b.Loop in here
		for range b.N {
			ret, d, err := prog.Benchmark(frame, 1, nil)
			if err != nil {
				return err
			}
			if ret != want {
				return fmt.Errorf("verdict %d, want %d", ret, want)
			}
			total += d
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(total.Nanoseconds())/float64(b.N), "kernel-ns/pkt")
}

func BenchmarkLANIngressEncap4(b *testing.B) {
	rig := newBenchRig(b)
	pkt := dptest.UDP(dptest.IPv4{Src: lanHost4, Dst: netip.MustParseAddr("11.11.11.100"), TTL: 64}, 1, 2, make([]byte, 1300))
	benchProg(b, rig, rig.d.LANProgram(), ethFrame(pkt), actRedirect)
}

func BenchmarkLANIngressEncap6Outer(b *testing.B) {
	rig := newBenchRig(b)
	pkt := dptest.EchoRequest(lanHost4, netip.MustParseAddr("10.3.0.9"), 1, 1, 1372)
	benchProg(b, rig, rig.d.LANProgram(), ethFrame(pkt), actRedirect)
}

func BenchmarkLANIngressNotOurs(b *testing.B) {
	rig := newBenchRig(b)
	pkt := dptest.EchoRequest(lanHost4, netip.MustParseAddr("8.8.8.8"), 1, 1, 56)
	benchProg(b, rig, rig.d.LANProgram(), ethFrame(pkt), actOK)
}

func BenchmarkWANIngressDecap4(b *testing.B) {
	rig := newBenchRig(b)
	inner := dptest.UDP(dptest.IPv4{Src: netip.MustParseAddr("11.11.11.100"), Dst: lanHost4, TTL: 63}, 1, 2, make([]byte, 1372))
	benchProg(b, rig, rig.d.WANProgram(), datagram(eastEP, inner), actRedirect)
}

func newBenchRig(b *testing.B) *progRig { return newProgRig(b, fuzzConfig(), false) }

// liveGateways enables bpf_stats (until the benchmark ends) and builds two
// sites whose gateways run the programs on tcx, LAN offloads off, with a
// path between their hosts.
func liveGateways(b *testing.B) (a, s *e2eSite, ga, gb *gateway) {
	b.Helper()
	if unix.Geteuid() != 0 {
		b.Skip("needs root")
	}
	if b.N > maxLiveRuns {
		b.Skipf("a live benchmark builds two sites and moves real traffic per run: run it with -bench Live (b.N %d > %d)", b.N, maxLiveRuns)
	}
	stats, err := cebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { stats.Close() })
	a, s = buildSites(b, [2]bool{}, false)
	ga = startEBPF(b, a, s, AttachTCX, 1500)
	gb = startEBPF(b, s, a, AttachTCX, 1500)
	if _, err := probe.PingEventually(a.host.Handle, s.hostAddr, 15*time.Second); err != nil {
		b.Fatal(err)
	}
	return a, s, ga, gb
}

// maxLiveRuns bounds the runs of a live benchmark, each a transfer over
// the same two sites (the default -benchtime asks for a handful; a count
// meant for the BPF_PROG_TEST_RUN benchmarks would take hours).
const maxLiveRuns = 100

// namedProg is a program with what it did in a benchmark.
type namedProg struct {
	name string
	prog *cebpf.Program
}

// logRunTimes logs each program's runs and mean run time (bpf_stats).
func logRunTimes(b *testing.B, progs ...namedProg) {
	b.Helper()
	for _, p := range progs {
		st, err := p.prog.Stats()
		if err != nil {
			b.Fatal(err)
		}
		if st.RunCount > 0 {
			b.Logf("%-18s %8d runs, %6.0f ns/run", p.name, st.RunCount, float64(st.Runtime.Nanoseconds())/float64(st.RunCount))
		}
	}
}

// BenchmarkLiveTCP moves 50 MB over TCP through two gateways running the
// programs (tcx, LAN offloads off) and reports the programs' mean run
// time per invocation from bpf_stats (enabled for the benchmark only).
func BenchmarkLiveTCP(b *testing.B) {
	a, s, ga, gb := liveGateways(b)
	for range b.N {
		res, err := probe.TCPTransfer(a.host.Handle, s.host.Handle, netip.AddrPortFrom(s.hostAddr, 5001), 50<<20, 120*time.Second)
		if err != nil || !res.OK() {
			b.Fatalf("%+v %v", res, err)
		}
		b.ReportMetric(res.Throughput/1e6, "Mbit/s")
		logRunTimes(b, namedProg{"encap(A lan)", ga.d.LANProgram()}, namedProg{"decap(B wan)", gb.d.WANProgram()},
			namedProg{"acks-decap(A wan)", ga.d.WANProgram()}, namedProg{"acks-encap(B lan)", gb.d.LANProgram()})
	}
}

// BenchmarkLiveUDP64 sends 200000 datagrams of 64 bytes as fast as the
// sender can through two gateways running the programs (tcx, LAN offloads
// off) and reports the rate received and the programs' mean run time per
// packet from bpf_stats: what the programs cost of the 64-byte UDP rate
// that bench/run.sh measures.
func BenchmarkLiveUDP64(b *testing.B) {
	a, s, ga, gb := liveGateways(b)
	for range b.N {
		start := time.Now()
		res, err := probe.UDPBurstWith(a.host.Handle, s.host.Handle, netip.AddrPortFrom(s.hostAddr, 5301),
			probe.UDPOptions{Count: 200000, Payload: 64, Timeout: 30 * time.Second})
		if err != nil {
			b.Fatal(err)
		}
		d := time.Since(start)
		b.ReportMetric(float64(res.Sent)/d.Seconds()/1e3, "kpps-sent")
		b.ReportMetric(float64(res.Received)/d.Seconds()/1e3, "kpps-received")
		logRunTimes(b, namedProg{"encap(A lan)", ga.d.LANProgram()}, namedProg{"decap(B wan)", gb.d.WANProgram()})
	}
}

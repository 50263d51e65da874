package ebpf

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"slices"
	"testing"

	cebpf "github.com/cilium/ebpf"

	"tunnel-agent/dataplane"
	"tunnel-agent/dataplane/dptest"
)

// tc verdicts a test run returns.
const (
	actOK       = 0
	actShot     = 2
	actRedirect = 7
)

// The dataplane package's fuzz configuration (fuzzConfig in
// dataplane/fuzz_test.go), which its seed corpus was made for.
var (
	eastEP   = netip.MustParseAddrPort("198.51.100.1:50000")
	v6EP     = netip.MustParseAddrPort("[2001:db8::1]:50000")
	stranger = netip.MustParseAddrPort("198.51.100.9:4000")
	// fuzzSenders of dataplane/fuzz_test.go, stranger moved on-link.
	fuzzSenders = []netip.AddrPort{eastEP, stranger, v6EP}
	listenPort  = uint16(50000)
	lanHost4    = netip.MustParseAddr("192.168.111.2")
	lanHost6    = netip.MustParseAddr("fd00:111::5")
)

func fuzzConfig() dataplane.Config {
	return dataplane.Config{
		Peers: []dataplane.PeerConfig{
			{Name: "east", Endpoint: eastEP, Prefixes: mustPrefixes("11.11.11.0/24", "fd00:11::/48"), PathMTU: 1400},
			{Name: "roaming", Prefixes: mustPrefixes("10.2.0.0/16", "fd00:2::/48")},
			{Name: "v6", Endpoint: v6EP, Prefixes: mustPrefixes("10.3.0.0/16", "fd00:3::/48")},
		},
		LocalPrefixes: mustPrefixes("192.168.111.0/24", "fd00:111::/64"),
		ICMPSource:    lanAddr4.Addr(),
		ICMPSource6:   lanAddr6.Addr(),
	}
}

// progRig is a loaded dataplane in a test namespace, with its exception
// reader open.
type progRig struct {
	d   *Dataplane
	n   *testNet
	exc *Exceptions
}

func newProgRig(t testing.TB, cfg dataplane.Config, relay bool) *progRig {
	t.Helper()
	requireBPF(t)
	var wanNeigh []netip.Addr
	for _, p := range cfg.Peers {
		if p.Endpoint.IsValid() {
			wanNeigh = append(wanNeigh, p.Endpoint.Addr())
		}
	}
	n := newTestNet(t, wanNeigh, []netip.Addr{lanHost4, lanHost6})
	d := load(t, Config{ListenPort: listenPort, LocalPrefixes: cfg.LocalPrefixes, Relay: relay,
		HostAddrs: []netip.Addr{lanAddr4.Addr(), lanAddr6.Addr()}})
	if err := n.ns.Do(func() error { return d.SetPeers(toPeers(cfg.Peers)) }); err != nil {
		t.Fatal(err)
	}
	if err := d.setInterfaces(ifaceIndexes{lan: n.lan.Attrs().Index, wan: n.wan.Attrs().Index}); err != nil {
		t.Fatal(err)
	}
	exc, err := d.Exceptions(0)
	if err != nil {
		t.Fatal(err)
	}
	return &progRig{d: d, n: n, exc: exc}
}

// run runs prog on frame in the rig's namespace and classifies the result.
func (r *progRig) run(t *testing.T, prog *cebpf.Program, frame []byte) (outcome, []byte) {
	t.Helper()
	before, err := r.d.Stats()
	if err != nil {
		t.Fatal(err)
	}
	opts := &cebpf.RunOptions{Data: frame, DataOut: make([]byte, len(frame)+256)}
	var ret uint32
	err = r.n.ns.Do(func() error {
		var err error
		ret, err = prog.Run(opts)
		return err
	})
	out := opts.DataOut
	if err != nil {
		t.Fatalf("test run: %v", err)
	}
	after, err := r.d.Stats()
	if err != nil {
		t.Fatal(err)
	}
	drops, passes := statsDelta(before, after)
	if len(drops)+len(passes) > 1 {
		t.Fatalf("one packet moved several counters: drops %v passes %v", drops, passes)
	}
	switch {
	case ret == actRedirect && len(drops)+len(passes) == 0:
		return outcome{kind: "redirect"}, out
	case ret == actShot && len(drops) == 1:
		return outcome{kind: "drop", reason: drops[0]}, out
	case ret == actShot && len(passes) == 1:
		r.checkException(t, frame)
		return outcome{kind: "pass", reason: passes[0]}, out
	case ret == actOK && len(passes) == 1:
		return outcome{kind: "pass", reason: passes[0]}, out
	case ret == actOK && len(drops)+len(passes) == 0:
		return outcome{kind: "ignore"}, out
	}
	t.Fatalf("verdict %d with drops %v passes %v", ret, drops, passes)
	return outcome{}, nil
}

// checkException reads the exception the program just output and checks
// that it is the frame's packet, unchanged.
func (r *progRig) checkException(t *testing.T, frame []byte) {
	t.Helper()
	bufs, sizes := [][]byte{make([]byte, 70000)}, []int{0}
	n, err := r.exc.ReadBatch(bufs, sizes)
	if err != nil || n != 1 {
		t.Fatalf("reading the exception: %d, %v", n, err)
	}
	if got := bufs[0][:sizes[0]]; !bytes.Equal(got, frame[14:]) {
		t.Fatalf("exception packet differs from the frame's:\n% x\n% x", got, frame[14:])
	}
}

// ethFrame puts pkt behind an Ethernet header addressed to the host (the
// test run's device is lo, whose address is all zeros).
func ethFrame(pkt []byte) []byte {
	f := make([]byte, 14, 14+len(pkt))
	copy(f[6:], []byte{2, 0, 0, 0, 0, 1})
	binary.BigEndian.PutUint16(f[12:], etherType(pkt))
	return append(f, pkt...)
}

// etherType is the EtherType for pkt's IP version (IPv4 for anything but 6).
func etherType(pkt []byte) uint16 {
	if len(pkt) > 0 && pkt[0]>>4 == 6 {
		return 0x86dd
	}
	return 0x0800
}

// TestCaptureSeedVerdicts runs lan_ingress and the engine's capture path
// on every FuzzCapture seed and checks that they agree.
func TestCaptureSeedVerdicts(t *testing.T) {
	cfg := fuzzConfig()
	rig := newProgRig(t, cfg, false)
	exact := 0
	for _, s := range readSeeds(t, "FuzzCapture") {
		want := startEngine(t, cfg, netip.AddrPortFrom(wanAddr4.Addr(), listenPort)).captureOne(t, s.pkt)
		got, out := rig.run(t, rig.d.LANProgram(), ethFrame(s.pkt))
		t.Logf("%-16s %s", s.name, fmtOutcomes(want, got))
		if got.kind == "redirect" {
			got = rig.checkEncap(t, s.name, out, want)
		}
		if !agreesOnCapture(want, got) {
			t.Errorf("%s: %s", s.name, fmtOutcomes(want, got))
		}
		if want.String() == got.String() {
			exact++
		}
	}
	if exact < 6 {
		t.Errorf("only %d seeds had the same verdict on both paths: the corpus no longer exercises the programs", exact)
	}
}

// agreesOnCapture says whether the program's verdict on a LAN packet is
// one the engine's allows: the same, or the userspace path taking it.
func agreesOnCapture(want, got outcome) bool {
	if want.String() == got.String() {
		return true
	}
	if got.kind == "pass" && slices.Contains([]string{"ipv4_options", "fragment", "ipv6_extension_headers"}, got.reason) {
		return true // the engine decides those
	}
	switch want.String() {
	case "drop not_ipv4", "drop no_route":
		return got.kind == "ignore" // not captured either
	case "drop too_short":
		return got.kind == "ignore" // too short to carry a destination
	case "drop ttl_expired", "drop too_big", "drop no_endpoint":
		return got.kind == "pass" && got.reason == want.reason
	}
	if want.kind == "send" {
		return got.kind == "pass" && slices.Contains([]string{"too_big", "outer_checksum", "gso"}, got.reason)
	}
	return false
}

// checkEncap checks an encapsulated frame byte for byte against the
// datagram the engine sent and returns it as a send outcome.
func (r *progRig) checkEncap(t *testing.T, name string, out []byte, want outcome) outcome {
	t.Helper()
	to, payload := checkOuter(t, name, out[14:], listenPort)
	if typ := binary.BigEndian.Uint16(out[12:]); typ != etherType(out[14:]) {
		t.Errorf("%s: EtherType %#x for an IPv%d packet", name, typ, out[14]>>4)
	}
	if want.kind == "send" && !bytes.Equal(payload, want.pkt) {
		t.Errorf("%s: inner packet differs from the engine's datagram:\n% x\n% x", name, payload, want.pkt)
	}
	return outcome{kind: "send", to: to, pkt: payload}
}

// checkOuter checks an outer IPv4 or IPv6 + UDP header from this gateway
// (the WAN address) with source port sport and returns the destination
// and the payload.
func checkOuter(t *testing.T, name string, pkt []byte, sport uint16) (netip.AddrPort, []byte) {
	t.Helper()
	var src, dst netip.Addr
	var udp []byte
	if pkt[0]>>4 == 4 {
		tot := int(binary.BigEndian.Uint16(pkt[2:]))
		if pkt[0] != 0x45 || pkt[1] != 0 || pkt[6]|pkt[7] != 0 || pkt[8] != 64 || pkt[9] != 17 || dptestChecksum(pkt[:20], 0) != 0 {
			t.Errorf("%s: outer IPv4 header wrong: % x", name, pkt[:20])
		}
		src, dst = netip.AddrFrom4([4]byte(pkt[12:16])), netip.AddrFrom4([4]byte(pkt[16:20]))
		udp = pkt[20:tot]
		if binary.BigEndian.Uint16(udp[6:]) != 0 {
			t.Errorf("%s: IPv4 outer UDP checksum %#x, want 0", name, binary.BigEndian.Uint16(udp[6:]))
		}
		if src != wanAddr4.Addr() {
			t.Errorf("%s: outer source %v", name, src)
		}
	} else {
		plen := int(binary.BigEndian.Uint16(pkt[4:]))
		if binary.BigEndian.Uint32(pkt) != 0x60000000 || pkt[6] != 17 || pkt[7] != 64 {
			t.Errorf("%s: outer IPv6 header wrong: % x", name, pkt[:8])
		}
		src, dst = netip.AddrFrom16([16]byte(pkt[8:24])), netip.AddrFrom16([16]byte(pkt[24:40]))
		udp = pkt[40 : 40+plen]
		if c := binary.BigEndian.Uint16(udp[6:]); c == 0 || udpChecksum6(src, dst, udp) != 0 {
			t.Errorf("%s: IPv6 outer UDP checksum %#x does not verify", name, c)
		}
		if src != wanAddr6.Addr() {
			t.Errorf("%s: outer source %v", name, src)
		}
	}
	if binary.BigEndian.Uint16(udp) != sport || int(binary.BigEndian.Uint16(udp[4:])) != len(udp) {
		t.Errorf("%s: UDP header wrong: % x (%d bytes)", name, udp[:8], len(udp))
	}
	return netip.AddrPortFrom(dst, binary.BigEndian.Uint16(udp[2:])), udp[8:]
}

// dptestChecksum is the Internet checksum of b from the partial sum init.
func dptestChecksum(b []byte, init uint32) uint16 {
	s := init
	for ; len(b) >= 2; b = b[2:] {
		s += uint32(binary.BigEndian.Uint16(b))
	}
	if len(b) == 1 {
		s += uint32(b[0]) << 8
	}
	for s > 0xffff {
		s = s&0xffff + s>>16
	}
	return ^uint16(s)
}

// udpChecksum6 is the checksum over the IPv6 pseudo-header and udp
// (checksum field included): 0 when it verifies.
func udpChecksum6(src, dst netip.Addr, udp []byte) uint16 {
	var ph [40]byte
	s, d := src.As16(), dst.As16()
	copy(ph[:], s[:])
	copy(ph[16:], d[:])
	binary.BigEndian.PutUint32(ph[32:], uint32(len(udp)))
	ph[39] = 17
	return dptestChecksum(append(ph[:], udp...), 0)
}

// datagram builds the frame of a datagram from → this gateway's listen
// port carrying payload, as it arrives at the WAN.
func datagram(from netip.AddrPort, payload []byte) []byte {
	udp := make([]byte, 8, 8+len(payload))
	binary.BigEndian.PutUint16(udp, from.Port())
	binary.BigEndian.PutUint16(udp[2:], listenPort)
	binary.BigEndian.PutUint16(udp[4:], uint16(8+len(payload)))
	udp = append(udp, payload...)
	if from.Addr().Is4() {
		ip := []byte{0x45, 0, 0, 0, 0, 1, 0, 0, 60, 17, 0, 0}
		binary.BigEndian.PutUint16(ip[2:], uint16(20+len(udp)))
		s, d := from.Addr().As4(), wanAddr4.Addr().As4()
		ip = append(append(ip, s[:]...), d[:]...)
		binary.BigEndian.PutUint16(ip[10:], dptestChecksum(ip, 0))
		return ethFrame(append(ip, udp...))
	}
	ip := []byte{0x60, 0, 0, 0, 0, 0, 17, 60}
	binary.BigEndian.PutUint16(ip[4:], uint16(len(udp)))
	s, d := from.Addr().As16(), wanAddr6.Addr().As16()
	ip = append(append(ip, s[:]...), d[:]...)
	binary.BigEndian.PutUint16(udp[6:], udpChecksum6(from.Addr(), wanAddr6.Addr(), udp))
	return ethFrame(append(ip, udp...))
}

// TestTransportSeedVerdicts runs wan_ingress and the engine's transport
// path on every FuzzTransport seed and checks that they agree.
func TestTransportSeedVerdicts(t *testing.T) {
	cfg := fuzzConfig()
	rig := newProgRig(t, cfg, false)
	exact := 0
	for _, s := range readSeeds(t, "FuzzTransport") {
		from := fuzzSenders[s.sender%len(fuzzSenders)]
		want := startEngine(t, cfg, netip.AddrPortFrom(wanAddr4.Addr(), listenPort)).receiveOne(t, from, s.pkt)
		got, out := rig.run(t, rig.d.WANProgram(), datagram(from, s.pkt))
		if got.kind == "redirect" {
			got = rig.checkDecap(t, s.name, out, s.pkt)
		}
		t.Logf("%-18s from %-22v %s", s.name, from, fmtOutcomes(want, got))
		if !agreesOnReceive(want, got) {
			t.Errorf("%s: %s", s.name, fmtOutcomes(want, got))
		}
		if want.kind == got.kind && want.reason == got.reason {
			exact++
		}
	}
	if exact < 5 {
		t.Errorf("only %d seeds had the same verdict on both paths", exact)
	}
}

// agreesOnReceive is agreesOnCapture for the tunnel→LAN direction.
func agreesOnReceive(want, got outcome) bool {
	if want.kind == got.kind && want.reason == got.reason && bytes.Equal(want.pkt, got.pkt) {
		return true
	}
	if got.kind == "pass" && slices.Contains([]string{"ipv4_options", "ipv6_extension_headers", "icmp_error"}, got.reason) {
		return true // the socket's engine decides, as on the userspace path
	}
	switch {
	case want.kind == "keepalive", want.String() == "drop bad_keepalive":
		return got.String() == "pass keepalive" || got.String() == "pass unknown_sender"
	case want.String() == "drop not_from_peer":
		return got.String() == "pass unknown_sender"
	case want.kind == "deliver":
		return got.String() == "pass unknown_sender" // learning happens in userspace
	}
	return false
}

// checkDecap checks a decapsulated frame: the inner packet unchanged,
// addressed to the LAN neighbour.
func (r *progRig) checkDecap(t *testing.T, name string, out, inner []byte) outcome {
	t.Helper()
	if binary.BigEndian.Uint16(out[12:]) != etherType(inner) {
		t.Errorf("%s: Ethernet header % x", name, out[:14])
	}
	got := out[14 : 14+len(inner)]
	if !bytes.Equal(got, inner) {
		t.Errorf("%s: inner packet changed:\n% x\n% x", name, got, inner)
	}
	return outcome{kind: "deliver", pkt: got}
}

// TestExceptionsReadBatchZeroAllocs: the exception reader, which the
// userspace engine reads on its hot path, allocates nothing per packet.
func TestExceptionsReadBatchZeroAllocs(t *testing.T) {
	rig := newProgRig(t, fuzzConfig(), false)
	expired := ethFrame(readSeed(t, "FuzzCapture", "ttl-expired"))
	const runs = 50
	for range runs + 1 {
		if got, _ := rig.runQuiet(t, rig.d.LANProgram(), expired); got != actShot {
			t.Fatalf("verdict %d", got)
		}
	}
	bufs, sizes := [][]byte{make([]byte, 2048)}, []int{0}
	allocs := testing.AllocsPerRun(runs, func() {
		if n, err := rig.exc.ReadBatch(bufs, sizes); n != 1 || err != nil {
			t.Fatalf("ReadBatch: %d, %v", n, err)
		}
	})
	if allocs != 0 {
		t.Fatalf("%.1f allocations per ReadBatch", allocs)
	}
}

// runQuiet runs prog on frame in the rig's namespace and returns only the
// verdict.
func (r *progRig) runQuiet(t *testing.T, prog *cebpf.Program, frame []byte) (uint32, error) {
	t.Helper()
	var ret uint32
	err := r.n.ns.Do(func() error {
		var err error
		ret, err = prog.Run(&cebpf.RunOptions{Data: frame})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return ret, nil
}

// readSeed returns one seed of a fuzz target by name.
func readSeed(t *testing.T, target, name string) []byte {
	t.Helper()
	for _, s := range readSeeds(t, target) {
		if s.name == name {
			return s.pkt
		}
	}
	t.Fatalf("no seed %s/%s", target, name)
	return nil
}

// TestRelayVerdicts: a hub relays between peers in place (same outer
// family), with the TTL or hop limit decremented, exactly as the engine
// does; what it cannot relay goes to userspace or is dropped like there.
func TestRelayVerdicts(t *testing.T) {
	a := netip.MustParseAddrPort("198.51.100.1:5000")
	cfg := dataplane.Config{
		Peers: []dataplane.PeerConfig{
			{Name: "a", Endpoint: a, Prefixes: mustPrefixes("10.1.0.0/16", "fd00:1::/48")},
			{Name: "b", Prefixes: mustPrefixes("10.2.0.0/16")},
			{Name: "c", Endpoint: netip.MustParseAddrPort("198.51.100.3:5000"), Prefixes: mustPrefixes("10.3.0.0/16", "fd00:3::/48"), PathMTU: 600},
			{Name: "d", Endpoint: netip.MustParseAddrPort("[2001:db8::4]:5000"), Prefixes: mustPrefixes("10.4.0.0/16")},
		},
		LocalPrefixes: mustPrefixes("192.168.111.0/24"),
		ICMPSource:    lanAddr4.Addr(),
		Relay:         true,
	}
	udp := func(src, dst string, ttl uint8, df bool, size int) []byte {
		return dptest.UDP(dptest.IPv4{Src: netip.MustParseAddr(src), Dst: netip.MustParseAddr(dst), TTL: ttl, DF: df}, 1, 2, make([]byte, size-28))
	}
	udp6 := func(src, dst string, hops uint8, size int) []byte {
		return dptest.UDP6(dptest.IPv6{Src: netip.MustParseAddr(src), Dst: netip.MustParseAddr(dst), HopLimit: hops}, 1, 2, make([]byte, size-48))
	}
	cases := []struct {
		name string
		pkt  []byte
		want string // the programs' outcome
	}{
		{"a to c", udp("10.1.0.5", "10.3.0.5", 9, true, 100), "send 198.51.100.3:5000"},
		{"a to c over IPv6 inside", udp6("fd00:1::5", "fd00:3::5", 9, 100), "send 198.51.100.3:5000"},
		{"back to a", udp("10.1.0.5", "10.1.0.7", 9, true, 100), "drop dst_not_allowed"},
		{"b not learned", udp("10.1.0.5", "10.2.0.5", 9, true, 100), "pass no_endpoint"},
		{"ttl", udp("10.1.0.5", "10.3.0.5", 1, true, 100), "pass ttl_expired"},
		{"too big for c", udp("10.1.0.5", "10.3.0.5", 9, true, 600-28+1), "pass too_big"},
		{"to d, other outer family", udp("10.1.0.5", "10.4.0.5", 9, true, 100), "pass relay_family"},
	}
	rig := newProgRig(t, cfg, true)
	for _, c := range cases {
		want := startEngine(t, cfg, netip.AddrPortFrom(wanAddr4.Addr(), listenPort)).receiveOne(t, a, c.pkt)
		got, out := rig.run(t, rig.d.WANProgram(), datagram(a, c.pkt))
		if got.kind == "redirect" {
			got = rig.checkEncap(t, c.name, out, want)
		}
		t.Logf("%-26s %s", c.name, fmtOutcomes(want, got))
		if got.String() != c.want {
			t.Errorf("%s: programs %v, want %s", c.name, got, c.want)
		}
		if got.kind == "send" && (want.String() != got.String() || !bytes.Equal(want.pkt, got.pkt)) {
			t.Errorf("%s: relayed differently from the engine: %s", c.name, fmtOutcomes(want, got))
		}
	}
}

// TestOuterChecksumVerified: wan_ingress verifies the UDP checksum of a
// datagram as the kernel's UDP layer does for the userspace path: a wrong
// one is dropped and counted (bad_checksum), also over IPv4 where a
// checksum is optional; a right one over several chunks of the scratch
// buffer is accepted; a missing one over IPv6 is dropped.
func TestOuterChecksumVerified(t *testing.T) {
	rig := newProgRig(t, fuzzConfig(), false)
	delivered := func(from netip.AddrPort) []byte {
		for _, s := range readSeeds(t, "FuzzTransport") {
			if got, _ := rig.run(t, rig.d.WANProgram(), datagram(from, s.pkt)); got.kind == "redirect" && len(s.pkt) > 8 {
				return s.pkt
			}
		}
		t.Fatalf("no FuzzTransport seed is delivered from %v", from)
		return nil
	}
	// From the IPv6 peer, a packet of east's prefixes: with a right
	// checksum it gets past the outer checks to the source check.
	inner := delivered(eastEP)
	frame := datagram(v6EP, inner)
	if got, _ := rig.run(t, rig.d.WANProgram(), frame); got.String() != "drop src_not_allowed" {
		t.Errorf("IPv6 datagram with a right checksum: %v, want drop src_not_allowed", got)
	}
	check := len(frame) - len(inner) - 2
	bad := bytes.Clone(frame)
	bad[check] ^= 0x5a
	if got, _ := rig.run(t, rig.d.WANProgram(), bad); got.String() != "drop bad_checksum" {
		t.Errorf("IPv6 datagram with a wrong checksum: %v, want drop bad_checksum", got)
	}
	none := bytes.Clone(frame)
	none[check], none[check+1] = 0, 0
	if got, _ := rig.run(t, rig.d.WANProgram(), none); got.String() != "drop bad_checksum" {
		t.Errorf("IPv6 datagram without a checksum: %v, want drop bad_checksum", got)
	}
	// IPv4: checksum 0 (none) passes, a set one is verified, also over
	// several chunks of the program's scratch buffer.
	long := append(bytes.Clone(inner), make([]byte, 1100)...)
	for _, pkt := range [][]byte{inner, long} {
		v4 := datagram(eastEP, pkt)
		udp := v4[14+20:]
		src, dst := eastEP.Addr().As4(), wanAddr4.Addr().As4()
		pseudo := append(append(src[:], dst[:]...), 0, 17, byte(len(udp)>>8), byte(len(udp)))
		sum := dptestChecksum(append(pseudo, udp...), 0)
		if sum == 0 {
			sum = 0xffff
		}
		binary.BigEndian.PutUint16(udp[6:], sum)
		want := "redirect"
		if len(pkt) > len(inner) {
			want = "drop bad_header" // trailing bytes, found after the checksum
		}
		if got, _ := rig.run(t, rig.d.WANProgram(), v4); got.String() != want {
			t.Errorf("IPv4 datagram of %d bytes with a right checksum: %v, want %s", len(udp), got, want)
		}
		udp[6] ^= 0x5a
		if got, _ := rig.run(t, rig.d.WANProgram(), v4); got.String() != "drop bad_checksum" {
			t.Errorf("IPv4 datagram of %d bytes with a wrong checksum: %v, want drop bad_checksum", len(udp), got)
		}
	}
}

// TestExceptionsCompletePartialChecksums: a TCP packet whose checksum was
// left to offload (LAN offloads on), for an IPv6-outer peer, goes to the
// exception path (the program cannot sum it), and the reader hands the
// engine the packet with its checksum completed, as the capture does.
func TestExceptionsCompletePartialChecksums(t *testing.T) {
	rig := newProgRig(t, fuzzConfig(), false)
	for _, seg := range []dptest.Segment{
		dptest.TCP4(dptest.IPv4{Src: lanHost4, Dst: netip.MustParseAddr("10.3.0.9"), TTL: 64}, dptest.TCP{Flags: dptest.TCPSyn}, nil),
		dptest.TCP6(dptest.IPv6{Src: lanHost6, Dst: netip.MustParseAddr("fd00:3::9"), HopLimit: 64}, dptest.TCP{Flags: dptest.TCPSyn}, nil),
	} {
		if _, err := rig.runQuiet(t, rig.d.LANProgram(), ethFrame(seg.Partial())); err != nil {
			t.Fatal(err)
		}
		bufs, sizes := [][]byte{make([]byte, 70000)}, []int{0}
		n, err := rig.exc.ReadBatch(bufs, sizes)
		if err != nil || n != 1 {
			t.Fatalf("reading the exception: %d, %v", n, err)
		}
		if got := bufs[0][:sizes[0]]; !bytes.Equal(got, seg.Packet) {
			t.Errorf("exception packet not completed:\n% x\nwant\n% x", got, seg.Packet)
		}
	}
}

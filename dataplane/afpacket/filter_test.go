package afpacket

import (
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"

	"golang.org/x/net/bpf"
)

// testIPv4 returns a minimal IPv4 header (20 bytes, plus pad bytes of
// payload) with the given destination.
func testIPv4(dst string, pad int) []byte {
	pkt := make([]byte, 20+pad)
	pkt[0] = 0x45
	pkt[9] = 17
	copy(pkt[12:16], []byte{198, 18, 0, 2})
	a := netip.MustParseAddr(dst).As4()
	copy(pkt[16:20], a[:])
	return pkt
}

func mustPrefixes(t testing.TB, ss ...string) []netip.Prefix {
	t.Helper()
	var ps []netip.Prefix
	for _, s := range ss {
		ps = append(ps, netip.MustParsePrefix(s))
	}
	return ps
}

// matchVM runs the ancillary-free part of the capture filter in x/net/bpf's VM.
func matchVM(t testing.TB, prefixes []netip.Prefix) *bpf.VM {
	t.Helper()
	prog, err := captureMatchProgram(prefixes)
	if err != nil {
		t.Fatalf("captureMatchProgram(%v): %v", prefixes, err)
	}
	vm, err := bpf.NewVM(prog)
	if err != nil {
		t.Fatalf("NewVM: %v", err)
	}
	return vm
}

func accepts(t testing.TB, vm *bpf.VM, pkt []byte) bool {
	t.Helper()
	n, err := vm.Run(pkt)
	if err != nil {
		t.Fatalf("VM: %v", err)
	}
	if n != 0 && n != captureKeep {
		t.Fatalf("filter returned %d: want 0 or the keep-everything value", n)
	}
	return n != 0
}

func TestCaptureMatchProgram(t *testing.T) {
	for _, tc := range []struct {
		prefixes []string
		accept   []string
		reject   []string
	}{
		{nil, nil, []string{"10.0.0.1", "0.0.0.0", "255.255.255.255"}},
		{[]string{"198.19.1.5/32"}, []string{"198.19.1.5"}, []string{"198.19.1.4", "198.19.1.6", "5.1.19.198"}},
		{[]string{"198.19.1.0/24"}, []string{"198.19.1.0", "198.19.1.255"}, []string{"198.19.0.255", "198.19.2.0"}},
		{[]string{"198.19.1.77/24"}, []string{"198.19.1.1"}, []string{"198.19.2.1"}}, // unmasked input
		{[]string{"10.0.0.0/8", "198.18.0.0/15", "192.0.2.1/32"},
			[]string{"10.255.1.2", "198.18.0.1", "198.19.255.255", "192.0.2.1"},
			[]string{"11.0.0.0", "198.17.255.255", "198.20.0.0", "192.0.2.2"}},
		{[]string{"10.1.0.0/16", "10.0.0.0/8", "10.1.2.3/32", "10.0.0.0/8"}, // overlaps, duplicates
			[]string{"10.1.2.3", "10.200.0.1"}, []string{"11.1.2.3"}},
		{[]string{"0.0.0.0/0"}, []string{"0.0.0.0", "198.19.1.1", "255.255.255.255"}, nil},
		{[]string{"128.0.0.0/1"}, []string{"128.0.0.0", "255.0.0.1"}, []string{"127.255.255.255", "1.2.3.4"}},
		{[]string{"198.19.1.1/31", "198.19.1.8/30"}, []string{"198.19.1.0", "198.19.1.1", "198.19.1.11"},
			[]string{"198.19.1.2", "198.19.1.7", "198.19.1.12"}},
	} {
		t.Run(strings.Join(tc.prefixes, ","), func(t *testing.T) {
			vm := matchVM(t, mustPrefixes(t, tc.prefixes...))
			for _, a := range tc.accept {
				if !accepts(t, vm, testIPv4(a, 8)) {
					t.Errorf("%s rejected", a)
				}
			}
			for _, a := range tc.reject {
				if accepts(t, vm, testIPv4(a, 8)) {
					t.Errorf("%s accepted", a)
				}
			}
		})
	}
}

// TestCaptureMatchProgramNonIPv4: what is not a whole IPv4 or IPv6 packet
// (a runt, another version) is kept whatever its "destination", so that
// the engine counts it (too_short, not_ipv4) instead of the kernel dropping
// it unseen; IPv6 without IPv6 prefixes, and anything with no prefixes at
// all, is still dropped.
func TestCaptureMatchProgramNonIPv4(t *testing.T) {
	vm := matchVM(t, mustPrefixes(t, "198.19.0.0/16"))
	if !accepts(t, vm, testIPv4("198.19.1.1", 0)) || accepts(t, vm, testIPv4("198.20.1.1", 0)) {
		t.Fatal("bare 20-byte headers matched wrong")
	}
	for name, pkt := range map[string][]byte{
		"19 bytes": testIPv4("198.20.1.1", 0)[:19], "empty": nil, "one byte": {0x45},
	} {
		if !accepts(t, vm, pkt) {
			t.Errorf("%s (a runt) dropped uncounted", name)
		}
	}
	for _, version := range []byte{0, 5, 15} {
		pkt := testIPv4("198.20.1.1", 40)
		pkt[0] = version<<4 | 5
		if !accepts(t, vm, pkt) {
			t.Errorf("version %d packet dropped uncounted", version)
		}
	}
	pkt := testIPv4("198.19.1.1", 40)
	pkt[0] = 6<<4 | 5
	if accepts(t, vm, pkt) {
		t.Error("IPv6 packet kept without IPv6 prefixes")
	}
	none := matchVM(t, nil)
	for _, pkt := range [][]byte{nil, testIPv4("198.19.1.1", 0), {0x55, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}} {
		if accepts(t, none, pkt) {
			t.Errorf("no prefixes, but % x kept", pkt)
		}
	}
}

// TestCaptureMatchProgramMany checks large prefix lists (several compare
// chunks per prefix length) against netip's own containment.
func TestCaptureMatchProgramMany(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var ps []netip.Prefix
	for range 700 {
		bits := []int{32, 32, 32, 24, 28, 16, 20}[rng.IntN(7)]
		a := netip.AddrFrom4([4]byte{10, byte(rng.IntN(4)), byte(rng.IntN(256)), byte(rng.IntN(256))})
		ps = append(ps, netip.PrefixFrom(a, bits).Masked())
	}
	vm := matchVM(t, ps)
	contains := func(a netip.Addr) bool {
		for _, p := range ps {
			if p.Contains(a) {
				return true
			}
		}
		return false
	}
	var in, out int
	check := func(a netip.Addr) {
		want := contains(a)
		if got := accepts(t, vm, testIPv4(a.String(), 0)); got != want {
			t.Fatalf("%v: accepted=%v, want %v", a, got, want)
		}
		if want {
			in++
		} else {
			out++
		}
	}
	for _, p := range ps {
		check(p.Addr())
		check(lastAddr(p))
	}
	for range 20000 {
		check(netip.AddrFrom4([4]byte{10, byte(rng.IntN(5)), byte(rng.IntN(256)), byte(rng.IntN(256))}))
	}
	if in == 0 || out == 0 {
		t.Fatalf("degenerate sample: %d in, %d out", in, out)
	}
	if _, err := Filter(ps); err != nil {
		t.Fatalf("Filter with %d prefixes: %v", len(ps), err)
	}
}

func lastAddr(p netip.Prefix) netip.Addr {
	a := p.Addr().As4()
	v := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
	v |= ^uint32(0) >> p.Bits()
	if p.Bits() == 0 {
		v = ^uint32(0)
	}
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

func TestCaptureFilterErrors(t *testing.T) {
	for _, ps := range [][]netip.Prefix{
		mustPrefixes(t, "198.19.0.0/16", "::ffff:198.19.0.0/112"),
		{netip.Prefix{}},
	} {
		if _, err := Filter(ps); err == nil {
			t.Errorf("Filter(%v) succeeded, want an error", ps)
		}
	}
}

// TestCaptureFilterWidens: a list too long for the kernel's 4096
// instructions yields a program within the limit that still keeps every
// packet for the prefixes (a superset).
func TestCaptureFilterWidens(t *testing.T) {
	var many []netip.Prefix
	for i := range 5000 {
		many = append(many, netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), 1}), 32))
		many = append(many, netip.PrefixFrom(netip.AddrFrom16([16]byte{0xfd, 0, byte(i >> 8), byte(i), 15: 1}), 128))
	}
	raw, err := Filter(many)
	if err != nil || len(raw) > bpfMaxInstructions {
		t.Fatalf("Filter(10000 host prefixes): %d instructions, %v", len(raw), err)
	}
	prog, _ := bpf.Disassemble(raw)
	vm, err := bpf.NewVM(withAncillary(prog, linuxPacketHost, etherTypeIPv4))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range many[:200] {
		var pkt []byte
		if p.Addr().Is6() {
			pkt = testIPv6(p.Addr().String())
		} else {
			pkt = testIPv4(p.Addr().String(), 4)
		}
		if !accepts(t, vm, pkt) {
			t.Fatalf("widened filter drops %v", p.Addr())
		}
	}
	if accepts(t, vm, testIPv4("192.0.2.1", 4)) {
		t.Error("widened filter keeps everything")
	}
}

// TestCaptureFilterPktType runs the whole assembled filter in the VM with
// the pkttype and protocol ancillary loads (which the VM lacks) replaced by
// constants, checking the PACKET_HOST and EtherType gates and the jump
// offsets of the real program.
func TestCaptureFilterPktType(t *testing.T) {
	raw, err := Filter(mustPrefixes(t, "198.19.0.0/16"))
	if err != nil {
		t.Fatal(err)
	}
	prog, ok := bpf.Disassemble(raw)
	if !ok {
		t.Fatalf("filter does not disassemble: %v", prog)
	}
	if prog[0] != (bpf.LoadExtension{Num: bpf.ExtType}) {
		t.Fatalf("first instruction %v, want a pkttype load", prog[0])
	}
	const (
		packetHost      = 0
		packetBroadcast = 1
		packetOtherHost = 3
		packetOutgoing  = 4
	)
	for _, tc := range []struct {
		pkttype uint32
		proto   uint32
		dst     string
		want    bool
	}{
		{packetHost, etherTypeIPv4, "198.19.1.1", true},
		{packetHost, etherTypeIPv4, "198.20.1.1", false},
		{packetBroadcast, etherTypeIPv4, "198.19.1.1", false},
		{packetOtherHost, etherTypeIPv4, "198.19.1.1", false},
		{packetOutgoing, etherTypeIPv4, "198.19.1.1", false},
		{packetHost, 0x0806, "198.19.1.1", false}, // ARP EtherType
		{packetHost, 0x88cc, "198.19.1.1", false}, // LLDP
	} {
		vm, err := bpf.NewVM(withAncillary(prog, tc.pkttype, tc.proto))
		if err != nil {
			t.Fatal(err)
		}
		if got := accepts(t, vm, testIPv4(tc.dst, 4)); got != tc.want {
			t.Errorf("pkttype %d dst %s: accepted=%v, want %v", tc.pkttype, tc.dst, got, tc.want)
		}
	}

	empty, err := Filter(nil)
	if err != nil {
		t.Fatal(err)
	}
	prog, _ = bpf.Disassemble(empty)
	vm, err := bpf.NewVM(withAncillary(prog, packetHost, etherTypeIPv4))
	if err != nil {
		t.Fatal(err)
	}
	if accepts(t, vm, testIPv4("198.19.1.1", 4)) {
		t.Error("empty prefix list accepted a packet")
	}
}

// withAncillary replaces the filter's ancillary loads, which only the
// kernel implements, by constants: pkttype and EtherType.
func withAncillary(prog []bpf.Instruction, pkttype, proto uint32) []bpf.Instruction {
	out := make([]bpf.Instruction, len(prog))
	for i, ins := range prog {
		out[i] = ins
		switch ins {
		case bpf.LoadExtension{Num: bpf.ExtType}:
			out[i] = bpf.LoadConstant{Dst: bpf.RegA, Val: pkttype}
		case bpf.LoadExtension{Num: bpf.ExtProto}:
			out[i] = bpf.LoadConstant{Dst: bpf.RegA, Val: proto}
		}
	}
	return out
}

func TestMinimalPrefixes(t *testing.T) {
	got := minimalPrefixes(mustPrefixes(t, "10.1.0.0/16", "11.0.0.0/8", "10.0.0.0/8", "10.1.2.3/32", "10.0.0.0/8", "12.1.2.3/32", "12.1.2.3/32"))
	want := mustPrefixes(t, "10.0.0.0/8", "11.0.0.0/8", "12.1.2.3/32")
	if len(got) != len(want) {
		t.Fatalf("minimalPrefixes = %v, want %v", got, want)
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("minimalPrefixes = %v, want %v", got, want)
		}
	}
}

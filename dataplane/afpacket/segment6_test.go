package afpacket

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"

	"tunnel-agent/dataplane/dptest"
	"tunnel-agent/dataplane/internal/header"
)

// Fixtures for checksum completion and segmentation over IPv6 (extension
// headers included) and UDP GSO, built with the independent dptest
// builders.

var (
	lanHost6  = netip.MustParseAddr("fd00:111::5")
	farHost6  = netip.MustParseAddr("fd00:11::9")
	finalDst6 = netip.MustParseAddr("fd00:11::200") // behind a routing header
	lanHost4  = netip.MustParseAddr("192.168.111.2")
	farHost4  = netip.MustParseAddr("11.11.11.100")
)

// extHeaders are the extension header chains the fixtures use: a
// routing header makes the transport pseudo-header name finalDst6.
var extHeaders = map[string][]dptest.IPv6Ext{
	"none":     nil,
	"hbh":      {{Type: dptest.ExtHopByHop, Body: make([]byte, 8)}},
	"dstopts":  {{Type: dptest.ExtDestOpts, Body: make([]byte, 16)}},
	"hbh+rt+d": {{Type: dptest.ExtHopByHop, Body: make([]byte, 8)}, routingHeader(), {Type: dptest.ExtDestOpts, Body: make([]byte, 8)}},
}

// routingHeader is a type 2 routing header (RFC 6275) to finalDst6.
func routingHeader() dptest.IPv6Ext {
	b := make([]byte, 24)
	b[2], b[3] = 2, 1 // type 2, segments left 1
	copy(b[8:], finalDst6.AsSlice())
	return dptest.IPv6Ext{Type: dptest.ExtRouting, Body: b}
}

// ip6With is an IPv6 header from lanHost6 to farHost6 with ext.
func ip6With(ext []dptest.IPv6Ext) dptest.IPv6 {
	h := dptest.IPv6{Src: lanHost6, Dst: farHost6, HopLimit: 64, Ext: ext}
	for _, x := range ext {
		if x.Type == dptest.ExtRouting {
			h.FinalDst = finalDst6
		}
	}
	return h
}

func TestCompleteChecksumIPv6(t *testing.T) {
	tcp := dptest.TCP{SrcPort: 40000, DstPort: 5201, Seq: 1, Flags: dptest.TCPSyn, Window: 64240,
		Options: []byte{2, 4, 5, 0xa0, 1, 1, 4, 2}}
	for name, ext := range extHeaders {
		for proto, seg := range map[string]dptest.Segment{
			"tcp syn":   dptest.TCP6(ip6With(ext), tcp, nil),
			"tcp data":  dptest.TCP6(ip6With(ext), tcp, dptest.Pattern(1001)),
			"udp":       dptest.UDP6Segment(ip6With(ext), 5000, 53, dptest.Pattern(77)),
			"udp empty": dptest.UDP6Segment(ip6With(ext), 5000, 53, nil),
		} {
			partial := seg.Partial()
			if !completeChecksum(partial) || !bytes.Equal(partial, seg.Packet) {
				t.Errorf("%s, %s: completed\n% x\nwant\n% x", name, proto, partial, seg.Packet)
			}
		}
	}
	// Padding after the payload length (a short Ethernet frame) is neither
	// summed nor touched.
	seg := dptest.UDP6Segment(ip6With(nil), 5000, 53, dptest.Pattern(3))
	padded := append(seg.Partial(), 0xee, 0xee)
	if !completeChecksum(padded) || !bytes.Equal(padded[:len(seg.Packet)], seg.Packet) {
		t.Error("padded packet completed wrong")
	}
}

func TestCompleteChecksumIPv4Options(t *testing.T) {
	h := dptest.IPv4{Src: lanHost4, Dst: farHost4, TTL: 64, DF: true, Options: []byte{0x94, 4, 0, 0}} // router alert
	for name, seg := range map[string]dptest.Segment{
		"tcp": dptest.TCP4(h, dptest.TCP{SrcPort: 1, DstPort: 2, Flags: dptest.TCPAck}, dptest.Pattern(9)),
		"udp": dptest.UDP4(h, 1, 2, dptest.Pattern(8)),
	} {
		partial := seg.Partial()
		if !completeChecksum(partial) || !bytes.Equal(partial, seg.Packet) {
			t.Errorf("%s: not completed to the builder's checksum", name)
		}
	}
}

func TestCompleteChecksumIPv6LeavesOthersAlone(t *testing.T) {
	frag := dptest.UDP6Segment(ip6With([]dptest.IPv6Ext{dptest.FragmentHeader(0, true, 7)}), 1, 2, dptest.Pattern(40)).Partial()
	icmp := dptest.EchoRequest6(lanHost6, farHost6, 1, 1, 8)
	short := dptest.TCP6(ip6With(nil), dptest.TCP{}, nil).Partial()
	binary.BigEndian.PutUint16(short[4:], 10) // TCP header cut before its end
	badExt := dptest.UDP6Segment(ip6With(extHeaders["hbh"]), 1, 2, nil).Partial()
	badExt[41] = 200 // hop-by-hop header running past the packet
	for name, pkt := range map[string][]byte{
		"fragment": frag, "icmpv6": icmp, "short tcp": short, "bad ext": badExt,
		"truncated": dptest.UDP6Segment(ip6With(nil), 1, 2, dptest.Pattern(9)).Partial()[:50],
	} {
		before := bytes.Clone(pkt)
		if completeChecksum(pkt) || !bytes.Equal(before, pkt) {
			t.Errorf("%s: changed", name)
		}
	}
}

// superTCP6 is a TCP super-packet over IPv6 with ext, payload bytes long,
// flags ACK|PSH|FIN|CWR, in the CHECKSUM_PARTIAL form a GSO sender hands
// over, and the same packet with a full checksum.
func superTCP6(ext []dptest.IPv6Ext, payload int) (partial, full []byte) {
	tcp := dptest.TCP{SrcPort: 40000, DstPort: 5201, Seq: 0xfffff000, Ack: 9, Window: 500,
		Flags: dptest.TCPAck | dptest.TCPPsh | dptest.TCPFin | dptest.TCPCwr, Options: make([]byte, 12)}
	seg := dptest.TCP6(ip6With(ext), tcp, dptest.Pattern(payload))
	return seg.Partial(), seg.Packet
}

// checkSegs6 checks the segments of an IPv6 TCP or UDP super-packet orig
// whose transport header is at l4: each a valid packet of at most max
// bytes, headers as the original's, the payload the original's in order.
func checkSegs6(t *testing.T, orig []byte, l4 int, udp bool, segs [][]byte, max int) {
	t.Helper()
	hdr := l4 + 20 + 12
	proto := uint8(dptest.ProtoTCP)
	if udp {
		hdr, proto = l4+8, dptest.ProtoUDP
	}
	dst := farHost6
	if bytes.Contains(orig[40:l4], finalDst6.AsSlice()) {
		dst = finalDst6
	}
	var payload []byte
	for i, seg := range segs {
		if len(seg) > max || int(binary.BigEndian.Uint16(seg[4:])) != len(seg)-40 {
			t.Fatalf("segment %d: %d bytes, payload length %d (max %d)", i, len(seg), binary.BigEndian.Uint16(seg[4:]), max)
		}
		if !bytes.Equal(seg[6:l4], orig[6:l4]) {
			t.Errorf("segment %d: IPv6 or extension headers changed", i)
		}
		if !dptest.ValidL4(lanHost6, dst, proto, seg[l4:]) {
			t.Errorf("segment %d: transport checksum invalid", i)
		}
		if udp && int(binary.BigEndian.Uint16(seg[l4+4:])) != len(seg)-l4 {
			t.Errorf("segment %d: UDP length %d, want %d", i, binary.BigEndian.Uint16(seg[l4+4:]), len(seg)-l4)
		}
		payload = append(payload, seg[hdr:]...)
	}
	if !bytes.Equal(payload, orig[hdr:]) {
		t.Errorf("payload of %d segments differs from the original's", len(segs))
	}
}

// cut runs parseSuper and writes every segment, segment 0 last in place.
func cut(t *testing.T, orig []byte, mtu int, m frameMeta) [][]byte {
	t.Helper()
	s, ok := parseSuper(orig, mtu, m)
	if !ok {
		t.Fatalf("parseSuper refused a %d-byte packet (%+v)", len(orig), m)
	}
	src := bytes.Clone(orig)
	segs := make([][]byte, s.count())
	for i := len(segs) - 1; i >= 0; i-- {
		dst := make([]byte, s.segLen())
		if i == 0 {
			dst = src
		}
		segs[i] = dst[:s.segment(dst, src, i)]
	}
	return segs
}

func TestSegmentTCP6ExtensionHeaders(t *testing.T) {
	const mtu = 1420
	for name, ext := range extHeaders {
		partial, full := superTCP6(ext, 5000)
		l4 := len(partial) - 5000 - 32
		// TSO with the sender's MSS: 1000-byte segments, well under the MTU.
		segs := cut(t, partial, mtu, frameMeta{partial: true, gsoType: vnetGSOTCPv6, gsoSize: 1000})
		if len(segs) != 5 {
			t.Errorf("%s: %d segments of 1000, want 5", name, len(segs))
		}
		checkSegs6(t, full, l4, false, segs, l4+32+1000)
		// Without GSO information: cut to the MTU.
		segs = cut(t, partial, mtu, frameMeta{partial: true})
		checkSegs6(t, full, l4, false, segs, mtu)
		// A full checksum: the pseudo-header comes from the addresses, which
		// a routing header makes unknown.
		if _, ok := parseSuper(full, mtu, frameMeta{}); ok != (name != "hbh+rt+d") {
			t.Errorf("%s: full-checksum super-packet cut: %v", name, ok)
		} else if ok {
			checkSegs6(t, full, l4, false, cut(t, full, mtu, frameMeta{}), mtu)
		}
	}
}

func TestSegmentUDPGSO(t *testing.T) {
	const mtu, size = 1500, 1200
	for name, ext := range extHeaders {
		seg := dptest.UDP6Segment(ip6With(ext), 443, 50000, dptest.Pattern(4*size+7))
		segs := cut(t, seg.Partial(), mtu, frameMeta{partial: true, gsoType: vnetGSOUDPL4, gsoSize: size})
		if len(segs) != 5 {
			t.Errorf("%s: %d datagrams, want 5", name, len(segs))
		}
		checkSegs6(t, seg.Packet, seg.L4, true, segs, seg.L4+8+size)
	}
	h := dptest.IPv4{Src: lanHost4, Dst: farHost4, TTL: 64, DF: true, ID: 0xfffe}
	seg := dptest.UDP4(h, 443, 50000, dptest.Pattern(3*size))
	segs := cut(t, seg.Partial(), mtu, frameMeta{partial: true, gsoType: vnetGSOUDPL4, gsoSize: size})
	var payload []byte
	for i, d := range segs {
		if len(d) != 20+8+size || header.Checksum(d[:20], 0) != 0 || binary.BigEndian.Uint16(d[2:]) != uint16(len(d)) ||
			binary.BigEndian.Uint16(d[4:]) != 0xfffe+uint16(i) || binary.BigEndian.Uint16(d[24:]) != 8+size ||
			!dptest.ValidL4(lanHost4, farHost4, dptest.ProtoUDP, d[20:]) {
			t.Fatalf("IPv4 datagram %d invalid: % x", i, d[:28])
		}
		payload = append(payload, d[28:]...)
	}
	if len(segs) != 3 || !bytes.Equal(payload, seg.Packet[28:]) {
		t.Errorf("%d IPv4 datagrams, payload differs", len(segs))
	}
}

func TestParseSuperRejects6(t *testing.T) {
	udpGSO := frameMeta{partial: true, gsoType: vnetGSOUDPL4, gsoSize: 1000}
	udp := dptest.UDP6Segment(ip6With(nil), 1, 2, dptest.Pattern(3000)).Partial()
	fragTCP, _ := superTCP6([]dptest.IPv6Ext{dptest.FragmentHeader(0, true, 1)}, 3000)
	for name, c := range map[string]struct {
		pkt []byte
		m   frameMeta
	}{
		"udp without gso_size":  {udp, frameMeta{partial: true}},
		"udp, tcp gso type":     {udp, frameMeta{partial: true, gsoType: vnetGSOTCPv6, gsoSize: 1000}},
		"udp fits one datagram": {dptest.UDP6Segment(ip6With(nil), 1, 2, dptest.Pattern(1000)).Partial(), udpGSO},
		"fragment header":       {fragTCP, frameMeta{partial: true, gsoType: vnetGSOTCPv6, gsoSize: 1000}},
		"jumbogram":             {append([]byte{0x60, 0, 0, 0, 0, 0, 0, 64}, make([]byte, 3000)...), udpGSO},
	} {
		if _, ok := parseSuper(c.pkt, 1420, c.m); ok {
			t.Errorf("%s: accepted", name)
		}
	}
	// A TCPv4 GSO size on an IPv6 packet is ignored: cut to the MTU.
	partial, _ := superTCP6(nil, 3000)
	if s, ok := parseSuper(partial, 1420, frameMeta{partial: true, gsoType: vnetGSOTCPv4, gsoSize: 500}); !ok || s.mss != 1420-40-32 {
		t.Errorf("mismatched GSO type: ok %v, mss %d", ok, s.mss)
	}
}

func TestParseVnet(t *testing.T) {
	h := make([]byte, vnetHdrLen)
	h[0], h[1] = vnetFlagNeedsCsum, vnetGSOTCPv6|vnetGSOECN
	binary.NativeEndian.PutUint16(h[vnetOffGSOSize:], 1448)
	if m := parseVnet(h); m != (frameMeta{partial: true, gsoType: vnetGSOTCPv6, gsoSize: 1448}) {
		t.Errorf("parseVnet = %+v", m)
	}
	if m := parseVnet(h[:9]); m != (frameMeta{}) {
		t.Errorf("short header: %+v", m)
	}
}

// TestExpandCompletesAndSplitsUDPGSO: a batch with a UDP GSO
// super-datagram and partial packets around it comes out as whole
// datagrams, every checksum complete.
func TestExpandCompletesAndSplitsUDPGSO(t *testing.T) {
	small := dptest.UDP6Segment(ip6With(nil), 1, 2, dptest.Pattern(10))
	small4 := dptest.TCP4(dptest.IPv4{Src: lanHost4, Dst: farHost4, TTL: 64}, dptest.TCP{Flags: dptest.TCPSyn}, nil)
	big := dptest.UDP6Segment(ip6With(extHeaders["hbh"]), 443, 50000, dptest.Pattern(3*1200))
	g := newGSOSplitter(1500)
	bufs, sizes := batchOf(8, BufferSize, small.Partial(), big.Partial(), small4.Partial())
	meta := g.metaFor(3)
	meta[0], meta[2] = frameMeta{partial: true}, frameMeta{partial: true}
	meta[1] = frameMeta{partial: true, gsoType: vnetGSOUDPL4, gsoSize: 1200}
	n := g.expand(bufs, sizes, 3)
	if n != 5 {
		t.Fatalf("expand: %d entries, want 5", n)
	}
	got := func(i int) []byte { return bufs[i][:sizes[i]] }
	if !bytes.Equal(got(0), small.Packet) || !bytes.Equal(got(4), small4.Packet) {
		t.Error("whole packets not completed, or moved out of order")
	}
	checkSegs6(t, big.Packet, big.L4, true, [][]byte{got(1), got(2), got(3)}, big.L4+8+1200)
}

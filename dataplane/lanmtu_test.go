package dataplane

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"slices"
	"testing"
	"time"

	"tunnel-agent/dataplane/dptest"
	"tunnel-agent/dataplane/internal/header"
)

// reassemble puts IPv4 fragments back together (by offset) and checks what
// every fragment must be: at most mtu bytes, a valid header checksum, DF
// clear, the original's ID and addresses, 8-byte-aligned data but for the
// last, MF on all but the last unless the original had it. It returns the
// data and the fragments' headers.
func reassemble(t *testing.T, orig []byte, frags [][]byte, mtu int) (data []byte, hdrs [][]byte) {
	t.Helper()
	origOff := int(binary.BigEndian.Uint16(orig[6:])&header.IPv4FragOffMask) * 8
	origMF := orig[6]&0x20 != 0
	next := origOff
	for i, f := range frags {
		hl := int(f[0]&0x0f) * 4
		fl := binary.BigEndian.Uint16(f[6:])
		last := i == len(frags)-1
		switch {
		case len(f) > mtu || int(binary.BigEndian.Uint16(f[2:])) != len(f) || header.Checksum(f[:hl], 0) != 0:
			t.Fatalf("fragment %d: %d bytes (MTU %d), total length %d, header checksum ok %v", i, len(f), mtu,
				binary.BigEndian.Uint16(f[2:]), header.Checksum(f[:hl], 0) == 0)
		case fl&header.IPv4FlagDF != 0 || !bytes.Equal(f[4:6], orig[4:6]) || !bytes.Equal(f[8:10], orig[8:10]) || !bytes.Equal(f[12:20], orig[12:20]):
			t.Fatalf("fragment %d: DF, ID, TTL, protocol or addresses changed", i)
		case int(fl&header.IPv4FragOffMask)*8 != next:
			t.Fatalf("fragment %d: offset %d, want %d", i, int(fl&header.IPv4FragOffMask)*8, next)
		case (fl&header.IPv4FlagMF != 0) != (!last || origMF):
			t.Fatalf("fragment %d of %d: MF %v", i, len(frags), fl&header.IPv4FlagMF != 0)
		case !last && (len(f)-hl)%8 != 0:
			t.Fatalf("fragment %d: %d data bytes, not a multiple of 8", i, len(f)-hl)
		}
		next += len(f) - hl
		data = append(data, f[hl:]...)
		hdrs = append(hdrs, f[:hl])
	}
	return data, hdrs
}

// fragmentAll runs planFragments and writes every fragment.
func fragmentAll(t *testing.T, pkt []byte, mtu int) [][]byte {
	t.Helper()
	h, why := parseIPv4(pkt)
	if why != DropNone {
		t.Fatalf("fixture does not parse: %v", why)
	}
	p, ok := planFragments(pkt, &h, mtu)
	if !ok {
		t.Fatalf("planFragments refused a %d-byte packet for MTU %d", len(pkt), mtu)
	}
	out := make([][]byte, p.count())
	for i := range out {
		buf := make([]byte, p.maxLen())
		out[i] = buf[:p.fragment(buf, pkt, i)]
	}
	return out
}

func TestFragmentIPv4(t *testing.T) {
	// Options: NOP, a copied one (type 0x83, loose source route, 7
	// bytes), record route (0x07, not copied, 7 bytes), NOP, end: 16 bytes.
	opts := []byte{1, 0x83, 7, 4, 10, 0, 0, 1, 7, 7, 4, 0, 0, 0, 0, 1, 0, 0, 0, 0}
	copied := []byte{0x83, 7, 4, 10, 0, 0, 1, 0}
	h := dptest.IPv4{Src: farHost, Dst: lanHost, TTL: 60, ID: 0x1234}
	for _, c := range []struct {
		name  string
		h     dptest.IPv4
		size  int
		mtu   int
		count int
	}{
		{"ping -s 1472 into 1420", h, 1500, 1420, 2},
		{"64 KiB into 1420", h, 65535, 1420, 47},
		{"exactly two", h, 20 + 2*1400, 1420, 2},
		{"odd tail", h, 1421, 1420, 2},
		{"options", dptest.IPv4{Src: farHost, Dst: lanHost, TTL: 60, Options: opts}, 3000, 576, 6},
		{"a first fragment", dptest.IPv4{Src: farHost, Dst: lanHost, TTL: 60, MF: true}, 1500, 1000, 2},
		{"a middle fragment", dptest.IPv4{Src: farHost, Dst: lanHost, TTL: 60, MF: true, FragOffset: 185}, 1500, 1000, 2},
		{"a last fragment", dptest.IPv4{Src: farHost, Dst: lanHost, TTL: 60, FragOffset: 370}, 1500, 68, 31},
	} {
		t.Run(c.name, func(t *testing.T) {
			pkt := dptest.UDP(c.h, 9, 7, dptest.Pattern(c.size-int(20+len(c.h.Options))-8))
			frags := fragmentAll(t, pkt, c.mtu)
			if len(frags) != c.count {
				t.Errorf("%d fragments, want %d", len(frags), c.count)
			}
			hl := 20 + len(c.h.Options)
			data, hdrs := reassemble(t, pkt, frags, c.mtu)
			if !bytes.Equal(data, pkt[hl:]) {
				t.Fatal("reassembled data differs from the original's")
			}
			if !bytes.Equal(hdrs[0][20:], pkt[20:hl]) {
				t.Error("first fragment lost options")
			}
			for i, fh := range hdrs[1:] {
				if want := copied[:min(len(copied), len(c.h.Options))]; !bytes.Equal(fh[20:], want) {
					t.Errorf("fragment %d options % x, want the copied ones % x", i+1, fh[20:], want)
				}
			}
		})
	}
}

func TestFragmentIPv4Refuses(t *testing.T) {
	h := dptest.IPv4{Src: farHost, Dst: lanHost, TTL: 60}
	for name, c := range map[string]struct {
		opts []byte
		mtu  int
	}{
		"option past the header": {[]byte{0x83, 9, 0, 0}, 576},
		"option length 1":        {[]byte{0x83, 1, 0, 0}, 576},
		"option without length":  {[]byte{1, 1, 1, 0x83}, 576},
		"MTU below header+8":     {make([]byte, 40), 67},
	} {
		h.Options = c.opts
		pkt := dptest.UDP(h, 1, 2, dptest.Pattern(1000))
		hdr, _ := parseIPv4(pkt)
		if _, ok := planFragments(pkt, &hdr, c.mtu); ok {
			t.Errorf("%s: planned", name)
		}
	}
}

// lanConfig is the tutorial's VPS side with its LAN at 1420: west (the
// client site) is learned, and routes only the VPS host to it.
func lanConfig() Config {
	return Config{
		Peers:         []PeerConfig{{Name: "west", Endpoint: westEndpoint, Prefixes: []netip.Prefix{pfx("192.168.111.0/24"), pfx("fd00:111::/64")}}},
		LocalPrefixes: []netip.Prefix{pfx("11.11.11.0/24"), pfx("fd00:11::/64")},
		ICMPSource:    netip.MustParseAddr("11.11.11.1"),
		ICMPSource6:   netip.MustParseAddr("fd00:11::1"),
		LANMTU:        1420,
	}
}

var westEndpoint = netip.MustParseAddrPort("192.0.2.1:60000")

// echo4 is a ping of size bytes from the client to the VPS host.
func echo4(size int, df bool) []byte {
	h := dptest.IPv4{Src: lanHost, Dst: farHost, Proto: dptest.ProtoICMP, TTL: 63, DF: df, ID: 7}
	return h.Marshal(dptest.ICMPEcho(1, 1, size-28))
}

// echo6 is an IPv6 ping of size bytes from the client to the VPS host.
func echo6(size int) []byte {
	return dptest.EchoRequest6(netip.MustParseAddr("fd00:111::2"), netip.MustParseAddr("fd00:11::100"), 1, 1, size-48)
}

// TestTooBigForLAN: issue 12's `ping -M do -s 1444` and `ping -M dont -s
// 1472` from a 1500-byte host to a 1420-byte LAN, and their IPv6 twin, on
// the receiving gateway: the first two answered through the tunnel, the
// second fragmented.
func TestTooBigForLAN(t *testing.T) {
	for _, c := range []struct {
		name      string
		pkt       []byte
		drop      DropReason
		out       int    // packets queued for injection
		icmpType  uint8  // error queued back to west; 0: none
		icmpParam uint32 // its MTU field
	}{
		{"fits", echo4(1420, true), DropNone, 1, 0, 0},
		{"ping -M do -s 1444", echo4(1472, true), DropTooBigLAN, 0, icmpTypeDestUnreachable, 1420},
		{"ping -M dont -s 1472", echo4(1500, false), DropNone, 2, 0, 0},
		{"64 KiB, DF clear", echo4(65535, false), DropNone, 47, 0, 0},
		{"IPv6 fits", echo6(1420), DropNone, 1, 0, 0},
		{"IPv6 too big", echo6(1500), DropTooBigLAN, 0, icmpv6TypePacketTooBig, 1420},
	} {
		t.Run(c.name, func(t *testing.T) {
			e, err := newEngine(lanConfig())
			if err != nil {
				t.Fatal(err)
			}
			s := newTransportState(4)
			s.lan.mtu = int(e.r.lanMTU.Load())
			s.relay.reset()
			in := bytes.Clone(c.pkt)
			e.receive(s, c.pkt, westEndpoint, e.eps.Load(), batchTime{})
			if got := droppedAs(e); got != c.drop || len(s.out) != c.out {
				t.Fatalf("dropped as %v with %d packets queued, want %v and %d", got, len(s.out), c.drop, c.out)
			}
			if c.out > 1 {
				data, _ := reassemble(t, in, s.out, 1420)
				if !bytes.Equal(data, in[20:]) || e.r.ctr.fragmented.Load() != 1 || e.r.ctr.fragments.Load() != uint64(c.out) {
					t.Errorf("fragments do not reassemble to the packet, or counted %d/%d", e.r.ctr.fragmented.Load(), e.r.ctr.fragments.Load())
				}
			}
			if rx := e.r.peers[0].ctr.rxPackets.Load(); rx != uint64(min(c.out, 1)) {
				t.Errorf("rx %d packets", rx)
			}
			checkErrorToPeer(t, s, c.icmpType, c.icmpParam, in)
		})
	}
}

// checkErrorToPeer checks the ICMP error queued back to west: of type typ
// (none when 0) with param in its MTU field, from the ICMP source, to the
// packet's source, quoting it.
func checkErrorToPeer(t *testing.T, s *transportState, typ uint8, param uint32, pkt []byte) {
	t.Helper()
	if typ == 0 {
		if len(s.relay.bufs) != 0 {
			t.Fatalf("%d ICMP errors queued, want none", len(s.relay.bufs))
		}
		return
	}
	if len(s.relay.bufs) != 1 || s.relay.to[0] != westEndpoint {
		t.Fatalf("%d errors queued (to %v), want one to %v", len(s.relay.bufs), s.relay.to, westEndpoint)
	}
	msg := s.relay.bufs[0]
	if pkt[0]>>4 == 6 {
		if msg[40] != typ || binary.BigEndian.Uint32(msg[44:]) != param || !bytes.Equal(msg[8:24], netip.MustParseAddr("fd00:11::1").AsSlice()) ||
			!bytes.Equal(msg[24:40], pkt[8:24]) || !bytes.HasPrefix(pkt, msg[48:]) {
			t.Fatalf("ICMPv6 error % x", msg[:min(len(msg), 88)])
		}
		return
	}
	if msg[20] != typ || msg[21] != icmpCodeFragNeeded || uint32(binary.BigEndian.Uint16(msg[26:])) != param ||
		!bytes.Equal(msg[12:16], []byte{11, 11, 11, 1}) || !bytes.Equal(msg[16:20], pkt[12:16]) || !bytes.HasPrefix(pkt, msg[28:]) {
		t.Fatalf("ICMP error % x", msg[:min(len(msg), 48)])
	}
}

// TestTooBigForLANQueueFlushes: a batch of 64 KiB DF-clear packets needs
// more fragment room than a batch holds; the queue is injected mid-batch,
// in order, and nothing is lost.
func TestTooBigForLANQueueFlushes(t *testing.T) {
	e, err := newEngine(lanConfig())
	if err != nil {
		t.Fatal(err)
	}
	inj := dptest.NewInjector()
	e.r.injector = inj
	s := newTransportState(4)
	for i := range 4 {
		pkt := echo4(65535, false)
		binary.BigEndian.PutUint16(pkt[4:], uint16(i)) // ID
		binary.BigEndian.PutUint16(pkt[10:], 0)
		binary.BigEndian.PutUint16(pkt[10:], header.Checksum(pkt[:20], 0))
		s.sizes[i] = copy(s.bufs[i], pkt)
		s.from[i] = westEndpoint
	}
	e.decapBatch(s, 4)
	var got [][]byte
	for len(inj.Out()) > 0 {
		got = append(got, <-inj.Out())
	}
	if len(got) != 4*47 || e.r.ctr.fragments.Load() != 4*47 {
		t.Fatalf("%d fragments injected, %d counted; want %d", len(got), e.r.ctr.fragments.Load(), 4*47)
	}
	for i := range 4 {
		frags := got[i*47 : (i+1)*47]
		if slices.ContainsFunc(frags, func(f []byte) bool { return binary.BigEndian.Uint16(f[4:]) != uint16(i) }) {
			t.Fatalf("fragments of packet %d out of order", i)
		}
	}
}

// TestSetLANMTU: the MTU is checked, changed while running, and 0 turns
// the check off.
func TestSetLANMTU(t *testing.T) {
	e, err := newEngine(lanConfig())
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []int{-1, 67} {
		if e.SetLANMTU(bad) == nil {
			t.Errorf("SetLANMTU(%d) accepted", bad)
		}
	}
	cfg := lanConfig()
	cfg.LANMTU = 40
	if _, err := newEngine(cfg); err == nil {
		t.Error("Config.LANMTU 40 accepted")
	}
	if err := e.SetLANMTU(65536); err != nil || e.r.lanMTU.Load() != 65535 { // loopback's
		t.Fatalf("SetLANMTU(65536): %v, stored %d", err, e.r.lanMTU.Load())
	}
	if err := e.SetLANMTU(0); err != nil {
		t.Fatal(err)
	}
	s := newTransportState(1)
	s.sizes[0], s.from[0] = copy(s.bufs[0], echo4(1500, true)), westEndpoint
	inj := dptest.NewInjector()
	e.r.injector = inj
	e.decapBatch(s, 1)
	if pkt, err := inj.Recv(5 * time.Second); err != nil || len(pkt) != 1500 {
		t.Fatalf("with no LAN MTU, injected %d bytes (%v); want the whole packet", len(pkt), err)
	}
}

// TestRelatedICMPErrors: the VPS's ICMP error from its LAN address, which
// the client site does not route to it, is admitted at the client only
// when it is about a packet the client sent to that peer.
func TestRelatedICMPErrors(t *testing.T) {
	cfg := Config{ // the client site: only the VPS host is the server's
		Peers: []PeerConfig{
			{Name: "server", Endpoint: netip.MustParseAddrPort("198.51.100.1:50000"), Prefixes: []netip.Prefix{pfx("11.11.11.100/32"), pfx("fd00:11::100/128")}},
			{Name: "other", Endpoint: netip.MustParseAddrPort("198.51.100.2:50000"), Prefixes: []netip.Prefix{pfx("10.9.0.0/16")}},
		},
		LocalPrefixes: []netip.Prefix{pfx("192.168.111.0/24"), pfx("fd00:111::/64")},
	}
	e, err := newEngine(cfg)
	if err != nil {
		t.Fatal(err)
	}
	server := &e.r.peers[0]
	gw, gw6 := netip.MustParseAddr("11.11.11.1"), netip.MustParseAddr("fd00:11::1")
	fragNeeded := func(src, dst netip.Addr, quoted []byte, typ uint8) []byte {
		buf := make([]byte, icmpBufLen)
		msg := buf[:buildICMPv4Error(buf, src, quoted, typ, icmpCodeFragNeeded, 1420)]
		copy(msg[header.IPv4OffDst:], dst.AsSlice()) // buildICMPv4Error sends it to the quoted source
		binary.BigEndian.PutUint16(msg[header.IPv4OffChecksum:], 0)
		binary.BigEndian.PutUint16(msg[header.IPv4OffChecksum:], header.Checksum(msg[:20], 0))
		return msg
	}
	ptb := func(src netip.Addr, quoted []byte, typ uint8) []byte {
		buf := make([]byte, icmpBufLen)
		return buf[:buildICMPv6Error(buf, src, quoted, typ, 0, 1420)]
	}
	ours, ours6 := echo4(1472, true), echo6(1500)
	toOther := dptest.EchoRequest(lanHost, netip.MustParseAddr("10.9.0.5"), 1, 1, 100)
	for _, c := range []struct {
		name string
		pkt  []byte
		want DropReason
	}{
		{"frag needed from the VPS's LAN address", fragNeeded(gw, lanHost, ours, icmpTypeDestUnreachable), DropNone},
		{"time exceeded", fragNeeded(gw, lanHost, ours, icmpTypeTimeExceeded), DropNone},
		{"packet too big over IPv6", ptb(gw6, ours6, icmpv6TypePacketTooBig), DropNone},
		{"about a packet to another peer", fragNeeded(gw, lanHost, toOther, icmpTypeDestUnreachable), DropSrcNotAllowed},
		{"from another peer's address", fragNeeded(netip.MustParseAddr("10.9.0.1"), lanHost, ours, icmpTypeDestUnreachable), DropSrcNotAllowed},
		{"not an error (redirect)", fragNeeded(gw, lanHost, ours, 5), DropSrcNotAllowed},
		{"an echo request", dptest.EchoRequest(gw, lanHost, 1, 1, 100), DropSrcNotAllowed},
		{"ICMPv6 echo", dptest.EchoRequest6(gw6, netip.MustParseAddr("fd00:111::2"), 1, 1, 100), DropSrcNotAllowed},
		{"quoting a packet from elsewhere", fragNeeded(gw, lanHost, dptest.EchoRequest(netip.MustParseAddr("192.168.111.9"), farHost, 1, 1, 100), icmpTypeDestUnreachable), DropSrcNotAllowed},
	} {
		var d dropInfo
		r := e.r.admit(&d, c.pkt, server)
		if r != c.want || (r == DropNone && d.peer != server) {
			t.Errorf("%s: %v (peer %v), want %v", c.name, r, d.peer, c.want)
		}
	}
	// From a learning (unknown) sender nothing is related.
	var d dropInfo
	if r := e.r.admit(&d, fragNeeded(gw, lanHost, ours, icmpTypeDestUnreachable), nil); r != DropSrcNotAllowed {
		t.Errorf("from an unknown sender: %v", r)
	}
}

// TestLANMTUZeroAllocs: fragmenting, and answering through the tunnel,
// allocate nothing per batch.
func TestLANMTUZeroAllocs(t *testing.T) {
	for name, pkt := range map[string][]byte{
		"fragment": echo4(1500, false), "frag needed": echo4(1472, true), "packet too big": echo6(1500),
	} {
		e, err := newEngine(lanConfig())
		if err != nil {
			t.Fatal(err)
		}
		e.transport, e.r.injector = nullTransport{}, dptest.Discard{}
		s := newTransportState(32)
		run := func() {
			for i := range 32 {
				s.sizes[i], s.from[i] = copy(s.bufs[i], pkt), westEndpoint
			}
			e.decapBatch(s, 32)
		}
		run()
		if n := testing.AllocsPerRun(100, run); n != 0 {
			t.Errorf("%s: %v allocs per batch", name, n)
		}
		if e.r.ctr.fragmented.Load()+e.r.ctr.drops[DropTooBigLAN].Load() == 0 {
			t.Errorf("%s: nothing fragmented or answered", name)
		}
	}
}

// FuzzLANMTU runs the receiving side with a small LAN MTU on arbitrary
// datagrams from the configured peer: each ends accepted (whole or as
// fragments that reassemble to it) or dropped, once, and nothing queued
// is larger than the MTU.
func FuzzLANMTU(f *testing.F) {
	f.Add(echo4(1500, false), uint16(576))
	f.Add(echo4(1472, true), uint16(1420))
	f.Add(echo6(1500), uint16(1280))
	f.Add(dptest.UDP(dptest.IPv4{Src: lanHost, Dst: farHost, TTL: 9, Options: []byte{0x83, 7, 4, 10, 0, 0, 1, 1}}, 1, 2, dptest.Pattern(3000)), uint16(68))
	f.Fuzz(func(t *testing.T, data []byte, mtu uint16) {
		e, err := newEngine(lanConfig())
		if err != nil || e.SetLANMTU(int(mtu)) != nil {
			return
		}
		inj := &recordInjector{}
		e.r.injector = inj
		s := newTransportState(1)
		s.relay.reset()
		s.lan.mtu = int(e.r.lanMTU.Load())
		pkt := bytes.Clone(data)
		e.receive(s, pkt, westEndpoint, e.eps.Load(), batchTime{})
		out := append(inj.pkts, s.out...) // injected mid-batch, then still queued
		drops := outcomes(e)              // drops and keepalives
		switch {
		case len(out) == 0 && drops != 1, len(out) > 0 && drops != 0:
			t.Fatalf("%d queued, %d drops or keepalives", len(out), drops)
		case len(out) == 1 && !bytes.Equal(out[0], data):
			t.Fatal("queued packet differs from the datagram")
		case len(out) > 1:
			got, _ := reassemble(t, data, out, int(mtu))
			if !bytes.Equal(got, data[int(data[0]&0x0f)*4:]) {
				t.Fatal("fragments do not reassemble to the datagram")
			}
		}
		if len(s.relay.bufs) > 0 {
			checkErrorToWest(t, data, s.relay.bufs[0], uint32(mtu))
		}
	})
}

// checkErrorToWest checks an ICMP error about in queued back to west:
// from the ICMP source to in's source, carrying the MTU, quoting in.
func checkErrorToWest(t *testing.T, in, msg []byte, mtu uint32) {
	t.Helper()
	src, dst, total, r := parseAny(msg)
	isrc, _, _, _ := parseAny(in)
	cfg := lanConfig()
	if r != DropNone || total != len(msg) || dst != isrc || (src != cfg.ICMPSource && src != cfg.ICMPSource6) {
		t.Fatalf("ICMP error %v -> %v (%v) about a packet from %v", src, dst, r, isrc)
	}
	if src.Is4() && uint32(binary.BigEndian.Uint16(msg[26:])) != mtu || src.Is6() && binary.BigEndian.Uint32(msg[44:]) != mtu {
		t.Fatalf("ICMP error without the MTU %d: % x", mtu, msg[:48])
	}
}

// recordInjector keeps copies of what it injects.
type recordInjector struct{ pkts [][]byte }

func (r *recordInjector) WriteBatch(p [][]byte) (int, error) {
	for _, b := range p {
		r.pkts = append(r.pkts, bytes.Clone(b))
	}
	return len(p), nil
}
func (r *recordInjector) Close() error { return nil }

package dataplane

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"

	"tunnel-agent/dataplane/dptest"
	"tunnel-agent/dataplane/internal/header"
)

// The IPv6 side of the fuzz configuration (fuzzConfig): this gateway
// serves fd00:111::/64, east owns fd00:11::/48 (IPv4 outer, path MTU
// 1400), roaming fd00:2::/48, v6 fd00:3::/48 (IPv6 outer, 1500).
var (
	gatewayLAN6 = netip.MustParseAddr("fd00:111::1")
	lanHost6    = netip.MustParseAddr("fd00:111::5")
	farHost6    = netip.MustParseAddr("fd00:11::9")
	v6PeerHost6 = netip.MustParseAddr("fd00:3::9")
)

// captureSeeds6 are the IPv6 capture seeds; TestCaptureSeedOutcomes6 pins
// what each exercises.
func captureSeeds6() map[string][]byte {
	v6 := func(h dptest.IPv6, n int) []byte { return h.Marshal(make([]byte, n)) }
	east := dptest.IPv6{Src: lanHost6, Dst: farHost6, NextHeader: 17, HopLimit: 64}
	expired, ext, outer := east, east, east
	expired.HopLimit = 1
	ext.HopLimit = 1
	ext.Ext = []dptest.IPv6Ext{{Type: dptest.ExtHopByHop}, {Type: dptest.ExtDestOpts, Body: make([]byte, 16)}}
	ext.NextHeader = dptest.ProtoICMPv6
	outer.Dst = v6PeerHost6
	frag := expired
	frag.Ext = []dptest.IPv6Ext{dptest.FragmentHeader(100, false, 7)}
	badExt := v6(dptest.IPv6{Src: lanHost6, Dst: farHost6, HopLimit: 64, NextHeader: 17,
		Ext: []dptest.IPv6Ext{{Type: dptest.ExtRouting}}}, 0)
	badExt[41] = 9 // the routing header claims 80 bytes of a 48-byte packet
	return map[string][]byte{
		"v6-echo":         dptest.EchoRequest6(lanHost6, farHost6, 1, 1, 56),
		"v6-hop-expired":  v6(expired, 30),
		"v6-too-big":      v6(east, 1400-40),
		"v6-outer-fits":   v6(outer, 1452-40),
		"v6-outer-big":    v6(outer, 1453-40),
		"v6-ext-icmp-err": v6(ext, 8), // an ICMPv6 error (type 0) behind extension headers
		"v6-frag-expired": v6(frag, 30),
		"v6-bad-ext":      badExt,
		"v6-padded":       append(v6(east, 1), make([]byte, 17)...),
		"v6-truncated":    v6(east, 100)[:120],
	}
}

// transportSeeds6 are the IPv6 transport seeds.
func transportSeeds6() map[string]transportSeed {
	reply := dptest.EchoRequest6(farHost6, lanHost6, 1, 1, 56)
	wrongDst := dptest.EchoRequest6(farHost6, netip.MustParseAddr("fd00:999::1"), 1, 1, 8)
	roam := dptest.EchoRequest6(netip.MustParseAddr("fd00:2::9"), lanHost6, 1, 1, 8)
	return map[string]transportSeed{
		"v6-reply":     {reply, 0},
		"v6-wrong-dst": {wrongDst, 0},
		"v6-learn":     {roam, 1},
		"v6-trailing":  {append(bytes.Clone(reply), 0), 2},
		"v6-spoofed":   {reply, 2}, // east's source from v6's endpoint
	}
}

// checkForwarded6 checks an IPv6 packet the engine decided to send: the
// input trimmed to its length, with the hop limit one less.
func checkForwarded6(t *testing.T, in []byte, v verdict) {
	h, r := parseIPv6(v.pkt)
	if r != DropNone || h.TotalLen != len(v.pkt) || v.peer == nil || !v.addr.IsValid() {
		t.Fatalf("forwarded packet invalid: %v %+v", r, h)
	}
	want := bytes.Clone(in[:len(v.pkt)])
	want[header.IPv6OffHopLimit]--
	if !bytes.Equal(v.pkt, want) || in[header.IPv6OffHopLimit] < 2 || len(v.pkt) > max(v.peer.pathMTU-outerOverhead(v.addr), header.IPv6MinMTU) {
		t.Fatalf("forwarded\n% x\nfrom\n% x", v.pkt, in)
	}
}

// checkGenerated6 checks an ICMPv6 error generated about in.
func checkGenerated6(t *testing.T, in, msg []byte, reason DropReason) {
	h, r := parseIPv6(msg)
	if r != DropNone || h.TotalLen != len(msg) || len(msg) > icmpv6MaxLen || h.Proto != header.ProtoICMPv6 {
		t.Fatalf("ICMPv6 error invalid: %v % x", r, msg)
	}
	if dptest.ICMPv6Checksum(h.Src, h.Dst, msg[header.IPv6HeaderLen:]) != 0 {
		t.Fatal("ICMPv6 checksum wrong")
	}
	typ := map[DropReason]uint8{DropTTLExpired: icmpv6TypeTimeExceeded, DropTooBig: icmpv6TypePacketTooBig}[reason]
	if typ == 0 || msg[header.IPv6HeaderLen] != typ {
		t.Fatalf("ICMPv6 type %d for %v", msg[header.IPv6HeaderLen], reason)
	}
	if !bytes.HasPrefix(in, msg[48:]) || !bytes.Equal(msg[header.IPv6OffDst:header.IPv6OffDst+16], in[header.IPv6OffSrc:header.IPv6OffSrc+16]) {
		t.Fatal("ICMPv6 error does not quote the packet or goes elsewhere")
	}
	if typ == icmpv6TypePacketTooBig && binary.BigEndian.Uint32(msg[44:]) < header.IPv6MinMTU {
		t.Fatalf("packet too big announces MTU %d", binary.BigEndian.Uint32(msg[44:]))
	}
}

// parseAny parses an IPv4 or IPv6 packet.
func parseAny(pkt []byte) (src, dst netip.Addr, total int, r DropReason) {
	if len(pkt) > 0 && pkt[0]>>4 == 6 {
		h, r := parseIPv6(pkt)
		return h.Src, h.Dst, h.TotalLen, r
	}
	h, r := parseIPv4(pkt)
	return h.Src, h.Dst, h.TotalLen, r
}

package afpacket

import (
	"bytes"
	"encoding/binary"
	"testing"

	"tunnel-agent/dataplane/dptest"
	"tunnel-agent/dataplane/internal/header"
)

// l4Packet builds an IPv4 packet of protocol proto with a transport header
// of hdrLen bytes and payload, with a correct transport checksum at
// csumOff, and returns it with the CHECKSUM_PARTIAL form (pseudo-header sum
// only in the field).
func l4Packet(proto uint8, hdrLen, csumOff int, payload string) (full, partial []byte) {
	l4len := hdrLen + len(payload)
	pkt := make([]byte, 20+l4len)
	pkt[0], pkt[8], pkt[9] = 0x45, 64, proto
	binary.BigEndian.PutUint16(pkt[2:], uint16(len(pkt)))
	binary.BigEndian.PutUint16(pkt[6:], header.IPv4FlagDF)
	copy(pkt[12:], []byte{192, 168, 111, 2, 11, 11, 11, 100})
	for i := 20; i < 20+hdrLen; i++ {
		pkt[i] = byte(i * 7)
	}
	copy(pkt[20+hdrLen:], payload)
	l4 := pkt[20:]
	binary.BigEndian.PutUint16(l4[csumOff:], 0)
	// Pseudo-header: source, destination, zero+protocol, L4 length.
	pseudo := uint32(0)
	for i := 12; i < 20; i += 2 {
		pseudo += uint32(binary.BigEndian.Uint16(pkt[i:]))
	}
	pseudo += uint32(proto) + uint32(l4len)
	binary.BigEndian.PutUint16(l4[csumOff:], header.Checksum(l4, pseudo))
	full = append([]byte(nil), pkt...)
	binary.BigEndian.PutUint16(l4[csumOff:], ^header.Checksum(nil, pseudo)) // the folded pseudo-header sum
	return full, pkt
}

func TestCompleteChecksum(t *testing.T) {
	for _, tc := range []struct {
		name          string
		proto         uint8
		hdrLen, field int
		payload       string
	}{
		{"tcp", 6, 20, 16, "hello, far end"},
		{"tcp odd length", 6, 20, 16, "odd"},
		{"udp", 17, 8, 6, "datagram payload"},
		{"udp empty", 17, 8, 6, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			full, partial := l4Packet(tc.proto, tc.hdrLen, tc.field, tc.payload)
			if !completeChecksum(partial) {
				t.Fatal("completeChecksum reported no change")
			}
			if got, want := binary.BigEndian.Uint16(partial[20+tc.field:]), binary.BigEndian.Uint16(full[20+tc.field:]); got != want {
				t.Fatalf("checksum %#04x, want %#04x", got, want)
			}
		})
	}
}

func TestCompleteChecksumLeavesOthersAlone(t *testing.T) {
	_, tcp := l4Packet(6, 20, 16, "x")
	frag := append([]byte(nil), tcp...)
	binary.BigEndian.PutUint16(frag[6:], 0x2000) // MF
	icmp := append([]byte(nil), tcp...)
	icmp[9] = 1
	short := append([]byte(nil), tcp[:20+10]...)
	binary.BigEndian.PutUint16(short[2:], 30) // TCP header cut before its checksum
	for name, pkt := range map[string][]byte{
		"fragment": frag, "icmp": icmp, "short l4": short, "empty": nil,
		"ipv6": {0x60, 0, 0, 0}, "total > len": tcp[:len(tcp)-1],
	} {
		before := append([]byte(nil), pkt...)
		if completeChecksum(pkt) || string(before) != string(pkt) {
			t.Errorf("%s: changed", name)
		}
	}
}

// FuzzCompleteChecksum: any packet is completed without panicking, and
// only within its IP total length.
func FuzzCompleteChecksum(f *testing.F) {
	_, tcp := l4Packet(6, 20, 16, "seed")
	f.Add(tcp)
	for _, ext := range extHeaders {
		f.Add(dptest.TCP6(ip6With(ext), dptest.TCP{Flags: dptest.TCPSyn}, nil).Partial())
		f.Add(dptest.UDP6Segment(ip6With(ext), 1, 2, dptest.Pattern(9)).Partial())
	}
	f.Add(dptest.UDP6Segment(ip6With([]dptest.IPv6Ext{dptest.FragmentHeader(0, true, 7)}), 1, 2, dptest.Pattern(40)).Partial())
	f.Fuzz(func(t *testing.T, pkt []byte) {
		padded := append(bytes.Clone(pkt), 0xa5, 0x5a)
		completeChecksum(padded)
		if padded[len(pkt)] != 0xa5 || padded[len(pkt)+1] != 0x5a {
			t.Fatal("wrote past the packet")
		}
	})
}

// BenchmarkCompleteChecksum: finish the UDP checksum of a 1400-byte packet
// captured from a host with tx checksum offload on.
func BenchmarkCompleteChecksum(b *testing.B) {
	_, pkt := l4Packet(17, 8, 6, string(make([]byte, 1372)))
	b.ReportAllocs()
	b.SetBytes(int64(len(pkt)))
	for b.Loop() {
		completeChecksum(pkt)
	}
}

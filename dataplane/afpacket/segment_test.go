package afpacket

import (
	"bytes"
	"encoding/binary"
	"testing"

	"tunnel-agent/dataplane/internal/header"
)

// superPacket builds an IPv4 (v6 false) or IPv6 TCP packet with a 12-byte
// options block and payload bytes of payload, flags ACK|PSH|FIN|CWR.
func superPacket(v6 bool, payload int) []byte {
	ipLen := 20
	if v6 {
		ipLen = 40
	}
	pkt := make([]byte, ipLen+32+payload)
	if v6 {
		pkt[0] = 0x60
		binary.BigEndian.PutUint16(pkt[4:], uint16(len(pkt)-40))
		pkt[6], pkt[7] = 6, 64
		copy(pkt[8:], []byte{0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2})
	} else {
		pkt[0] = 0x45
		binary.BigEndian.PutUint16(pkt[2:], uint16(len(pkt)))
		binary.BigEndian.PutUint16(pkt[4:], 0xfffe) // ID wraps
		pkt[6], pkt[8], pkt[9] = 0x40, 64, 6
		copy(pkt[12:], []byte{10, 0, 0, 1, 10, 0, 0, 2})
	}
	tcp := pkt[ipLen:]
	binary.BigEndian.PutUint16(tcp, 40000)
	binary.BigEndian.PutUint16(tcp[2:], 5201)
	binary.BigEndian.PutUint32(tcp[4:], 0xfffff000) // seq wraps
	tcp[12] = 8 << 4
	tcp[13] = 0x10 | tcpFIN | tcpPSH | tcpCWR
	for i := range payload {
		tcp[32+i] = byte(i * 7)
	}
	return pkt
}

// checkSegments verifies segments segs of the super-packet orig for mtu.
func checkSegments(t *testing.T, orig []byte, segs [][]byte, mtu int) {
	t.Helper()
	v6 := orig[0]>>4 == 6
	ipLen := 20
	if v6 {
		ipLen = 40
	}
	var payload []byte
	seq := binary.BigEndian.Uint32(orig[ipLen+4:])
	for i, seg := range segs {
		last := i == len(segs)-1
		if len(seg) > mtu {
			t.Fatalf("segment %d: %d bytes > MTU %d", i, len(seg), mtu)
		}
		if v6 {
			if got := int(binary.BigEndian.Uint16(seg[4:])); got != len(seg)-40 {
				t.Errorf("segment %d: payload length %d, want %d", i, got, len(seg)-40)
			}
		} else {
			if got := int(binary.BigEndian.Uint16(seg[2:])); got != len(seg) {
				t.Errorf("segment %d: total length %d, want %d", i, got, len(seg))
			}
			if header.Checksum(seg[:20], 0) != 0 {
				t.Errorf("segment %d: IPv4 header checksum invalid", i)
			}
			if id := binary.BigEndian.Uint16(seg[4:]); id != 0xfffe+uint16(i) {
				t.Errorf("segment %d: ID %#x", i, id)
			}
		}
		tcp := seg[ipLen:]
		if !validTCPChecksum(seg, ipLen) {
			t.Errorf("segment %d: TCP checksum invalid", i)
		}
		if got := binary.BigEndian.Uint32(tcp[4:]); got != seq+uint32(len(payload)) {
			t.Errorf("segment %d: seq %#x, want %#x", i, got, seq+uint32(len(payload)))
		}
		want := byte(0x10)
		if last {
			want |= tcpFIN | tcpPSH
		}
		if i == 0 {
			want |= tcpCWR
		}
		if tcp[13] != want {
			t.Errorf("segment %d: flags %#x, want %#x", i, tcp[13], want)
		}
		if !bytes.Equal(tcp[20:32], orig[ipLen+20:ipLen+32]) {
			t.Errorf("segment %d: options not copied", i)
		}
		payload = append(payload, tcp[32:]...)
	}
	if !bytes.Equal(payload, orig[ipLen+32:]) {
		t.Errorf("payload of %d segments differs from the original's", len(segs))
	}
}

// validTCPChecksum recomputes the TCP checksum of pkt over its pseudo-header.
func validTCPChecksum(pkt []byte, ipLen int) bool {
	addrs := pkt[12:20]
	if ipLen == 40 {
		addrs = pkt[8:40]
	}
	sum := uint32(6) + uint32(len(pkt)-ipLen)
	for i := 0; i < len(addrs); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(addrs[i:]))
	}
	return header.Checksum(pkt[ipLen:], sum) == 0
}

func TestSegmentTCP(t *testing.T) {
	const mtu = 1420
	for _, tc := range []struct {
		name    string
		v6      bool
		payload int
		want    int
	}{
		{"v4 odd last", false, 3001, 3}, {"v4 exact", false, 1368 * 4, 4}, {"v4 64k", false, 65535 - 52, 48},
		{"v6 odd last", true, 2 * 1349, 3}, {"v6 one byte over", true, 1349, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			orig := superPacket(tc.v6, tc.payload)
			s, ok := parseSuper(orig, mtu, frameMeta{})
			if !ok || s.count() != tc.want {
				t.Fatalf("parseSuper: ok %v, %d segments, want %d", ok, s.count(), tc.want)
			}
			src := append([]byte(nil), orig...)
			segs := make([][]byte, s.count())
			for i := len(segs) - 1; i >= 0; i-- { // segment 0 last, in place
				dst := make([]byte, mtu)
				if i == 0 {
					dst = src
				}
				segs[i] = dst[:s.segment(dst, src, i)]
			}
			checkSegments(t, orig, segs, mtu)
		})
	}
}

func TestParseSuperRejects(t *testing.T) {
	const mtu = 1420
	v4 := superPacket(false, 3000)
	mod := func(f func(p []byte) []byte) []byte { return f(append([]byte(nil), v4...)) }
	for name, pkt := range map[string][]byte{
		"fits":          superPacket(false, 1000),
		"empty":         nil,
		"short":         v4[:10],
		"udp":           mod(func(p []byte) []byte { p[9] = 17; return p }),
		"fragment":      mod(func(p []byte) []byte { p[6] |= 0x20; return p }),
		"ihl too small": mod(func(p []byte) []byte { p[0] = 0x44; return p }),
		"length beyond": mod(func(p []byte) []byte { binary.BigEndian.PutUint16(p[2:], 0xffff); return p }),
		"length fits":   mod(func(p []byte) []byte { binary.BigEndian.PutUint16(p[2:], 1000); return p }),
		"tcp offset":    mod(func(p []byte) []byte { p[32] = 2 << 4; return p }),
		"v6 ext header": func() []byte { p := superPacket(true, 3000); p[6] = 0; return p }(),
		"version 5":     mod(func(p []byte) []byte { p[0] = 0x55; return p }),
	} {
		if _, ok := parseSuper(pkt, mtu, frameMeta{}); ok {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, ok := parseSuper(v4, 56, frameMeta{}); ok {
		t.Error("accepted an MTU below the headers")
	}
}

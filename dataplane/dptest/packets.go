package dptest

import (
	"encoding/binary"
	"net/netip"
)

// IPv4 describes an IPv4 header for Marshal. The builders here are written
// independently of package dataplane, so tests that use them check the
// dataplane against a second implementation.
type IPv4 struct {
	Src, Dst   netip.Addr
	Proto      uint8
	TTL        uint8
	TOS        uint8
	ID         uint16
	DF, MF     bool
	FragOffset uint16 // in units of 8 bytes
	Options    []byte // length must be a multiple of 4, at most 40
}

// Protocol numbers used by the builders.
const (
	ProtoICMP = 1
	ProtoUDP  = 17
)

// Marshal returns the header followed by payload, with the total length
// and header checksum filled in.
func (h IPv4) Marshal(payload []byte) []byte {
	hl := 20 + len(h.Options)
	b := make([]byte, hl+len(payload))
	b[0], b[1] = 0x40|byte(hl/4), h.TOS
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
	binary.BigEndian.PutUint16(b[4:], h.ID)
	binary.BigEndian.PutUint16(b[6:], h.flagsOff())
	b[8], b[9] = h.TTL, h.Proto
	copy(b[12:16], h.Src.AsSlice())
	copy(b[16:20], h.Dst.AsSlice())
	copy(b[20:], h.Options)
	binary.BigEndian.PutUint16(b[10:], Checksum(b[:hl]))
	copy(b[hl:], payload)
	return b
}

// flagsOff encodes flags and fragment offset.
func (h IPv4) flagsOff() uint16 {
	v := h.FragOffset & 0x1fff
	if h.DF {
		v |= 0x4000
	}
	if h.MF {
		v |= 0x2000
	}
	return v
}

// Checksum is the Internet checksum of b (RFC 1071), computed the plain
// way: sum of 16-bit words, carries folded, complemented.
func Checksum(b []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}

// ICMPEcho returns an ICMP echo request message (no IP header) with
// dataLen bytes of data, as ping sends.
func ICMPEcho(id, seq uint16, dataLen int) []byte {
	m := make([]byte, 8+dataLen)
	m[0] = 8 // echo request
	binary.BigEndian.PutUint16(m[4:], id)
	binary.BigEndian.PutUint16(m[6:], seq)
	for i := range dataLen {
		m[8+i] = byte(0x10 + i) // ping's pattern starts at 0x10 after its timestamp
	}
	binary.BigEndian.PutUint16(m[2:], Checksum(m))
	return m
}

// EchoRequest returns a whole IPv4 ping packet with TTL 64 and DF set, as
// Linux ping sends it. With dataLen 56 it is the tutorial's 84-byte echo
// ("56(84) bytes of data").
func EchoRequest(src, dst netip.Addr, id, seq uint16, dataLen int) []byte {
	h := IPv4{Src: src, Dst: dst, Proto: ProtoICMP, TTL: 64, DF: true, ID: seq}
	return h.Marshal(ICMPEcho(id, seq, dataLen))
}

// UDP returns an IPv4/UDP packet (UDP checksum left 0, which IPv4 allows).
func UDP(h IPv4, srcPort, dstPort uint16, payload []byte) []byte {
	u := make([]byte, 8+len(payload))
	binary.BigEndian.PutUint16(u[0:], srcPort)
	binary.BigEndian.PutUint16(u[2:], dstPort)
	binary.BigEndian.PutUint16(u[4:], uint16(len(u)))
	copy(u[8:], payload)
	h.Proto = ProtoUDP
	return h.Marshal(u)
}

// Pattern is n bytes of a recognisable payload.
func Pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i>>8)
	}
	return b
}

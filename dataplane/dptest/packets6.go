package dptest

import (
	"encoding/binary"
	"net/netip"
)

// IPv6 describes an IPv6 header, and optionally extension headers, for
// Marshal. Like the IPv4 builders it is written independently of package
// dataplane.
type IPv6 struct {
	Src, Dst   netip.Addr
	NextHeader uint8 // upper-layer protocol (after Ext)
	HopLimit   uint8
	// Ext are extension headers in order, each as {type, body}; Marshal
	// chains their next-header fields and pads each body to a multiple of
	// 8 bytes (fragment headers must be given exactly 8 bytes long).
	Ext []IPv6Ext
	// FinalDst is the destination the transport builders' pseudo-header
	// names when a routing header in Ext carries the packet on to it
	// (zero: Dst).
	FinalDst netip.Addr
}

// IPv6Ext is one extension header: Type is its own next-header value;
// Body is its bytes, the first two of which Marshal overwrites (next
// header, length in 8-octet units less one).
type IPv6Ext struct {
	Type uint8
	Body []byte
}

// Extension header and protocol numbers used by the builders.
const (
	ExtHopByHop = 0
	ExtRouting  = 43
	ExtFragment = 44
	ExtDestOpts = 60
	ProtoICMPv6 = 58
)

// Marshal returns the header chain followed by payload, with the payload
// length filled in.
func (h IPv6) Marshal(payload []byte) []byte {
	var ext []byte
	for i, x := range h.Ext {
		next := h.NextHeader
		if i+1 < len(h.Ext) {
			next = h.Ext[i+1].Type
		}
		body := append([]byte(nil), x.Body...)
		for len(body) < 8 || len(body)%8 != 0 {
			body = append(body, 0)
		}
		body[0] = next
		if x.Type != ExtFragment {
			body[1] = byte(len(body)/8 - 1)
		}
		ext = append(ext, body...)
	}
	b := make([]byte, 40+len(ext)+len(payload))
	b[0] = 0x60
	binary.BigEndian.PutUint16(b[4:], uint16(len(ext)+len(payload)))
	b[6], b[7] = h.NextHeader, h.HopLimit
	if len(h.Ext) > 0 {
		b[6] = h.Ext[0].Type
	}
	copy(b[8:24], h.Src.AsSlice())
	copy(b[24:40], h.Dst.AsSlice())
	copy(b[40:], ext)
	copy(b[40+len(ext):], payload)
	return b
}

// FragmentHeader returns the body of a fragment header with the given
// offset (in 8-byte units), more-fragments flag and identification.
func FragmentHeader(offset uint16, more bool, id uint32) IPv6Ext {
	b := make([]byte, 8)
	v := offset << 3
	if more {
		v |= 1
	}
	binary.BigEndian.PutUint16(b[2:], v)
	binary.BigEndian.PutUint32(b[4:], id)
	return IPv6Ext{Type: ExtFragment, Body: b}
}

// ICMPv6Checksum is the ICMPv6 checksum of msg from src to dst, with the
// RFC 8200 §8.1 pseudo-header, computed the plain way. Over a message
// whose checksum field is already filled in it is 0.
func ICMPv6Checksum(src, dst netip.Addr, msg []byte) uint16 {
	ph := make([]byte, 40, 40+len(msg))
	copy(ph[0:16], src.AsSlice())
	copy(ph[16:32], dst.AsSlice())
	binary.BigEndian.PutUint32(ph[32:], uint32(len(msg)))
	ph[39] = ProtoICMPv6
	return Checksum(append(ph, msg...))
}

// EchoRequest6 returns a whole IPv6 ping packet with hop limit 64, as
// Linux ping sends it, with dataLen bytes of data.
func EchoRequest6(src, dst netip.Addr, id, seq uint16, dataLen int) []byte {
	m := make([]byte, 8+dataLen)
	m[0] = 128 // echo request
	binary.BigEndian.PutUint16(m[4:], id)
	binary.BigEndian.PutUint16(m[6:], seq)
	for i := range dataLen {
		m[8+i] = byte(0x10 + i)
	}
	binary.BigEndian.PutUint16(m[2:], ICMPv6Checksum(src, dst, m))
	return IPv6{Src: src, Dst: dst, NextHeader: ProtoICMPv6, HopLimit: 64}.Marshal(m)
}

// UDP6 returns an IPv6/UDP packet (the UDP checksum, mandatory in IPv6,
// is filled in).
func UDP6(h IPv6, srcPort, dstPort uint16, payload []byte) []byte {
	u := make([]byte, 8+len(payload))
	binary.BigEndian.PutUint16(u[0:], srcPort)
	binary.BigEndian.PutUint16(u[2:], dstPort)
	binary.BigEndian.PutUint16(u[4:], uint16(len(u)))
	copy(u[8:], payload)
	ph := make([]byte, 40, 40+len(u))
	copy(ph[0:16], h.Src.AsSlice())
	copy(ph[16:32], h.Dst.AsSlice())
	binary.BigEndian.PutUint32(ph[32:], uint32(len(u)))
	ph[39] = ProtoUDP
	c := Checksum(append(ph, u...))
	if c == 0 {
		c = 0xffff
	}
	binary.BigEndian.PutUint16(u[6:], c)
	h.NextHeader = ProtoUDP
	return h.Marshal(u)
}

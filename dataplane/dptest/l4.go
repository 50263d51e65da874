package dptest

import (
	"encoding/binary"
	"net/netip"
)

// ProtoTCP is TCP's protocol number.
const ProtoTCP = 6

// TCP flags.
const (
	TCPFin = 0x01
	TCPSyn = 0x02
	TCPPsh = 0x08
	TCPAck = 0x10
	TCPCwr = 0x80
)

// TCP describes a TCP header for the builders.
type TCP struct {
	SrcPort, DstPort uint16
	Seq, Ack         uint32
	Flags            uint8
	Window           uint16
	Options          []byte // length must be a multiple of 4, at most 40
}

// marshal returns the header followed by payload, checksum 0.
func (h TCP) marshal(payload []byte) []byte {
	hl := 20 + len(h.Options)
	b := make([]byte, hl+len(payload))
	binary.BigEndian.PutUint16(b[0:], h.SrcPort)
	binary.BigEndian.PutUint16(b[2:], h.DstPort)
	binary.BigEndian.PutUint32(b[4:], h.Seq)
	binary.BigEndian.PutUint32(b[8:], h.Ack)
	b[12], b[13] = byte(hl/4)<<4, h.Flags
	binary.BigEndian.PutUint16(b[14:], h.Window)
	copy(b[20:], h.Options)
	copy(b[hl:], payload)
	return b
}

// udp returns a UDP header followed by payload, checksum 0.
func udp(srcPort, dstPort uint16, payload []byte) []byte {
	u := make([]byte, 8+len(payload))
	binary.BigEndian.PutUint16(u[0:], srcPort)
	binary.BigEndian.PutUint16(u[2:], dstPort)
	binary.BigEndian.PutUint16(u[4:], uint16(len(u)))
	copy(u[8:], payload)
	return u
}

// Segment is an IP packet carrying a TCP or UDP segment with a correct
// transport checksum, and what a checksum offload would need to know.
type Segment struct {
	Packet  []byte
	L4      int    // offset of the transport header
	CsumOff int    // offset of the checksum in the transport header
	Pseudo  uint16 // the folded pseudo-header sum (RFC 793, RFC 768, RFC 8200 §8.1)
}

// Partial returns a copy of the packet whose transport checksum field holds
// only the pseudo-header sum, as a host with tx checksum offload hands it
// to its device (Linux's CHECKSUM_PARTIAL).
func (s Segment) Partial() []byte {
	p := append([]byte(nil), s.Packet...)
	binary.BigEndian.PutUint16(p[s.L4+s.CsumOff:], s.Pseudo)
	return p
}

// TCP4 returns an IPv4/TCP packet with its checksums filled in.
func TCP4(h IPv4, t TCP, payload []byte) Segment {
	h.Proto = ProtoTCP
	return segment4(h, t.marshal(payload), 16)
}

// UDP4 returns an IPv4/UDP packet with its UDP checksum filled in (UDP
// leaves it 0).
func UDP4(h IPv4, srcPort, dstPort uint16, payload []byte) Segment {
	h.Proto = ProtoUDP
	return segment4(h, udp(srcPort, dstPort, payload), 6)
}

// TCP6 returns an IPv6/TCP packet, extension headers included, with its
// checksum filled in. The pseudo-header names h.FinalDst when it is set
// (a routing header carries the packet on to it), else h.Dst.
func TCP6(h IPv6, t TCP, payload []byte) Segment {
	h.NextHeader = ProtoTCP
	return segment6(h, t.marshal(payload), 16)
}

// UDP6Segment is UDP6 as a Segment, with FinalDst honoured as in TCP6.
func UDP6Segment(h IPv6, srcPort, dstPort uint16, payload []byte) Segment {
	h.NextHeader = ProtoUDP
	return segment6(h, udp(srcPort, dstPort, payload), 6)
}

func segment4(h IPv4, l4 []byte, csumOff int) Segment {
	ph := make([]byte, 12)
	copy(ph[0:4], h.Src.AsSlice())
	copy(ph[4:8], h.Dst.AsSlice())
	ph[9] = h.Proto
	binary.BigEndian.PutUint16(ph[10:], uint16(len(l4)))
	return finish(h.Marshal(l4), len(l4), csumOff, h.Proto == ProtoUDP, ph)
}

func segment6(h IPv6, l4 []byte, csumOff int) Segment {
	dst := h.Dst
	if h.FinalDst.IsValid() {
		dst = h.FinalDst
	}
	ph := make([]byte, 40)
	copy(ph[0:16], h.Src.AsSlice())
	copy(ph[16:32], dst.AsSlice())
	binary.BigEndian.PutUint32(ph[32:], uint32(len(l4)))
	ph[39] = h.NextHeader
	return finish(h.Marshal(l4), len(l4), csumOff, h.NextHeader == ProtoUDP, ph)
}

// finish fills in the checksum of the l4Len-byte transport segment at the
// end of pkt over the pseudo-header ph.
func finish(pkt []byte, l4Len, csumOff int, isUDP bool, ph []byte) Segment {
	l4 := len(pkt) - l4Len
	c := Checksum(append(ph, pkt[l4:]...))
	if c == 0 && isUDP {
		c = 0xffff
	}
	binary.BigEndian.PutUint16(pkt[l4+csumOff:], c)
	return Segment{Packet: pkt, L4: l4, CsumOff: csumOff, Pseudo: ^Checksum(ph)}
}

// ValidL4 reports whether the transport checksum of a whole segment built
// like these verifies over the pseudo-header of src, dst (the final
// destination) and proto.
func ValidL4(src, dst netip.Addr, proto uint8, l4 []byte) bool {
	var ph []byte
	if src.Is4() {
		ph = make([]byte, 12)
		copy(ph[0:4], src.AsSlice())
		copy(ph[4:8], dst.AsSlice())
		ph[9] = proto
		binary.BigEndian.PutUint16(ph[10:], uint16(len(l4)))
	} else {
		ph = make([]byte, 40)
		copy(ph[0:16], src.AsSlice())
		copy(ph[16:32], dst.AsSlice())
		binary.BigEndian.PutUint32(ph[32:], uint32(len(l4)))
		ph[39] = proto
	}
	return Checksum(append(ph, l4...)) == 0
}

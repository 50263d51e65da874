package dataplane

import "encoding/binary"

// Software TCP segmentation of captured "super-packets".
//
// A LAN host with TSO/GSO on hands its device TCP packets of up to 64 KB
// and leaves the cut to the device; an AF_PACKET tap on the receiving side
// of a veth (or after GRO on a physical NIC) sees them whole. The engine
// would answer them "too big", so the capture cuts them back into packets
// that fit the capture interface's MTU, as the kernel's GSO would: headers
// copied, IP length (and the IPv4 ID and header checksum) adjusted, TCP
// sequence numbers advanced, FIN/PSH kept on the last segment only and CWR
// on the first only, and every TCP checksum computed in full.
//
// Hand-written: no maintained Go library segments packets. The segment size
// comes from the MTU, not from the sender's gso_size: PACKET_VNET_HDR, which
// would carry it, is refused (EINVAL) on the SOCK_DGRAM socket the capture
// uses. IPv6 packets with extension headers, fragments, jumbograms and UDP
// GSO (whose datagram boundaries only gso_size gives) are left alone.

// tcpSuper describes a TCP packet to be cut into segments.
type tcpSuper struct {
	ipLen   int // IP header length (IPv4 IHL, or 40 for IPv6)
	hdrLen  int // IP plus TCP header length
	payload int // TCP payload length
	mss     int // payload bytes per segment
	v6      bool
}

// parseSuper reports whether pkt is a well-formed IPv4 or IPv6 TCP packet
// longer than mtu that can be cut into segments of at most mtu bytes.
func parseSuper(pkt []byte, mtu int) (s tcpSuper, ok bool) {
	if len(pkt) <= mtu || len(pkt) < ipv4MinHeaderLen {
		return s, false
	}
	total := 0
	switch pkt[0] >> 4 {
	case 4:
		s.ipLen = int(pkt[0]&0x0f) * 4
		total = int(binary.BigEndian.Uint16(pkt[2:]))
		if s.ipLen < ipv4MinHeaderLen || pkt[9] != 6 || binary.BigEndian.Uint16(pkt[6:])&0x3fff != 0 {
			return s, false // not TCP, or a fragment
		}
	case 6:
		if len(pkt) < ipv6HeaderLen || pkt[6] != 6 {
			return s, false // not TCP right after the fixed header
		}
		s.ipLen, s.v6 = ipv6HeaderLen, true
		total = ipv6HeaderLen + int(binary.BigEndian.Uint16(pkt[4:]))
	default:
		return s, false
	}
	if total > len(pkt) || total <= mtu || total < s.ipLen+20 {
		return s, false
	}
	s.hdrLen = s.ipLen + int(pkt[s.ipLen+12]>>4)*4
	s.payload, s.mss = total-s.hdrLen, mtu-s.hdrLen
	return s, s.hdrLen >= s.ipLen+20 && s.hdrLen <= total && s.mss >= 8
}

// count is the number of segments.
func (s *tcpSuper) count() int { return (s.payload + s.mss - 1) / s.mss }

// segment writes segment i of the super-packet src into dst and returns its
// length. dst may be src itself for segment 0 if that is written last (the
// other segments read src's headers). dst must hold hdrLen+mss bytes.
func (s *tcpSuper) segment(dst, src []byte, i int) int {
	off := i * s.mss
	n := min(s.mss, s.payload-off)
	size := s.hdrLen + n
	copy(dst[:s.hdrLen], src[:s.hdrLen])
	copy(dst[s.hdrLen:size], src[s.hdrLen+off:])
	s.fixIP(dst, src, i, size)
	s.fixTCP(dst[s.ipLen:size], dst, off, i, i == s.count()-1)
	return size
}

// fixIP sets the length of segment i (size bytes) and, for IPv4, its ID
// (the original's plus i) and header checksum.
func (s *tcpSuper) fixIP(dst, src []byte, i, size int) {
	if s.v6 {
		binary.BigEndian.PutUint16(dst[4:], uint16(size-ipv6HeaderLen))
		return
	}
	binary.BigEndian.PutUint16(dst[2:], uint16(size))
	binary.BigEndian.PutUint16(dst[4:], binary.BigEndian.Uint16(src[4:])+uint16(i))
	dst[10], dst[11] = 0, 0
	binary.BigEndian.PutUint16(dst[10:], checksum(dst[:s.ipLen], 0))
}

// TCP flags cleared on some segments.
const (
	tcpFIN = 0x01
	tcpPSH = 0x08
	tcpCWR = 0x80
)

// fixTCP advances the sequence number of segment tcp by off, adjusts its
// flags and computes its checksum over the pseudo-header of ip.
func (s *tcpSuper) fixTCP(tcp, ip []byte, off, i int, last bool) {
	binary.BigEndian.PutUint32(tcp[4:], binary.BigEndian.Uint32(tcp[4:])+uint32(off))
	if !last {
		tcp[13] &^= tcpFIN | tcpPSH
	}
	if i > 0 {
		tcp[13] &^= tcpCWR
	}
	addrs := ip[12:20]
	if s.v6 {
		addrs = ip[8:40]
	}
	pseudo := uint32(6) + uint32(len(tcp))
	for k := 0; k < len(addrs); k += 2 {
		pseudo += uint32(binary.BigEndian.Uint16(addrs[k:]))
	}
	tcp[16], tcp[17] = 0, 0
	binary.BigEndian.PutUint16(tcp[16:], checksum(tcp, pseudo))
}

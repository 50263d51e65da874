package afpacket

import (
	"encoding/binary"

	"tunnel-agent/dataplane/internal/header"
)

// Software segmentation of captured "super-packets".
//
// A LAN host with TSO/GSO on hands its device TCP packets of up to 64 KB,
// and UDP GSO senders (QUIC stacks, UDP_SEGMENT) UDP "super-datagrams"
// that are a run of datagrams under one header, and leaves the cut to the
// device; an AF_PACKET tap on the receiving side of a veth (or after GRO
// on a physical NIC) sees them whole. The engine would answer them "too
// big" (or send a UDP super-datagram as one huge datagram), so the capture
// cuts them back into what the sender meant, as the kernel's GSO would:
// headers (IPv4 options, IPv6 extension headers included) copied, IP length
// (and the IPv4 ID and header checksum) adjusted; TCP sequence numbers
// advanced, FIN/PSH kept on the last segment only and CWR on the first
// only; UDP lengths set; every transport checksum computed in full.
//
// The segment size is the sender's gso_size when the capture knows it
// (PACKET_VNET_HDR, capture_linux.go), capped for TCP by the capture
// interface's MTU; without it a TCP packet larger than the MTU is cut to
// the MTU, and a UDP super-datagram, whose datagram boundaries only
// gso_size gives, is left alone. Fragments (an IPv4 offset or MF, an IPv6
// fragment header) and jumbograms are left alone too.
//
// The pseudo-header sum comes from the packet's own checksum field when the
// packet is CHECKSUM_PARTIAL (as every super-packet a GSO sender or GRO
// hands over is): the sender put it there, for the final destination of an
// IPv6 routing header too. Otherwise it is computed from the addresses, and
// an IPv6 packet with a routing header is not cut.
//
// Hand-written: no maintained Go library segments packets.

// frameMeta is what the capture knows about a frame besides its bytes.
type frameMeta struct {
	// partial: the transport checksum field holds only the pseudo-header
	// sum (CHECKSUM_PARTIAL; TP_STATUS_CSUMNOTREADY).
	partial bool
	gsoType uint8  // virtio-net GSO type, ECN bit cleared (vnetGSO*); vnetGSONone if unknown
	gsoSize uint16 // payload bytes per segment (gso_size); 0 if unknown
}

// virtio-net header (struct virtio_net_hdr, linux/virtio_net.h) that
// PACKET_VNET_HDR puts before each frame. Its 16-bit fields are in host
// byte order on every architecture the kernel's "legacy" virtio-net
// header layout applies to (vio_le() in af_packet.c).
const (
	vnetHdrLen        = 10
	vnetFlagNeedsCsum = 1 // VIRTIO_NET_HDR_F_NEEDS_CSUM
	vnetGSONone       = 0
	vnetGSOTCPv4      = 1
	vnetGSOTCPv6      = 4
	vnetGSOUDPL4      = 5
	vnetGSOECN        = 0x80
	vnetOffGSOSize    = 4
)

// parseVnet reads the virtio-net header h (vnetHdrLen bytes) of a frame.
func parseVnet(h []byte) frameMeta {
	if len(h) < vnetHdrLen {
		return frameMeta{}
	}
	return frameMeta{partial: h[0]&vnetFlagNeedsCsum != 0, gsoType: h[1] &^ vnetGSOECN,
		gsoSize: binary.NativeEndian.Uint16(h[vnetOffGSOSize:])}
}

// tcpSize is the TCP segment size the sender asked for, or 0 when the
// GSO type is not TCP over the packet's family.
func (m frameMeta) tcpSize(v6 bool) int {
	if (m.gsoType == vnetGSOTCPv4 && !v6) || (m.gsoType == vnetGSOTCPv6 && v6) {
		return int(m.gsoSize)
	}
	return 0
}

// udpSize is the UDP datagram payload size of a UDP GSO frame, or 0.
func (m frameMeta) udpSize() int {
	if m.gsoType == vnetGSOUDPL4 {
		return int(m.gsoSize)
	}
	return 0
}

// superPkt describes a TCP or UDP packet to be cut into segments.
type superPkt struct {
	l4      int    // offset of the transport header
	hdrLen  int    // bytes of headers copied into every segment (IP, extensions, TCP/UDP)
	payload int    // transport payload length
	mss     int    // payload bytes per segment
	pseudo  uint32 // pseudo-header sum without the transport length
	v6, udp bool
}

// parseSuper reports whether pkt is a well-formed TCP or UDP packet to be
// cut into segments, given the capture interface's MTU and what the
// capture knows about the frame.
func parseSuper(pkt []byte, mtu int, m frameMeta) (s superPkt, ok bool) {
	if len(pkt) <= mtu && m.gsoSize == 0 {
		return s, false // the common case: fits, and no GSO
	}
	l, ok := locateL4(pkt)
	if !ok {
		return s, false
	}
	s.l4, s.v6 = l.off, l.v6
	switch {
	case l.proto == header.ProtoTCP && l.total-l.off >= tcpMinHeaderLen:
		s.hdrLen = l.off + int(pkt[l.off+12]>>4)*4
		s.mss = mtu - s.hdrLen
		if size := m.tcpSize(l.v6); size > 0 {
			s.mss = min(s.mss, size)
		}
		if s.hdrLen < l.off+tcpMinHeaderLen || s.hdrLen > l.total || s.mss < 8 {
			return s, false
		}
	case l.proto == header.ProtoUDP && l.total-l.off >= udpHeaderLen && m.udpSize() > 0:
		s.hdrLen, s.mss, s.udp = l.off+udpHeaderLen, m.udpSize(), true
	default:
		return s, false
	}
	s.payload = l.total - s.hdrLen
	if s.payload <= s.mss {
		return s, false
	}
	return s, s.pseudoSum(pkt, l, m.partial)
}

// pseudoSum sets s.pseudo: from the checksum field of a CHECKSUM_PARTIAL
// packet, less the transport length it covers, or else from the
// addresses (not for an IPv6 packet with a routing header, whose final
// destination is not in the fixed header).
func (s *superPkt) pseudoSum(pkt []byte, l l4Loc, partial bool) bool {
	if partial {
		field := binary.BigEndian.Uint16(pkt[s.l4+s.csumOff():])
		s.pseudo = uint32(field) + uint32(^uint16(l.total-l.off)) // ones' complement subtraction
		return true
	}
	if l.routing {
		return false
	}
	addrs := pkt[header.IPv4OffSrc : header.IPv4OffDst+4]
	if s.v6 {
		addrs = pkt[header.IPv6OffSrc : header.IPv6OffDst+16]
	}
	s.pseudo = uint32(l.proto)
	for k := 0; k < len(addrs); k += 2 {
		s.pseudo += uint32(binary.BigEndian.Uint16(addrs[k:]))
	}
	return true
}

// csumOff is the offset of the checksum in the transport header.
func (s *superPkt) csumOff() int {
	if s.udp {
		return udpOffChecksum
	}
	return tcpOffChecksum
}

// count is the number of segments.
func (s *superPkt) count() int { return (s.payload + s.mss - 1) / s.mss }

// segLen is the size of the largest segment.
func (s *superPkt) segLen() int { return s.hdrLen + s.mss }

// segment writes segment i of the super-packet src into dst and returns its
// length. dst may be src itself for segment 0 if that is written last (the
// other segments read src's headers). dst must hold segLen bytes.
func (s *superPkt) segment(dst, src []byte, i int) int {
	off := i * s.mss
	n := min(s.mss, s.payload-off)
	size := s.hdrLen + n
	copy(dst[:s.hdrLen], src[:s.hdrLen])
	copy(dst[s.hdrLen:size], src[s.hdrLen+off:])
	s.fixIP(dst, src, i, size)
	l4 := dst[s.l4:size]
	if s.udp {
		binary.BigEndian.PutUint16(l4[4:], uint16(len(l4)))
	} else {
		s.fixTCP(l4, off, i, i == s.count()-1)
	}
	c := s.csumOff()
	l4[c], l4[c+1] = 0, 0
	sum := header.Checksum(l4, s.pseudo+uint32(len(l4)))
	if sum == 0 && s.udp {
		sum = 0xffff // UDP: 0 means "no checksum"
	}
	binary.BigEndian.PutUint16(l4[c:], sum)
	return size
}

// fixIP sets the length of segment i (size bytes) and, for IPv4, its ID
// (the original's plus i) and header checksum.
func (s *superPkt) fixIP(dst, src []byte, i, size int) {
	if s.v6 {
		binary.BigEndian.PutUint16(dst[header.IPv6OffPayloadLen:], uint16(size-header.IPv6HeaderLen))
		return
	}
	binary.BigEndian.PutUint16(dst[header.IPv4OffTotalLen:], uint16(size))
	binary.BigEndian.PutUint16(dst[4:], binary.BigEndian.Uint16(src[4:])+uint16(i))
	dst[header.IPv4OffChecksum], dst[header.IPv4OffChecksum+1] = 0, 0
	binary.BigEndian.PutUint16(dst[header.IPv4OffChecksum:], header.Checksum(dst[:s.l4], 0))
}

// TCP flags cleared on some segments.
const (
	tcpFIN = 0x01
	tcpPSH = 0x08
	tcpCWR = 0x80
)

// fixTCP advances the sequence number of segment tcp (number i) by off and
// adjusts its flags.
func (s *superPkt) fixTCP(tcp []byte, off, i int, last bool) {
	binary.BigEndian.PutUint32(tcp[4:], binary.BigEndian.Uint32(tcp[4:])+uint32(off))
	if !last {
		tcp[13] &^= tcpFIN | tcpPSH
	}
	if i > 0 {
		tcp[13] &^= tcpCWR
	}
}

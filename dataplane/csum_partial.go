package dataplane

import "encoding/binary"

// completeChecksum finishes the transport checksum of an IPv4 TCP or UDP
// packet that the sending host left to "hardware" (CHECKSUM_PARTIAL).
//
// A LAN host whose tx checksum offload is on (the default on veths and most
// NICs) hands its packets to the device with only the pseudo-header sum in
// the TCP/UDP checksum field; the device, or here the capture, must add the
// ones' complement sum of the transport header and payload and store the
// complement. AF_PACKET tells which packets are in that state
// (TP_STATUS_CSUMNOTREADY in PACKET_AUXDATA) but not where the checksum
// starts, so it is derived from the IPv4 header: the L4 header starts after
// the IP header and the field is at offset 16 (TCP) or 6 (UDP). Forwarded
// as they are, such packets would be dropped by the far end's stack.
//
// It reports whether it changed pkt. Fragments, other protocols and
// malformed packets are left alone (the engine judges those).
func completeChecksum(pkt []byte) bool {
	if len(pkt) < ipv4MinHeaderLen || pkt[0]>>4 != 4 {
		return false
	}
	ihl := int(pkt[0]&0x0f) * 4
	total := int(binary.BigEndian.Uint16(pkt[2:]))
	if ihl < ipv4MinHeaderLen || total < ihl || total > len(pkt) ||
		binary.BigEndian.Uint16(pkt[6:])&0x3fff != 0 { // MF or an offset: a fragment
		return false
	}
	var off int
	switch pkt[9] {
	case 6: // TCP
		off = 16
	case 17: // UDP
		off = 6
	default:
		return false
	}
	l4 := pkt[ihl:total]
	if len(l4) < off+2 {
		return false
	}
	c := checksum(l4, 0) // the field holds the pseudo-header sum already
	if c == 0 && pkt[9] == 17 {
		c = 0xffff // UDP: 0 means "no checksum"
	}
	binary.BigEndian.PutUint16(l4[off:], c)
	return true
}

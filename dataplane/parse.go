package dataplane

import "tunnel-agent/dataplane/internal/header"

// faultDrop is the drop reason for each way a header fails to parse.
var faultDrop = [...]DropReason{header.OK: DropNone, header.TooShort: DropTooShort, header.Malformed: DropBadHeader}

// parseIPv4 is header.ParseIPv4 with the fault as a drop reason.
func parseIPv4(pkt []byte) (header.IPv4, DropReason) {
	h, f := header.ParseIPv4(pkt)
	return h, faultDrop[f]
}

// parseIPv6 is header.ParseIPv6 with the fault as a drop reason.
func parseIPv6(pkt []byte) (header.IPv6, DropReason) {
	h, f := header.ParseIPv6(pkt)
	return h, faultDrop[f]
}

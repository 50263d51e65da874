package ebpf

// reason mirrors enum reason in bpf/tunnel.c: the index of a counter in
// the counters map. TestReasonsMatchProgram checks that the map has one
// entry per name.
type reason uint32

const (
	dropTooShort reason = iota
	dropBadHeader
	dropNotIPv4
	dropSrcNotAllowed
	dropDstNotAllowed
	dropExceptionLost
	dropBadChecksum
	passTTL
	passTooBig
	passIPv4Options
	passFragment
	passIPv6Extension
	passNoEndpoint
	passNoRoute
	passChecksum
	passGSO
	passKeepalive
	passUnknownSender
	passOuterHeader
	passRelayFamily
	passHelperError
	passICMPError
	passToHost
	numReasons
)

// firstPass is the first reason that hands a packet to userspace rather
// than dropping it.
const firstPass = passTTL

// reasonNames are the stable names used in Stats (and later in status and
// metric labels). The drops carry the userspace engine's names
// (dataplane/counters.go) where they mean the same; exception_lost is a
// packet for userspace that the perf buffer could not take. The passes
// say why a packet went to the userspace path.
var reasonNames = [numReasons]string{
	dropTooShort:      "too_short",
	dropBadHeader:     "bad_header",
	dropNotIPv4:       "not_ipv4",
	dropSrcNotAllowed: "src_not_allowed",
	dropDstNotAllowed: "dst_not_allowed",
	dropExceptionLost: "exception_lost",
	dropBadChecksum:   "bad_checksum",
	passTTL:           "ttl_expired",
	passTooBig:        "too_big",
	passIPv4Options:   "ipv4_options",
	passFragment:      "fragment",
	passIPv6Extension: "ipv6_extension_headers",
	passNoEndpoint:    "no_endpoint",
	passNoRoute:       "no_route",
	passChecksum:      "outer_checksum",
	passGSO:           "gso",
	passKeepalive:     "keepalive",
	passUnknownSender: "unknown_sender",
	passOuterHeader:   "outer_header",
	passRelayFamily:   "relay_family",
	passHelperError:   "helper_error",
	passICMPError:     "icmp_error",
	passToHost:        "to_host",
}

func (r reason) String() string {
	if r < numReasons {
		return reasonNames[r]
	}
	return "unknown"
}

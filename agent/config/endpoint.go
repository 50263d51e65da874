package config

import (
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"strconv"
)

// endpointSpec is a peer endpoint as the file gives it: an address and
// port, or a DNS name and port (resolved by `up`).
type endpointSpec struct {
	addr netip.AddrPort
	name string // "host:port"
}

// reHostname matches a DNS name (RFC 1123 labels, at least one letter
// somewhere so that a mistyped address is not taken for a name).
var reHostname = regexp.MustCompile(`^(?i)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.?$`)

// parseEndpoint reads ADDRESS:PORT, [IPv6]:PORT or NAME:PORT.
func parseEndpoint(s string) (endpointSpec, error) {
	if ap, err := parseAddrPort(s); err == nil {
		return endpointSpec{addr: ap}, nil
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil || host == "" {
		_, aerr := parseAddrPort(s)
		return endpointSpec{}, aerr
	}
	if _, err := netip.ParseAddr(host); err == nil || !reHostname.MatchString(host) || len(host) > 253 || !hasLetter(host) {
		_, aerr := parseAddrPort(s)
		return endpointSpec{}, aerr
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 {
		return endpointSpec{}, fmt.Errorf("port %q in %q: want a port from 1 to 65535", port, s)
	}
	return endpointSpec{name: s}, nil
}

func hasLetter(s string) bool {
	for _, r := range s {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' {
			return true
		}
	}
	return false
}
